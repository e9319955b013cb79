"""Documents, search and chat against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.api.conftest import UPLOAD_LIMIT
from tests.support import make_blank_pdf, make_encrypted_pdf, make_pdf, shared_dir, wait_for_status


def unique(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:8]}]"


def upload_text(client, text, **extra):
    response = client.post("/v1/kb/documents", json={"text": text, **extra})
    assert response.status_code == 202, response.text
    return response.json()["data"]


def assert_error(response: httpx.Response, status: int):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status and body["error"] and body["message"]
    return body


# ---- auth ------------------------------------------------------------------------------------
ROUTES = [
    ("GET", "/v1/kb/documents", None),
    ("POST", "/v1/kb/documents", {"text": "x"}),
    ("GET", "/v1/kb/documents/doc_x", None),
    ("DELETE", "/v1/kb/documents/doc_x", None),
    ("POST", "/v1/kb/delete", {"filters": {}}),
    ("GET", "/v1/kb/jobs/job_x", None),
    ("POST", "/v1/kb/uploads", {"filename": "a.txt"}),
    ("POST", "/v1/kb/search", {"query": "x"}),
    ("POST", "/v1/kb/chat", {"query": "x"}),
    ("POST", "/v1/kb/chat/stream", {"query": "x"}),
    ("GET", "/health/detailed", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("key", [None, "rl_not-a-key", "expired", "revoked"])
def test_every_route_needs_a_valid_key(api, method, path, body, key):
    headers = {} if key is None else {"x-api-key": api.keys.get(key, key)}
    response = httpx.request(method, api.url + path, json=body, headers=headers, timeout=30)
    assert_error(response, 401)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [r for r in ROUTES if r[1] not in ("/v1/kb/search",)],
)
def test_scopes_are_enforced(api, method, path, body):
    response = httpx.request(
        method, api.url + path, json=body, headers={"x-api-key": api.keys["t1_search"]}, timeout=30
    )
    assert_error(response, 403)


def test_health_is_public_and_detailed_is_admin(api, client):
    assert httpx.get(f"{api.url}/health").json() == {"status": "healthy"}
    detailed = client.get("/health/detailed")
    assert detailed.status_code == 200
    body = detailed.json()
    assert body["status"] == "healthy"
    assert set(body["dependencies"]) >= {"metadata_store", "vector_index", "embedder", "blob_store", "answer_model"}
    assert {"memory_usage", "cpu_usage"} <= set(body["system"])
    # The caller's own chunk count only: no server-wide chunk or term counts for any tenant's admin.
    assert set(body["index"]) == {"tenant_chunks"}


def test_openapi_and_unknown_routes(api, client):
    spec = httpx.get(f"{api.url}/openapi.json").json()
    for path in (
        "/v1/kb/documents",
        "/v1/kb/search",
        "/v1/kb/chat",
        "/v1/kb/chat/stream",
        "/v1/kb/delete",
        "/v1/kb/jobs/{job_id}",
        "/v1/kb/uploads",
        "/health",
        "/health/detailed",
    ):
        assert path in spec["paths"], path
    assert_error(client.get("/v1/nothing-here"), 404)


# ---- ingestion --------------------------------------------------------------------------------
def test_text_upload_is_indexed_searchable_and_isolated(client, other):
    marker = uuid.uuid4().hex[:10]
    data = upload_text(
        client,
        f"Our return policy allows refunds within 30 days. Code {marker}.",
        title="Returns",
        metadata={"team": "support", "tag_ids": ["policy"]},
    )
    doc = wait_for_status(client, data["document_id"])
    assert doc["status"] == "indexed" and doc["chunk_count"] == 1 and doc["title"] == "Returns"
    job = client.get(f"/v1/kb/jobs/{data['job_id']}").json()
    assert job["status"] == "succeeded" and job["document_id"] == data["document_id"]

    hits = client.post("/v1/kb/search", json={"query": f"refund policy {marker}", "limit": 3}).json()
    top = hits["items"][0]
    assert top["payload"]["document_id"] == data["document_id"]
    assert top["payload"]["tenant_id"] == "t1" and top["payload"]["tag_ids"] == ["policy"]
    assert 0 < top["score"] <= 1 and hits["total_found"] >= 1 and hits["latency_ms"] >= 0

    # tenant 2 sees none of it, by any route
    assert other.post("/v1/kb/search", json={"query": marker}).json()["items"] == []
    assert_error(other.get(f"/v1/kb/documents/{data['document_id']}"), 404)
    assert_error(other.get(f"/v1/kb/jobs/{data['job_id']}"), 404)
    assert_error(other.delete(f"/v1/kb/documents/{data['document_id']}"), 404)
    assert_error(other.post("/v1/kb/search", json={"query": marker, "filters": {"tenant_id": "t1"}}), 403)
    assert_error(other.post("/v1/kb/chat", json={"query": marker, "filters": {"tenant_id": "t1"}}), 403)
    assert_error(other.post("/v1/kb/delete", json={"filters": {"tenant_id": "t1"}}), 403)
    assert all(d["id"] != data["document_id"] for d in other.get("/v1/kb/documents").json()["documents"])
    assert other.post("/v1/kb/chat", json={"query": marker}).json()["sources"] == []
    # and tenant 1 may name itself
    assert client.post("/v1/kb/search", json={"query": marker, "filters": {"tenant_id": "t1"}}).status_code == 200


def test_search_modes_and_filters(client):
    marker = uuid.uuid4().hex[:10]
    a = upload_text(client, f"Kubernetes clusters run containers {marker}.", metadata={"team": "ops", "year": 2024})
    b = upload_text(client, f"Quarterly revenue grew in Europe {marker}.", metadata={"team": "finance", "year": 2021})
    for d in (a, b):
        wait_for_status(client, d["document_id"])
    for mode in ("hybrid", "semantic", "keyword"):
        body = client.post("/v1/kb/search", json={"query": f"container orchestration {marker}", "mode": mode}).json()
        assert body["items"][0]["payload"]["document_id"] == a["document_id"], mode
    filtered = client.post(
        "/v1/kb/search", json={"query": marker, "filters": {"metadata.team": {"$in": ["finance"]}}}
    ).json()
    assert {i["payload"]["document_id"] for i in filtered["items"]} == {b["document_id"]}
    ranged = client.post(
        "/v1/kb/search",
        json={
            "query": marker,
            "filters": {
                "$and": [
                    {"metadata.year": {"$gte": 2022}},
                    {"document_id": {"$in": [a["document_id"], b["document_id"]]}},
                ]
            },
        },
    ).json()
    assert {i["payload"]["document_id"] for i in ranged["items"]} == {a["document_id"]}
    high = client.post("/v1/kb/search", json={"query": marker, "mode": "semantic", "score_threshold": 0.99}).json()
    assert all(i["score"] >= 0.99 for i in high["items"])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"query": ""}, 422),
        ({"query": "   "}, 422),
        ({"query": "x", "limit": 0}, 422),
        ({"query": "x", "limit": 101}, 422),
        ({"query": "x", "limit": "ten"}, 422),
        ({"query": "x", "mode": "fuzzy"}, 422),
        ({"query": 5}, 422),
        ({"query": "x", "filters": {"colour": "red"}}, 400),
        ({"query": "x", "filters": {"source": {"$regex": "a"}}}, 400),
        ({"query": "x", "filters": "tenant"}, 422),
        ({"query": "x", "unknown": 1}, 422),
        ({}, 422),
    ],
)
def test_bad_search_requests(client, body, status):
    body_out = assert_error(client.post("/v1/kb/search", json=body), status)
    if status == 422:
        assert "details" in body_out


def test_malformed_json_is_400(client):
    for path in ("/v1/kb/search", "/v1/kb/chat", "/v1/kb/documents", "/v1/kb/delete"):
        response = client.post(path, content=b'{"query": "x",', headers={"content-type": "application/json"})
        assert_error(response, 400)


def test_pdf_upload_keeps_pages(client):
    pdf = make_pdf(["Page one talks about solar panels.", "Page two talks about wind turbines."], title="Energy")
    response = client.post(
        "/v1/kb/documents",
        files={"file": ("energy.pdf", pdf, "application/pdf")},
        data={"metadata": json.dumps({"source": "handbook"})},
    )
    assert response.status_code == 202
    doc = wait_for_status(client, response.json()["data"]["document_id"])
    assert doc["status"] == "indexed" and doc["page_count"] == 2 and doc["content_type"] == "application/pdf"
    assert doc["filename"] == "energy.pdf" and doc["size_bytes"] == len(pdf) and len(doc["content_sha256"]) == 64
    hits = client.post("/v1/kb/search", json={"query": "wind turbines", "filters": {"document_id": doc["id"]}}).json()
    assert hits["items"][0]["payload"]["page"] == 2
    assert hits["items"][0]["payload"]["source"] == "handbook"


@pytest.mark.parametrize(
    ("filename", "content", "error"),
    [
        ("empty.txt", b"", "empty file"),
        ("corrupt.pdf", b"%PDF-1.4\nthis is not really a pdf", "corrupt PDF"),
        ("locked.pdf", None, "encrypted PDF"),
        ("scan.pdf", None, "no extractable text — scanned PDF?"),
        ("binary.txt", b"\x00\x01\x02binary", "binary data"),
    ],
)
def test_bad_files_end_failed_with_a_readable_error(client, filename, content, error):
    if filename == "locked.pdf":
        content = make_encrypted_pdf(unique("secret"))
    elif filename == "scan.pdf":
        content = make_blank_pdf(pages=3) + uuid.uuid4().hex.encode()
    response = client.post("/v1/kb/documents", files={"file": (filename, content)})
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    doc = wait_for_status(client, data["document_id"])
    assert doc["status"] == "failed" and error in doc["error"]
    job = client.get(f"/v1/kb/jobs/{data['job_id']}").json()
    assert job["status"] == "failed" and error in job["error"]


def test_unsupported_and_oversized_files_are_refused(client):
    assert_error(client.post("/v1/kb/documents", files={"file": ("photo.png", b"\x89PNG\r\n\x1a\n....")}), 415)
    assert_error(client.post("/v1/kb/documents", files={"file": ("big.txt", b"a" * (UPLOAD_LIMIT + 1))}), 413)
    assert_error(client.post("/v1/kb/documents", data={"metadata": "{}"}, files={"other": ("x.txt", b"x")}), 400)
    assert_error(client.post("/v1/kb/documents", files={"file": ("a.txt", b"x")}, data={"metadata": "{not json"}), 400)
    assert_error(client.post("/v1/kb/documents", files={"file": ("a.txt", b"x")}, data={"metadata": "[1]"}), 400)
    assert_error(client.post("/v1/kb/documents", files={"file": ("a.txt", b"x")}, data={"chunk_size": "big"}), 422)
    assert_error(client.post("/v1/kb/documents", files={"file": ("a.txt", b"x")}, data={"chunk_size": "5000"}), 422)
    assert_error(client.post("/v1/kb/documents", content=b"raw", headers={"content-type": "text/plain"}), 400)
    assert_error(client.post("/v1/kb/documents", json={"title": "no text"}), 422)


def test_real_pdfs(client):
    pdfs = shared_dir("pdfs")
    ok = client.post("/v1/kb/documents", files={"file": ("tm.pdf", (pdfs / "tracemonkey-pldi09.pdf").read_bytes())})
    bad = client.post(
        "/v1/kb/documents", files={"file": ("bad.pdf", (pdfs / "invalid-truncated-linearized.pdf").read_bytes())}
    )
    assert_error(
        client.post(
            "/v1/kb/documents",
            files={"file": ("big.pdf", (pdfs / "gainp-gaas-solar-cell-tunnel-junction.pdf").read_bytes())},
        ),
        413,
    )
    doc = wait_for_status(client, ok.json()["data"]["document_id"], timeout=180)
    assert doc["status"] == "indexed" and doc["page_count"] == 14 and doc["chunk_count"] > 50
    failed = wait_for_status(client, bad.json()["data"]["document_id"])
    assert failed["status"] == "failed" and "corrupt PDF" in failed["error"]
    hits = client.post(
        "/v1/kb/search", json={"query": "trace trees type specialization", "filters": {"document_id": doc["id"]}}
    ).json()
    assert hits["items"] and all(1 <= h["payload"]["page"] <= 14 for h in hits["items"])


def test_batch_upload_reports_each_file(client):
    marker = unique("batch")
    files = [
        ("files", ("one.txt", f"first {marker}".encode())),
        ("files", ("two.md", f"# Two\nsecond {marker}".encode())),
        ("files", ("three.png", b"\x89PNG.....")),
    ]
    response = client.post("/v1/kb/documents", files=files)
    assert response.status_code == 202
    body = response.json()
    assert body["successful"] == 2 and body["failed"] == 1
    rejected = [d for d in body["documents"] if d["status"] == "rejected"]
    assert rejected[0]["filename"] == "three.png" and rejected[0]["code"] == 415
    for d in body["documents"]:
        if d["document_id"]:
            assert wait_for_status(client, d["document_id"])["status"] == "indexed"


def test_batch_abort_stores_nothing(client):
    marker = unique("abort")
    before = client.get("/v1/kb/documents", params={"limit": 500}).json()["documents"]
    files = [("files", ("ok.txt", marker.encode())), ("files", ("bad.exe", b"MZ\x00\x00"))]
    body = assert_error(client.post("/v1/kb/documents", files=files, data={"on_error": "abort"}), 415)
    assert body["details"][0]["filename"] == "bad.exe"
    after = client.get("/v1/kb/documents", params={"limit": 500}).json()["documents"]
    assert len(after) == len(before)


def test_identical_bytes_are_not_duplicated(client):
    text = unique("the same bytes twice")
    first = upload_text(client, text)
    wait_for_status(client, first["document_id"])
    second = upload_text(client, text)
    assert second["document_id"] == first["document_id"] and second["duplicate"] is True


def test_external_id_replaces_the_previous_version(client):
    external_id = unique("handbook")
    old_marker, new_marker = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    v1 = upload_text(client, f"Old policy {old_marker}.", external_id=external_id)
    wait_for_status(client, v1["document_id"])
    v2 = upload_text(client, f"New policy {new_marker}.", external_id=external_id)
    assert v2["document_id"] == v1["document_id"]
    doc = wait_for_status(client, v2["document_id"])
    assert doc["status"] == "indexed"
    assert client.post("/v1/kb/search", json={"query": old_marker, "mode": "keyword"}).json()["items"] == []
    hits = client.post("/v1/kb/search", json={"query": new_marker, "mode": "keyword"}).json()["items"]
    assert [h["payload"]["document_id"] for h in hits] == [v1["document_id"]]


def test_listing_pages_with_a_cursor(client):
    kb = client.post("/v1/knowledge-bases", json={"name": "kb-" + uuid.uuid4().hex[:8]}).json()["id"]
    ids = {upload_text(client, unique(f"listing {i}"), kb_id=kb)["document_id"] for i in range(5)}
    seen, cursor = [], None
    while True:
        params = {"kb_id": kb, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/kb/documents", params=params).json()
        seen += [d["id"] for d in page["documents"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids)
    assert_error(client.get("/v1/kb/documents", params={"status": "nonsense"}), 422)
    assert_error(client.get("/v1/kb/documents", params={"limit": 0}), 422)


def test_delete_leaves_nothing_searchable(client):
    marker = uuid.uuid4().hex[:10]
    data = upload_text(client, f"Ephemeral content {marker}.")
    wait_for_status(client, data["document_id"])
    response = client.delete(f"/v1/kb/documents/{data['document_id']}")
    assert response.json() == {"status": "success", "data": {"document_id": data["document_id"]}}
    assert_error(client.get(f"/v1/kb/documents/{data['document_id']}"), 404)
    for mode in ("keyword", "semantic"):
        items = client.post("/v1/kb/search", json={"query": marker, "mode": mode, "limit": 100}).json()["items"]
        assert all(i["payload"]["document_id"] != data["document_id"] for i in items)
    assert_error(client.delete(f"/v1/kb/documents/{data['document_id']}"), 404)


def test_delete_by_filters(client):
    team = "team-" + uuid.uuid4().hex[:6]
    doomed = [upload_text(client, unique("doomed"), metadata={"team": team})["document_id"] for _ in range(2)]
    kept = upload_text(client, unique("kept"), metadata={"team": "other"})["document_id"]
    for d in doomed + [kept]:
        wait_for_status(client, d)
    response = client.post("/v1/kb/delete", json={"filters": {"metadata.team": team}})
    assert response.status_code == 200
    assert response.json()["data"]["deleted_documents"] == 2
    assert response.json()["data"]["filters"]["tenant_id"] == "t1"
    for d in doomed:
        assert_error(client.get(f"/v1/kb/documents/{d}"), 404)
    assert client.get(f"/v1/kb/documents/{kept}").status_code == 200
    assert_error(client.post("/v1/kb/delete", json={"filters": {"bogus": 1}}), 400)
    assert_error(client.post("/v1/kb/delete", json={}), 422)


def test_deleting_every_document_must_be_said_with_all(wiped, client):
    team = "team-" + uuid.uuid4().hex[:6]
    mine = [upload_text(wiped, unique("t3 doc"), metadata={"team": t})["document_id"] for t in (team, "other")]
    theirs = upload_text(client, unique("t1 doc"))["document_id"]
    for d in mine:
        wait_for_status(wiped, d)
    wait_for_status(client, theirs)

    # Empty filters alone no longer wipe the tenant.
    body = assert_error(wiped.post("/v1/kb/delete", json={"filters": {}}), 400)
    assert set(body) == {"error", "message", "code"} and '"all": true' in body["message"]
    assert all(wiped.get(f"/v1/kb/documents/{d}").status_code == 200 for d in mine)

    # With filters, "all" changes nothing: the filters decide.
    response = wiped.post("/v1/kb/delete", json={"filters": {"metadata.team": team}, "all": True})
    assert response.status_code == 200 and response.json()["data"]["deleted_documents"] == 1
    assert_error(wiped.get(f"/v1/kb/documents/{mine[0]}"), 404)
    assert wiped.get(f"/v1/kb/documents/{mine[1]}").status_code == 200

    response = wiped.post("/v1/kb/delete", json={"filters": {}, "all": True})
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"deleted_documents": 1, "filters": {"tenant_id": "t3"}}
    assert wiped.get("/v1/kb/documents").json()["documents"] == []
    # Another tenant's documents are never touched.
    assert client.get(f"/v1/kb/documents/{theirs}").json()["status"] == "indexed"


def test_presigned_upload(client, api):
    ticket = client.post("/v1/kb/uploads", json={"filename": "big.md", "metadata": {"team": "docs"}}).json()
    assert ticket["expires_in"] > 0 and ticket["upload_url"].startswith(api.url)
    body = f"# Large file\nUploaded out of band {uuid.uuid4().hex}.".encode()
    assert_error(httpx.put(ticket["upload_url"].replace("token=", "token=x"), content=body), 403)
    put = httpx.put(ticket["upload_url"], content=body)
    assert put.status_code == 202 and put.json()["data"]["document_id"] == ticket["document_id"]
    doc = wait_for_status(client, ticket["document_id"])
    assert doc["status"] == "indexed" and doc["metadata"] == {"team": "docs"}
    assert_error(httpx.put(ticket["upload_url"], content=b"again, different"), 409)
    assert_error(client.post("/v1/kb/uploads", json={"filename": "x.exe"}), 415)


# ---- chat ----------------------------------------------------------------------------------------
def test_chat_answers_with_citations(client):
    marker = uuid.uuid4().hex[:8]
    data = upload_text(client, f"The warranty for model {marker} lasts two years. It covers parts and labour.")
    wait_for_status(client, data["document_id"])
    body = client.post("/v1/kb/chat", json={"query": f"How long is the warranty for {marker}?"}).json()
    assert body["model"].startswith("extractive")
    assert "[1]" in body["answer"] and "two years" in body["answer"]
    assert body["sources"][0]["document_id"] == data["document_id"]
    assert set(body["sources"][0]) >= {"id", "score", "document_id", "title", "filename", "page", "text"}
    assert body["query_id"] and body["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_chat_stream_framing(client):
    marker = uuid.uuid4().hex[:8]
    data = upload_text(client, f"Gadget {marker} charges in forty minutes with the bundled cable.")
    wait_for_status(client, data["document_id"])
    with client.stream("POST", "/v1/kb/chat/stream", json={"query": f"How fast does {marker} charge?"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        raw = response.read().decode()
    frames = [f for f in raw.split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"
    events = [json.loads(f[6:]) for f in frames[:-1]]
    assert events[0]["event"] == "sources" and events[0]["data"]["sources"][0]["document_id"] == data["document_id"]
    assert events[-1]["event"] == "done" and events[-1]["data"]["query_id"]
    messages = [e["data"]["content"] for e in events[1:-1]]
    assert all(e["event"] == "message" for e in events[1:-1]) and len(messages) > 1
    whole = client.post("/v1/kb/chat", json={"query": f"How fast does {marker} charge?"}).json()
    assert "".join(messages).strip() == whole["answer"]


def test_chat_bad_input(client):
    assert_error(client.post("/v1/kb/chat", json={"query": ""}), 422)
    assert_error(client.post("/v1/kb/chat", json={"query": "x", "history": [{"role": "system", "content": "x"}]}), 422)
    assert_error(client.post("/v1/kb/chat", json={"query": "x", "temperature": 3}), 422)
    assert_error(client.post("/v1/kb/chat/stream", json={"query": "x", "filters": {"nope": 1}}), 400)


def test_unicode_round_trips(client):
    text = f"Ünïcödé — 日本語のテキスト and emoji 🚀 {uuid.uuid4().hex[:6]}"
    data = upload_text(client, text, title="Ünïcödé", metadata={"ключ": "значение"})
    doc = wait_for_status(client, data["document_id"])
    assert doc["title"] == "Ünïcödé" and doc["metadata"] == {"ключ": "значение"}
    hits = client.post(
        "/v1/kb/search", json={"query": "日本語のテキスト", "filters": {"document_id": data["document_id"]}}
    ).json()
    assert hits["items"][0]["payload"]["text"] == text
