"""The served OpenAPI types every answer, and the types say exactly what the routes answer.

A 2xx JSON answer documented as ``{}`` or a bare object gives a generated client nothing to work
with; a response model that misses a field the route builds would silently drop it from the answer
(FastAPI filters through the model). So: every 2xx JSON schema resolves to named properties, and
each model round-trips the body its route builds, byte for byte (keys, order and number types).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from ragline.api.app import create_app
from ragline.api.routes.documents import _file_result
from ragline.api.upload_bodies import accepted_body
from ragline.config import Settings
from ragline.container import Container
from ragline.errors import UnsupportedMediaType
from ragline.ingest.service import Accepted
from ragline.insight.models import QueryDetail, QueryRecord, SourceRef
from ragline.keys import create_key
from ragline.models import (
    BatchFileAccepted,
    BatchFileRejected,
    Document,
    DocumentList,
    DocumentOut,
    DocumentStatus,
    HealthDetailedResponse,
    Job,
    JobOut,
    Scope,
    UploadAccepted,
)
from ragline.webhooks.models import WebhookCreated, WebhookEndpoint, WebhookSecret

REF = "#/components/schemas/"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return create_app(Container(Settings(data_dir=tmp_path_factory.mktemp("data"))))


@pytest.fixture(scope="module")
def spec(app: Any) -> dict[str, Any]:
    return copy.deepcopy(app.openapi())


def _untyped_reason(schema: dict[str, Any], components: dict[str, Any], seen: frozenset[str] = frozenset()) -> str:
    """Why ``schema`` says nothing a client could use ("" when it is typed)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(REF)
        if name in seen:
            return ""
        return _untyped_reason(components[name], components, seen | {name})
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            reasons = [_untyped_reason(s, components, seen) for s in schema[combinator]]
            return next((r for r in reasons if r), "")
    kind = schema.get("type")
    if kind == "array":
        return _untyped_reason(schema.get("items") or {}, components, seen) and "an array of untyped items"
    if kind in ("string", "integer", "number", "boolean", "null") or "enum" in schema or "const" in schema:
        return ""
    if schema.get("properties"):
        return ""
    return f"no properties: {json.dumps(schema)[:200]}"


def _answers(spec: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, status, response)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status.startswith("2")
    ]


def test_every_2xx_json_answer_is_typed(spec: dict[str, Any]) -> None:
    components = spec["components"]["schemas"]
    answers = _answers(spec)
    assert len(answers) > 40
    untyped = []
    for method, path, status, response in answers:
        content = response.get("content", {})
        if not content:
            assert status == "204", f"{method} {path} {status} documents no body"
            continue
        for media_type, body in content.items():
            if "json" not in media_type:
                continue
            reason = _untyped_reason(body.get("schema", {}), components)
            if reason:
                untyped.append(f"{method} {path} {status}: {reason}")
    assert untyped == [], "give these a response model:\n" + "\n".join(untyped)


def test_the_check_refuses_what_fastapi_makes_of_an_unannotated_answer() -> None:
    """What a route returning dict[str, Any] (or a JSONResponse, or Any) is documented as."""
    for schema in ({}, {"type": "object", "additionalProperties": True}, {"additionalProperties": {"type": "string"}}):
        assert _untyped_reason(schema, {})
        assert _untyped_reason({"type": "array", "items": schema}, {})
        assert _untyped_reason({"anyOf": [{"$ref": REF + "Typed"}, schema]}, {"Typed": {"properties": {"a": {}}}})
    assert _untyped_reason({"$ref": REF + "Open"}, {"Open": {"type": "object", "additionalProperties": True}})


