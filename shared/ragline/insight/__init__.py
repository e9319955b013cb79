"""Insight: what was asked and how well it was answered (history, ratings, analytics, document
statistics) and the answer cache."""
