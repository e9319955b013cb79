"""The Embedder port on Amazon Bedrock: Titan Text Embeddings v2 through ``bedrock-runtime`` InvokeModel.

Request body ``{"inputText": text, "dimensions": 256|512|1024, "normalize": true}``; the answer carries
``{"embedding": [...], "inputTextTokenCount": n, ...}``. The model embeds one text per call, so
``embed_documents`` runs the calls on a small thread pool (boto3 clients are thread-safe) and keeps
the input order. Vectors come back re-normalised to unit length, as float32, like the local model's.

Chunk sizes stay counted in the vendored word-piece tokens (the caller passes that tokenizer in):
Bedrock has no tokenizer endpoint, and a 254-piece chunk is far below Titan v2's 8,192-token limit.

Errors: throttled, timed out, 5xx or unreachable after botocore's retries → DependencyUnavailable
(503; ingestion re-queues the job). Text Bedrock will not take (too long, empty) → Unprocessable (422).
Anything else (no model access, unknown model, wrong answer shape) is configuration, not the caller's fault.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from ragline.adapters.aws import clients
from ragline.errors import ConfigurationError, DependencyUnavailable, Unprocessable
from ragline.ports import Tokenizer

TITAN_V2_DIMENSIONS = frozenset({256, 512, 1024})
MAX_INPUT_CHARACTERS = 50_000  # Titan Text Embeddings v2: at most 8,192 tokens and 50,000 characters

# Bedrock answers that mean "try later" beyond those clients.unavailable_when_down knows (429/408/400).
BEDROCK_TRANSIENT_CODES = frozenset(
    {"ModelNotReadyException", "ModelTimeoutException", "ServiceQuotaExceededException"}
)


class BedrockEmbedder:
    def __init__(
        self,
        model_id: str,
        dimension: int,
        *,
        tokenizer: Tokenizer,
        max_workers: int = 4,
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        if dimension not in TITAN_V2_DIMENSIONS:
            raise ValueError(f"Titan Text Embeddings v2 gives 256, 512 or 1024 dimensions, not {dimension}")
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.model_id = model_id
        self.model_name = f"bedrock:{model_id}"
        self.dimension = dimension
        self.tokenizer = tokenizer
        self.max_workers = max_workers
        self._client = clients.ServiceClient("bedrock-runtime", region=region, endpoint_url=endpoint_url, given=client)

    @property
    def _bedrock(self) -> Any:
        return self._client()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """One InvokeModel call per text, at most ``max_workers`` at a time; rows in input order."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        for text in texts:
            self._check_text(text)  # before any call: one bad text should not cost the others' calls
        if len(texts) == 1 or self.max_workers == 1:
            for row, text in enumerate(texts):
                out[row] = self._embed(text)
            return out
        pool = ThreadPoolExecutor(max_workers=min(self.max_workers, len(texts)), thread_name_prefix="bedrock-embed")
        try:
            futures: list[Future[np.ndarray]] = [pool.submit(self._embed, text) for text in texts]
            for row, future in enumerate(futures):
                out[row] = future.result()  # the first failure, in input order, propagates
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # after a failure, skip the calls not yet started
        return out

    def embed_query(self, text: str) -> np.ndarray:
        self._check_text(text)
        return self._embed(text)

    # ---- one call -------------------------------------------------------------------------------
    def _check_text(self, text: str) -> None:
        if not text:
            raise Unprocessable("cannot embed an empty text", error="Invalid text")
        if len(text) > MAX_INPUT_CHARACTERS:
            raise Unprocessable(
                f"the text to embed is {len(text)} characters long; {self.model_id} takes at most "
                f"{MAX_INPUT_CHARACTERS}",
                error="Text too long",
            )

    def _embed(self, text: str) -> np.ndarray:
        body = json.dumps({"inputText": text, "dimensions": self.dimension, "normalize": True})
        try:
            with clients.unavailable_when_down(f"Bedrock model {self.model_id}"):
                response = self._bedrock.invoke_model(
                    modelId=self.model_id, body=body, contentType="application/json", accept="application/json"
                )
                raw = response["body"].read()  # streamed: a dropped connection surfaces here
        except ClientError as exc:
            code = clients.error_code(exc)
            if code in BEDROCK_TRANSIENT_CODES:
                raise DependencyUnavailable(
                    f"Bedrock model {self.model_id} answered {clients.http_status(exc)} {code}: {exc}",
                    error="Dependency unavailable",
                ) from exc
            if code == "ValidationException":
                message = exc.response.get("Error", {}).get("Message") or str(exc)
                raise Unprocessable(f"Bedrock could not embed the text: {message}", error="Invalid text") from exc
            raise
        return self._vector(raw)

    def _vector(self, raw: bytes) -> np.ndarray:
        try:
            answer = json.loads(raw)
            embedding = answer["embedding"]
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigurationError(
                f"Bedrock model {self.model_id} answered without an embedding: {raw[:200]!r}",
                error="Embedding model error",
            ) from exc
        vector = np.asarray(embedding, dtype=np.float32)
        if vector.shape != (self.dimension,):
            raise ConfigurationError(
                f"Bedrock model {self.model_id} returned a vector of shape {vector.shape}, expected "
                f"({self.dimension},): check RAGLINE_BEDROCK_MODEL_ID (Titan Text Embeddings v2) and "
                "RAGLINE_BEDROCK_DIMENSION",
                error="Embedding model error",
            )
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0.0:
            raise ConfigurationError(
                f"Bedrock model {self.model_id} returned a zero or non-finite vector", error="Embedding model error"
            )
        return vector / np.float32(norm)
