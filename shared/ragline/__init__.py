"""Ragline: a knowledge-base API — ingest documents, search them by meaning, chat with cited answers."""

__version__ = "0.1.0"
