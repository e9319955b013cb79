"""BedrockEmbedder on a real boto3 ``bedrock-runtime`` client, answered by botocore's Stubber.

moto 5.2.5 accepts InvokeModel but answers ``{}`` (no inference), so the answers here are stubbed:
with ``Stubber`` for sequential calls, and with the same ``before-call`` hook Stubber uses (answering
from each request's own body) where calls run concurrently and finish in any order.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from ragline.adapters.aws.bedrock_embedder import BedrockEmbedder
from ragline.adapters.local.onnx_embedder import WordPieceTokenizer, load_tokenizer
from ragline.errors import ConfigurationError, DependencyUnavailable, RaglineError, Unprocessable
from ragline.retrieval.service import SearchService
from tests.support import free_port

MODEL = "amazon.titan-embed-text-v2:0"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def tokenizer() -> WordPieceTokenizer:
    return WordPieceTokenizer(load_tokenizer())


@pytest.fixture
def client() -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1", **CREDENTIALS)


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def embedder(client: Any, tokenizer: WordPieceTokenizer, dimension: int = 256, **kwargs: Any) -> BedrockEmbedder:
    return BedrockEmbedder(MODEL, dimension, tokenizer=tokenizer, client=client, **kwargs)


class JsonBody:
    """Matches a request body by its JSON value (key order and spacing are not part of the API)."""

    def __init__(self, expected: dict[str, Any]) -> None:
        self.expected = expected

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (str, bytes)) and json.loads(other) == self.expected

    def __repr__(self) -> str:
        return f"JsonBody({self.expected!r})"


def titan_request(text: str, dimension: int = 256) -> dict[str, Any]:
    """InvokeModel's parameters as the Titan Text Embeddings v2 documentation gives them."""
    return {
        "modelId": MODEL,
        "contentType": "application/json",
        "accept": "application/json",
        "body": JsonBody({"inputText": text, "dimensions": dimension, "normalize": True}),
    }


def titan_answer(embedding: list[float], tokens: int = 3) -> dict[str, Any]:
    data = json.dumps(
        {"embedding": embedding, "inputTextTokenCount": tokens, "embeddingsByType": {"float": embedding}}
    ).encode()
    return {"body": StreamingBody(io.BytesIO(data), len(data)), "contentType": "application/json"}


def unit(dimension: int, position: int, scale: float = 1.0) -> list[float]:
    vector = [0.0] * dimension
    vector[position] = scale
    return vector


# ---- identity and requests ------------------------------------------------------------------------


def test_identity_and_the_shared_word_piece_tokenizer(client, tokenizer):
    bedrock = embedder(client, tokenizer, 1024)
    assert bedrock.model_name == f"bedrock:{MODEL}"
    assert bedrock.dimension == 1024
    assert bedrock.tokenizer is tokenizer
    # word pieces of the vendored MiniLM vocabulary: "Invoices" is three of them
    assert bedrock.tokenizer.token_offsets(["Invoices are due"]) == [[(0, 2), (2, 4), (4, 8), (9, 12), (13, 16)]]


def test_dimensions_other_than_titan_v2_s_are_refused(client, tokenizer):
    with pytest.raises(ValueError, match="256, 512 or 1024"):
        embedder(client, tokenizer, 384)


def test_requests_are_the_documented_titan_v2_bodies(client, stub, tokenizer):
    stub.add_response("invoke_model", titan_answer(unit(512, 0)), titan_request("first passage", 512))
    stub.add_response("invoke_model", titan_answer(unit(512, 1)), titan_request("second passage", 512))
    vectors = embedder(client, tokenizer, 512, max_workers=1).embed_documents(["first passage", "second passage"])
    assert vectors.shape == (2, 512) and vectors.dtype == np.float32
    assert vectors[0, 0] == 1.0 and vectors[1, 1] == 1.0


