"""The served OpenAPI says what the rate limiter does: every operation behind a key may answer 429
(with Retry-After) and carries the RateLimit headers; the open ones (health, the token-authorized
upload receiver) do neither."""

from __future__ import annotations

import copy

import pytest

from ragline.api.app import create_app
from ragline.config import Settings
from ragline.container import Container

OPEN = {("get", "/health"), ("put", "/v1/kb/uploads/{document_id}")}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict:
    app = create_app(Container(Settings(data_dir=tmp_path_factory.mktemp("data"))))
    first = copy.deepcopy(app.openapi())
    assert app.openapi() == first  # documenting is idempotent: the cached schema is not decorated twice
    return first


def _operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [(method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def test_every_keyed_operation_documents_the_429_and_the_headers(spec: dict) -> None:
    keyed = [(m, p, op) for m, p, op in _operations(spec) if (m, p) not in OPEN]
    assert len(keyed) > 20
    for method, path, operation in keyed:
        assert operation.get("security"), (method, path)
        responses = operation["responses"]
        too_many = responses.get("429")
        assert too_many is not None, (method, path)
        assert too_many["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
        assert {"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(too_many["headers"])
        for status, response in responses.items():
            has = "RateLimit-Remaining" in response.get("headers", {})
            assert has == (status != "401"), (method, path, status)
    assert "retry_after" in spec["components"]["schemas"]["ErrorBody"]["properties"]


def test_open_operations_are_not_limited(spec: dict) -> None:
    for method, path, operation in _operations(spec):
        if (method, path) in OPEN:
            assert all("RateLimit-Limit" not in r.get("headers", {}) for r in operation["responses"].values())
    # /health never answers 429; the upload receiver can, from its tenant's admission slots, not a key's limit.
    assert "429" not in spec["paths"]["/health"]["get"]["responses"]
