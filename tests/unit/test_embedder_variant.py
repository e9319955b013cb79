"""The int8-compute model variant (`ragline model build`): reproducible, faithful to the original fp32
weights on fixed passages, and a drop-in for the embedder (same shape, same order)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "embedder_fp32.json"

onnx = pytest.importorskip("onnx", reason="building the variant needs the model extra (onnx)")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from ragline.adapters.local.model_build import build

    path, count = build(target=tmp_path_factory.mktemp("model") / "variant.onnx")
    assert count == 30  # 6 blocks × (Q, K, V, attention output, first FFN); the second FFN layers stay fp32
    return path


def test_the_build_is_reproducible(built, tmp_path):
    from ragline.adapters.local.model_build import build

    again, _ = build(target=tmp_path / "again.onnx")
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(built.read_bytes()).digest()
    # An existing build is kept, not redone.
    assert build(target=again) == (again, 0)


def test_the_variant_is_faithful_to_the_fp32_model(built):
    from ragline.adapters.local.onnx_embedder import OnnxEmbedder

    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    reference = np.asarray(golden["vectors"], dtype=np.float32)
    vectors = OnnxEmbedder(built).embed_documents(golden["passages"])
    cosine = (vectors * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.99, cosine.round(4).tolist()
    assert cosine.mean() >= 0.995
    # One at a time (the query path) too: a query is its own batch.
    for text, expected in zip(golden["passages"][-5:], reference[-5:]):
        vector = _embedder(built).embed_query(text)
        assert float(vector @ expected) / float(np.linalg.norm(expected)) >= 0.99


_EMBEDDERS: dict = {}


def _embedder(path):
    from ragline.adapters.local.onnx_embedder import OnnxEmbedder

    if path not in _EMBEDDERS:
        _EMBEDDERS[path] = OnnxEmbedder(path)
    return _EMBEDDERS[path]


def test_output_shape_and_order_are_those_of_the_bundled_model(built):
    from ragline.adapters.local.model_build import bundled_model_path

    texts = json.loads(GOLDEN.read_text(encoding="utf-8"))["passages"][:12]
    texts = [texts[i] for i in (5, 0, 11, 3, 8, 1)]  # not sorted by length: embed_documents reorders inside
    new, old = _embedder(built).embed_documents(texts), _embedder(bundled_model_path()).embed_documents(texts)
    assert new.shape == old.shape == (len(texts), 384) and new.dtype == old.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), 1.0, atol=1e-5)
    # Row i is text i in both: each row is closest to its own counterpart.
    assert (np.argmax(new @ old.T, axis=1) == np.arange(len(texts))).all()


def test_the_default_model_is_the_built_variant_when_there_is_one(tmp_path, monkeypatch):
    from ragline.adapters.local import model_build, onnx_embedder

    target = tmp_path / "built.onnx"
    monkeypatch.setattr(model_build, "built_model_path", lambda: target)
    assert onnx_embedder.default_model_path() == model_build.bundled_model_path()
    target.write_bytes(b"")
    assert onnx_embedder.default_model_path() == target