def test_answers_chosen_at_run_time_are_documented_with_their_models(spec: dict[str, Any]) -> None:
    def schema(path: str, method: str, status: str) -> dict[str, Any]:
        return spec["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]

    upload = schema("/v1/kb/documents", "post", "202")
    assert [s["$ref"] for s in upload["anyOf"]] == [REF + "UploadAccepted", REF + "BatchUploadResponse"]
    assert schema("/v1/kb/uploads/{document_id}", "put", "202") == {"$ref": REF + "UploadAccepted"}
    assert schema("/health/detailed", "get", "200") == {"$ref": REF + "HealthDetailedResponse"}
    # An unhealthy dependency answers 503 with the health body; a store down during the key check, the error body.
    assert [s["$ref"] for s in schema("/health/detailed", "get", "503")["anyOf"]] == [
        REF + "HealthDetailedResponse",
        REF + "ErrorBody",
    ]


# ---- the models say exactly what the routes build -------------------------------------------------
def _exact(model: type[BaseModel], body: dict[str, Any]) -> None:
    """``body`` as FastAPI answers it through ``model`` (exclude_unset, as the routes that need it set) is
    the same JSON: no key dropped or added, the same order, the same number types."""
    answered = model.model_validate(body).model_dump(mode="json", exclude_unset=True)
    assert json.dumps(answered) == json.dumps(body)


def _document(**changes: Any) -> Document:
    fields: dict[str, Any] = dict(
        id="doc_1",
        tenant_id="t1",
        kb_id="kb_1",
        title="Handbook",
        filename="handbook.pdf",
        content_type="application/pdf",
        status=DocumentStatus.INDEXED,
        chunk_count=3,
        page_count=2,
        size_bytes=1234,
        content_sha256="ab" * 32,
        external_id="ext-1",
        metadata={"team": "ops", "nested": {"a": [1, 2.5, None]}},
        blob_key="t1/doc_1",
        chunk_size=128,
        chunk_overlap=16,
        indexed_at="2026-01-01T00:00:00.000Z",
    )
    return Document(**{**fields, **changes})


@pytest.mark.parametrize("changes", [{}, {"status": DocumentStatus.FAILED, "error": "empty file", "indexed_at": None}])
def test_the_document_model_is_what_a_document_shows(changes: dict[str, Any]) -> None:
    shown = _document(**changes).public()
    _exact(DocumentOut, shown)
    _exact(DocumentList, {"documents": [shown, _document(id="doc_2").public()], "next_cursor": "doc_2"})
    _exact(DocumentList, {"documents": [], "next_cursor": None})


def test_the_document_model_names_every_field_a_document_can_show() -> None:
    """A field added to Document (and shown by public()) must be added to DocumentOut, or the routes drop it."""
    assert list(_document(error="boom").public()) == list(DocumentOut.model_fields)


@pytest.mark.parametrize("document", [_document(), None])
def test_the_job_model_is_what_a_job_shows(document: Document | None) -> None:
    job = Job(id="job_1", tenant_id="t1", document_id="doc_1", attempts=2, error="parser crashed")
    body = {**job.public(), "document_status": document.status.value if document else None}
    _exact(JobOut, body)
    assert list(body) == list(JobOut.model_fields)


@pytest.mark.parametrize("job_id", ["job_1", None])
def test_the_accepted_models_are_what_uploads_answer(job_id: str | None) -> None:
    accepted = Accepted(_document(status=DocumentStatus.QUEUED), job_id, duplicate=job_id is None)
    _exact(UploadAccepted, accepted_body(accepted))
    _exact(BatchFileAccepted, _file_result("handbook.pdf", accepted))
    _exact(BatchFileRejected, _file_result(None, UnsupportedMediaType("cannot ingest .exe files")))


def _record(**changes: Any) -> QueryRecord:
    fields: dict[str, Any] = dict(
        query_id="qry_1",
        tenant_id="t1",
        key_id="key_1",
        question="How long do refunds take?",
        question_key="how long do refunds take",
        filters={"kb_id": "kb_1"},
        kb_id="kb_1",
        answer="Five days [1].",
        sources=[SourceRef(document_id="doc_1", page=3, score=0.8, title="Handbook", filename="h.pdf")],
        model="extractive",
        confidence=0.75,
        answered=True,
        query_time_ms=12,
        timestamp="2026-01-01T00:00:00.000Z",
        rating=4,
        comment="good",
    )
    return QueryRecord(**{**fields, **changes})


@pytest.mark.parametrize("changes", [{}, {"answer": None, "rating": None, "comment": None, "key_id": None}])
def test_the_query_model_is_what_a_query_shows(changes: dict[str, Any]) -> None:
    detail = _record(**changes).detail()
    _exact(QueryDetail, detail)
    assert ("answer" in detail) == (changes.get("answer", "") is not None)


def test_the_query_model_names_every_field_a_query_can_show() -> None:
    assert list(_record().detail()) == list(QueryDetail.model_fields)


def test_the_webhook_created_model_is_what_registering_answers() -> None:
    endpoint = WebhookEndpoint(
        id="wh_1", tenant_id="t1", url="https://example.com/h", events=["*"], secrets=[WebhookSecret(value="whsec_x")]
    )
    _exact(WebhookCreated, {**endpoint.public(), "secret": "whsec_x"})


def test_the_detailed_health_model_is_what_the_route_answers(app: Any) -> None:
    """The route answers a JSONResponse (200 or 503), which no model filters: its body must match as it is."""
    key, _ = create_key(app.state.container.store, "t1", frozenset({Scope.ADMIN}))
    with TestClient(app) as client:
        response = client.get("/health/detailed", headers={"x-api-key": key})
    assert response.status_code == 200, response.text
    _exact(HealthDetailedResponse, response.json())
    assert response.json()["index"]["tenant_chunks"] == 0
