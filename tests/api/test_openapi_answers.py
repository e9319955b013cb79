"""Real 2xx answers match the served OpenAPI's schemas, on the routes the fuzz test rarely gets a 2xx
from (an id in the path, a file type or URL it must guess): each is driven to its 2xx on a real
server and its body validated against the schema documented for that status."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from ragline.api.app import create_app
from ragline.config import Settings
from ragline.container import Container
from tests.support import Server, ragline, wait_for_status


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        return create_app(Container(Settings(data_dir=Path(data_dir)))).openapi()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    data_dir = tmp_path_factory.mktemp("openapi-answers")
    key = ragline("keys", "create", "--tenant", "oa", "--data-dir", str(data_dir)).strip()
    server = Server(data_dir, env={"RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true"}).start()
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60) as c:
            yield c
    finally:
        server.stop()


def conforms(spec: dict[str, Any], method: str, path: str, response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    documented = spec["paths"][path][method.lower()]["responses"][str(status)]
    schema = documented["content"]["application/json"]["schema"]
    body = response.json()
    jsonschema.validate(body, {**schema, "components": spec["components"]})
    return body


def test_document_answers_match_their_schemas(spec: dict[str, Any], client: httpx.Client) -> None:
    ticket = conforms(
        spec,
        "POST",
        "/v1/kb/uploads",
        client.post("/v1/kb/uploads", json={"filename": "big.txt", "content_type": "text/plain"}),
        200,
    )
    received = httpx.put(
        ticket["upload_url"], content=b"Presigned bytes about llamas.", headers={"content-type": "text/plain"}
    )
    conforms(spec, "PUT", "/v1/kb/uploads/{document_id}", received, 202)

    upload = "/v1/kb/documents"
    text = {"text": "Refunds take five days.", "title": "Refunds", "metadata": {"team": "ops"}}
    accepted = conforms(spec, "POST", upload, client.post(upload, json=text), 202)
    duplicate = conforms(spec, "POST", upload, client.post(upload, json=text), 202)
    assert duplicate["data"]["duplicate"] is True
    single = client.post(upload, files={"file": ("a.md", b"# Shipping\n\nFree over 50 euros.", "text/markdown")})
    conforms(spec, "POST", upload, single, 202)
    empty = conforms(spec, "POST", upload, client.post(upload, files={"file": ("empty.txt", b"", "text/plain")}), 202)
    batch = client.post(
        upload,
        files=[
            ("files", ("cats.txt", b"Cats sleep a lot.", "text/plain")),
            ("files", ("tool.exe", b"MZ\x00\x01", "application/octet-stream")),
        ],
    )
    results = conforms(spec, "POST", upload, batch, 202)["documents"]
    assert [r["status"] for r in results] == ["queued", "rejected"]

    failed = wait_for_status(client, empty["data"]["document_id"])
    assert failed["status"] == "failed" and failed["error"]
    indexed = wait_for_status(client, accepted["data"]["document_id"])
    assert "error" not in indexed
    for document_id in (failed["id"], indexed["id"]):
        got = client.get(f"/v1/kb/documents/{document_id}")
        conforms(spec, "GET", "/v1/kb/documents/{document_id}", got, 200)
    listed = conforms(spec, "GET", "/v1/kb/documents", client.get("/v1/kb/documents", params={"limit": 2}), 200)
    assert listed["next_cursor"]
    kb_documents = client.get("/v1/knowledge-bases/default/documents")
    conforms(spec, "GET", "/v1/knowledge-bases/{kb_id}/documents", kb_documents, 200)
    job = client.get(f"/v1/kb/jobs/{accepted['data']['job_id']}")
    assert conforms(spec, "GET", "/v1/kb/jobs/{job_id}", job, 200)["document_status"] == "indexed"

    deleted = client.delete(f"/v1/kb/documents/{failed['id']}")
    conforms(spec, "DELETE", "/v1/kb/documents/{document_id}", deleted, 200)
    by_filter = client.post("/v1/kb/delete", json={"filters": {"metadata.team": "ops"}})
    assert conforms(spec, "POST", "/v1/kb/delete", by_filter, 200)["data"]["deleted_documents"] == 1


def test_query_webhook_and_health_answers_match_their_schemas(spec: dict[str, Any], client: httpx.Client) -> None:
    assert conforms(spec, "GET", "/health", httpx.get(client.base_url.join("/health")), 200) == {"status": "healthy"}
    conforms(spec, "GET", "/health/detailed", client.get("/health/detailed"), 200)

    client.post("/v1/kb/documents", json={"text": "The office opens at nine."})
    query_id = client.post("/v1/kb/chat", json={"query": "When does the office open?"}).json()["query_id"]
    client.patch(f"/v1/queries/{query_id}/rating", json={"rating": 5, "comment": "right"})
    query = conforms(spec, "GET", "/v1/queries/{query_id}", client.get(f"/v1/queries/{query_id}"), 200)
    assert query["rating"] == 5 and query["comment"] == "right"
    conforms(spec, "DELETE", "/v1/queries/{query_id}", client.delete(f"/v1/queries/{query_id}"), 200)

    created = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    assert conforms(spec, "POST", "/v1/webhooks", created, 201)["secret"].startswith("whsec_")
