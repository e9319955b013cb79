"""OPENSEARCH_URL alone switches the vector index; nothing else changes."""

from __future__ import annotations

import time

import pytest

from ragline.adapters.aws.opensearch.index import OpenSearchVectorIndex
from ragline.adapters.local.vector_engine import EmbeddedVectorIndex
from ragline.config import Settings
from ragline.container import build_vector_index
from ragline.errors import DependencyUnavailable
from tests.support import free_port


def test_without_opensearch_url_the_embedded_engine_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    index = build_vector_index(Settings(data_dir=tmp_path), 8, snapshot_interval_seconds=0)
    assert isinstance(index, EmbeddedVectorIndex)
    index.close()


def test_opensearch_url_switches_to_opensearch(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENSEARCH_URL", "https://search.example.internal:9200")
    ensured = []
    monkeypatch.setattr(OpenSearchVectorIndex, "ensure_index", lambda self: ensured.append(self.alias))
    index = build_vector_index(Settings(data_dir=tmp_path), 384)
    assert isinstance(index, OpenSearchVectorIndex)
    assert ensured == ["ragline-chunks"] and index.dimension == 384


def test_an_unreachable_cluster_fails_fast_and_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENSEARCH_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("RAGLINE_OPENSEARCH_RETRY_ATTEMPTS", "1")
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable, match="OpenSearch"):
        build_vector_index(Settings(data_dir=tmp_path), 384)
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    ("provider", "bedrock_dimension", "expected"),
    [("local", 1024, 384), ("bedrock", 256, 256), ("bedrock", 1024, 1024)],
)
def test_the_index_dimension_comes_from_the_settings(provider, bedrock_dimension, expected, tmp_path):
    settings = Settings(data_dir=tmp_path, embedding_provider=provider, bedrock_dimension=bedrock_dimension)
    assert settings.embedding_dimension == expected


def test_the_settings_dimension_is_the_bundled_models_own(tmp_path):
    """The index is opened at the settings' dimension without loading the model: they must agree."""
    from ragline.container import build_embedder

    embedder = build_embedder(Settings(data_dir=tmp_path))
    assert embedder.embed_query("refunds").shape == (Settings(data_dir=tmp_path).embedding_dimension,)