def test_the_request_on_the_wire(client, tokenizer):
    seen: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        seen.append(params)
        return AWSResponse(None, 200, {}, None), titan_answer(unit(256, 0))

    client.meta.events.register("before-call.bedrock-runtime.InvokeModel", capture)
    embedder(client, tokenizer).embed_query("late fees")
    [request] = seen
    assert request["method"] == "POST"
    assert request["url_path"] == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Accept"] == "application/json"
    assert json.loads(request["body"]) == {"inputText": "late fees", "dimensions": 256, "normalize": True}


def test_empty_input_makes_no_call(client, stub, tokenizer):
    vectors = embedder(client, tokenizer).embed_documents([])
    assert vectors.shape == (0, 256) and vectors.dtype == np.float32


# ---- vectors -----------------------------------------------------------------------------------------


def test_vectors_are_renormalised_float32(client, stub, tokenizer):
    stub.add_response("invoke_model", titan_answer([3.0, 4.0] + [0.0] * 254), titan_request("scaled"))
    stub.add_response("invoke_model", titan_answer([0.6000001, 0.8] + [0.0] * 254), titan_request("almost unit"))
    vectors = embedder(client, tokenizer, max_workers=1).embed_documents(["scaled", "almost unit"])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(vectors[0, :2], [0.6, 0.8], rtol=1e-6)


def test_a_vector_of_the_wrong_dimension_is_a_clear_configuration_error(client, stub, tokenizer):
    stub.add_response("invoke_model", titan_answer([0.1] * 1536), titan_request("passage", 1024))
    with pytest.raises(RaglineError, match=r"shape \(1536,\), expected \(1024,\).*BEDROCK_MODEL_ID") as caught:
        embedder(client, tokenizer, 1024).embed_documents(["passage"])
    assert type(caught.value) is ConfigurationError and caught.value.status == 500


def test_an_answer_without_an_embedding_is_a_clear_error(tokenizer, monkeypatch):
    # The one thing moto can check: the call goes over its HTTP layer, and its empty answer is refused.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        client = boto3.client("bedrock-runtime", region_name="us-east-1", **CREDENTIALS)
        with pytest.raises(RaglineError, match="without an embedding"):
            embedder(client, tokenizer).embed_query("anything")


# ---- concurrency -----------------------------------------------------------------------------------


class FakeTitan:
    """Answers each InvokeModel from its own body (text "passage N" → axis N, scaled by 2), after a
    delay that shrinks with N, so later texts finish first; records completion order and peak concurrency."""

    def __init__(self, client: Any, dimension: int, *, fail_on: str | None = None) -> None:
        self.dimension = dimension
        self.fail_on = fail_on
        self.finished: list[int] = []
        self.calls = 0
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()
        client.meta.events.register("before-call.bedrock-runtime.InvokeModel", self)

    def __call__(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        body = json.loads(params["body"])
        assert body["dimensions"] == self.dimension and body["normalize"] is True
        number = int(body["inputText"].split()[-1])
        with self._lock:
            self.calls += 1
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(0.005 * (20 - number % 20))
            if body["inputText"] == self.fail_on:
                error = {
                    "Error": {"Code": "ThrottlingException", "Message": "Too many requests"},
                    "ResponseMetadata": {"HTTPStatusCode": 429},
                }
                return AWSResponse(None, 429, {}, None), error
            return AWSResponse(None, 200, {}, None), titan_answer(unit(self.dimension, number, 2.0))
        finally:
            with self._lock:
                self.active -= 1
                self.finished.append(number)


def test_documents_run_concurrently_on_a_bounded_pool_and_keep_their_order(client, tokenizer):
    fake = FakeTitan(client, 256)
    texts = [f"passage {n}" for n in range(24)]
    vectors = embedder(client, tokenizer, max_workers=4).embed_documents(texts)
    assert fake.calls == 24
    assert 1 < fake.peak <= 4
    assert fake.finished != sorted(fake.finished)  # answers did come back out of order...
    np.testing.assert_array_equal(vectors, np.eye(256, dtype=np.float32)[:24])  # ...and rows did not


def test_one_failure_fails_the_batch(client, tokenizer):
    fake = FakeTitan(client, 256, fail_on="passage 5")
    texts = [f"passage {n}" for n in range(40)]
    with pytest.raises(DependencyUnavailable, match="ThrottlingException"):
        embedder(client, tokenizer, max_workers=2).embed_documents(texts)
    assert fake.calls < 40  # the calls not yet started were cancelled


# ---- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 429),
        ("ServiceUnavailableException", 503),
        ("InternalServerException", 500),
        ("ModelNotReadyException", 429),
        ("ModelTimeoutException", 408),
        ("ServiceQuotaExceededException", 400),
    ],
)
def test_throttling_and_outages_are_dependency_unavailable(client, stub, tokenizer, code, status):
    stub.add_client_error("invoke_model", code, "try later", status, expected_params=titan_request("passage"))
    with pytest.raises(DependencyUnavailable, match=code) as caught:
        embedder(client, tokenizer).embed_documents(["passage"])
    assert caught.value.status == 503


def test_an_unreachable_endpoint_is_dependency_unavailable(tokenizer, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2),
        **CREDENTIALS,
    )
    with pytest.raises(DependencyUnavailable, match="unreachable"):
        embedder(client, tokenizer).embed_query("anything")


def test_text_bedrock_rejects_is_unprocessable(client, stub, tokenizer):
    message = "400 Bad Request: Too many input tokens. Max input tokens: 8192, request input token count: 9120"
    stub.add_client_error("invoke_model", "ValidationException", message, 400, expected_params=titan_request("x y z"))
    with pytest.raises(Unprocessable, match="Too many input tokens") as caught:
        embedder(client, tokenizer).embed_documents(["x y z"])
    assert caught.value.status == 422


def test_text_over_the_character_limit_is_refused_before_any_call(client, stub, tokenizer):
    bedrock = embedder(client, tokenizer)
    with pytest.raises(Unprocessable, match="50001 characters"):
        bedrock.embed_documents(["fine", "x" * 50_001])
    with pytest.raises(Unprocessable, match="empty"):
        bedrock.embed_query("")


def test_configuration_errors_pass_through(client, stub, tokenizer):
    stub.add_client_error("invoke_model", "AccessDeniedException", "no access to the model", 403)
    with pytest.raises(ClientError, match="AccessDeniedException"):
        embedder(client, tokenizer).embed_query("anything")


# ---- query cache (in SearchService, per tenant; the adapter keeps none) ----------------------------


def cached(bedrock: BedrockEmbedder):
    service = SearchService(None, bedrock)  # type: ignore[arg-type]  # the cache needs no index
    return lambda text: service.query_vector("t1", text)


def test_queries_are_cached(client, stub, tokenizer):
    stub.add_response("invoke_model", titan_answer(unit(256, 7, 5.0)), titan_request("late fees"))
    stub.add_response("invoke_model", titan_answer(unit(256, 8)), titan_request("due dates"))
    embed_query = cached(embedder(client, tokenizer))
    first = embed_query("late fees")
    again = embed_query("late fees")  # no second call: the stubber would have answered "due dates"
    assert again is first and first[7] == 1.0 and first.dtype == np.float32
    assert not first.flags.writeable
    assert embed_query("due dates")[8] == 1.0


def test_a_failed_query_is_not_cached(client, stub, tokenizer):
    stub.add_client_error("invoke_model", "ThrottlingException", "slow down", 429)
    stub.add_response("invoke_model", titan_answer(unit(256, 1)), titan_request("late fees"))
    embed_query = cached(embedder(client, tokenizer))
    with pytest.raises(DependencyUnavailable):
        embed_query("late fees")
    assert embed_query("late fees")[1] == 1.0
