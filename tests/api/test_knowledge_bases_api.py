"""Knowledge bases over HTTP, on a real server: CRUD, unique names, the default KB, kb_id at every kind
of upload, chunk defaults, search and chat scoped by kb_id, another tenant's KB, and a delete under
load (searches running while it purges: none started after the 202 sees a chunk of it)."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from ragline.adapters.local.sqlite_store import SqliteMetadataStore
from tests.api.test_documents_api import assert_error, unique, upload_text
from tests.support import Server, ragline, wait_for_status


def create_kb(client: httpx.Client, name: str | None = None, **fields) -> dict:
    response = client.post("/v1/knowledge-bases", json={"name": name or unique("kb"), **fields})
    assert response.status_code == 201, response.text
    return response.json()


def wait_until_gone(client: httpx.Client, kb_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/v1/knowledge-bases/{kb_id}").status_code != 404:
        assert time.monotonic() < deadline, f"knowledge base {kb_id} was never purged"
        time.sleep(0.05)


def test_crud_and_unique_names(client, api):
    name = unique("Manuals")
    kb = create_kb(client, name, description="how-tos", chunk_size=64, chunk_overlap=8)
    assert kb["id"].startswith("kb_") and kb["name"] == name and kb["status"] == "active"
    assert (kb["document_count"], kb["chunk_count"], kb["chunk_size"], kb["chunk_overlap"]) == (0, 0, 64, 8)
    assert kb["created_at"] and kb["updated_at"]
    assert client.get(f"/v1/knowledge-bases/{kb['id']}").json() == kb
    listed = client.get("/v1/knowledge-bases").json()
    assert kb in listed["knowledge_bases"] and listed["next_cursor"] is None

    assert_error(client.post("/v1/knowledge-bases", json={"name": name.upper()}), 409)
    other = create_kb(client)
    assert_error(client.patch(f"/v1/knowledge-bases/{other['id']}", json={"name": name}), 409)
    changed = client.patch(f"/v1/knowledge-bases/{kb['id']}", json={"description": "new", "chunk_overlap": 0})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["description"], changed.json()["chunk_overlap"], changed.json()["name"]) == ("new", 0, name)
    assert_error(client.patch(f"/v1/knowledge-bases/{kb['id']}", json={"chunk_overlap": 64}), 422)
    assert_error(client.post("/v1/knowledge-bases", json={"name": unique("x"), "chunk_size": 8}), 422)
    assert_error(client.post("/v1/knowledge-bases", json={"name": "  "}), 422)
    # Reading takes search or ingest; writing takes ingest.
    reader = {"x-api-key": api.keys["t1_search"]}
    assert client.get(f"/v1/knowledge-bases/{kb['id']}", headers=reader).status_code == 200
    assert_error(client.post("/v1/knowledge-bases", json={"name": unique("x")}, headers=reader), 403)

    deleted = client.delete(f"/v1/knowledge-bases/{kb['id']}")
    assert deleted.status_code == 202, deleted.text
    assert deleted.json()["data"]["id"] == kb["id"] and deleted.json()["data"]["status"] == "deleting"
    wait_until_gone(client, kb["id"])
    assert_error(client.delete(f"/v1/knowledge-bases/{kb['id']}"), 404)
    create_kb(client, name)  # its name is free again


def test_list_pages_with_a_cursor(wiped):
    made = {create_kb(wiped)["id"] for _ in range(3)}
    seen, cursor = [], None
    while True:
        page = wiped.get("/v1/knowledge-bases", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [kb["id"] for kb in page["knowledge_bases"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert made | {"default"} <= set(seen) and len(seen) == len(set(seen))


def test_every_tenant_has_a_default_kb_that_cannot_be_deleted(client, other):
    default = other.get("/v1/knowledge-bases/default").json()
    assert default["id"] == "default" and default["status"] == "active"
    assert "default" in [kb["id"] for kb in client.get("/v1/knowledge-bases").json()["knowledge_bases"]]
    assert_error(client.delete("/v1/knowledge-bases/default"), 409)
    accepted = upload_text(client, unique("Lands in the default knowledge base."))
    assert client.get(f"/v1/kb/documents/{accepted['document_id']}").json()["kb_id"] == "default"
    assert client.get("/v1/knowledge-bases/default").json()["document_count"] >= 1


def test_unknown_kb_id_at_upload_is_404_before_anything_is_stored(client):
    text = unique("Refused: nowhere to go.")
    assert_error(client.post("/v1/kb/documents", json={"text": text, "kb_id": "kb_nope"}), 404)
    single = client.post("/v1/kb/documents", files={"file": ("a.txt", text.encode())}, data={"kb_id": "kb_nope"})
    assert_error(single, 404)
    batch = client.post(
        "/v1/kb/documents",
        files=[("files", ("a.txt", text.encode())), ("files", ("b.txt", b"another one"))],
        data={"kb_id": "kb_nope"},
    )
    assert_error(batch, 404)
    assert_error(client.post("/v1/kb/uploads", json={"filename": "a.txt", "kb_id": "kb_nope"}), 404)
    # Nothing was stored: the same bytes are new to the default knowledge base.
    assert upload_text(client, text)["duplicate"] is False


def test_uploads_of_every_kind_go_to_the_kb(client):
    kb = create_kb(client)
    ids = [upload_text(client, unique("JSON text in a KB."), kb_id=kb["id"])["document_id"]]
    single = client.post(
        "/v1/kb/documents", files={"file": ("one.txt", unique("single").encode())}, data={"kb_id": kb["id"]}
    )
    assert single.status_code == 202, single.text
    ids.append(single.json()["data"]["document_id"])
    batch = client.post(
        "/v1/kb/documents",
        files=[("files", ("b1.txt", unique("batch 1").encode())), ("files", ("b2.txt", unique("batch 2").encode()))],
        data={"kb_id": kb["id"]},
    )
    assert batch.status_code == 202, batch.text
    ids += [d["document_id"] for d in batch.json()["documents"]]
    ticket = client.post("/v1/kb/uploads", json={"filename": "big.txt", "kb_id": kb["id"]}).json()
    assert httpx.put(ticket["upload_url"], content=unique("presigned").encode()).status_code == 202
    ids.append(ticket["document_id"])
    for document_id in ids:
        assert wait_for_status(client, document_id)["kb_id"] == kb["id"]
    listed = client.get(f"/v1/knowledge-bases/{kb['id']}/documents").json()
    assert sorted(d["id"] for d in listed["documents"]) == sorted(ids)
    shown = client.get(f"/v1/knowledge-bases/{kb['id']}").json()
    assert shown["document_count"] == 5 and shown["chunk_count"] >= 5


def test_kb_chunk_defaults_apply_to_uploads_without_their_own(client):
    words = " ".join(f"word{n}" for n in range(600))
    small = create_kb(client, chunk_size=32, chunk_overlap=0)
    inherits = upload_text(client, unique(words), kb_id=small["id"])
    own = upload_text(client, unique(words), kb_id=small["id"], chunk_size=200, chunk_overlap=0)
    server_default = upload_text(client, unique(words))
    counts = {
        name: wait_for_status(client, accepted["document_id"])["chunk_count"]
        for name, accepted in (("inherits", inherits), ("own", own), ("server", server_default))
    }
    assert counts["inherits"] > 3 * counts["own"], counts
    assert counts["inherits"] > 3 * counts["server"], counts


def test_search_and_chat_are_scoped_by_kb_id(client):
    marker = f"zebrafinch{uuid.uuid4().hex[:6]}"
    kb_a, kb_b = create_kb(client), create_kb(client)
    in_a = upload_text(client, f"The {marker} nests in kb A near the river.", kb_id=kb_a["id"])["document_id"]
    in_b = upload_text(client, f"The {marker} sings in kb B at dawn.", kb_id=kb_b["id"])["document_id"]
    for document_id in (in_a, in_b):
        assert wait_for_status(client, document_id)["status"] == "indexed"
    found = client.post("/v1/kb/search", json={"query": marker, "mode": "keyword"}).json()["items"]
    assert {h["payload"]["document_id"] for h in found} == {in_a, in_b}
    scoped = client.post("/v1/kb/search", json={"query": marker, "filters": {"kb_id": kb_a["id"]}}).json()["items"]
    assert {h["payload"]["document_id"] for h in scoped} == {in_a}
    assert all(h["payload"]["kb_id"] == kb_a["id"] for h in scoped)
    answer = client.post(
        "/v1/kb/chat", json={"query": f"Where does the {marker} nest?", "filters": {"kb_id": kb_b["id"]}}
    )
    assert answer.status_code == 200, answer.text
    assert {s["document_id"] for s in answer.json()["sources"]} <= {in_b}


def test_another_tenants_kb_is_404_on_every_route(client, other):
    mine = create_kb(client)
    path = f"/v1/knowledge-bases/{mine['id']}"
    assert_error(other.get(path), 404)
    assert_error(other.patch(path, json={"description": "theirs now"}), 404)
    assert_error(other.delete(path), 404)
    assert_error(other.get(f"{path}/documents"), 404)
    assert_error(other.post("/v1/kb/documents", json={"text": unique("x"), "kb_id": mine["id"]}), 404)
    assert_error(other.post("/v1/kb/uploads", json={"filename": "a.txt", "kb_id": mine["id"]}), 404)
    assert mine["id"] not in [kb["id"] for kb in other.get("/v1/knowledge-bases").json()["knowledge_bases"]]
    # The same name is free for another tenant.
    assert other.post("/v1/knowledge-bases", json={"name": mine["name"]}).status_code == 201
    assert client.get(path).json()["description"] == ""


def test_a_kb_being_deleted_takes_no_uploads(client):
    kb = create_kb(client)
    for n in range(3):
        upload_text(client, unique(f"document {n} of a KB about to go"), kb_id=kb["id"])
    assert client.delete(f"/v1/knowledge-bases/{kb['id']}").status_code == 202
    late = client.post("/v1/kb/documents", json={"text": unique("too late"), "kb_id": kb["id"]})
    assert late.status_code in (404, 409), late.text  # 409 while it purges, 404 once it is gone
    wait_until_gone(client, kb["id"])


@pytest.mark.parametrize("mode", ["hybrid", "keyword"])
def test_delete_under_load_never_shows_a_chunk_after_the_202(client, api, mode):
    marker = f"kiwifruit{uuid.uuid4().hex[:6]}"
    doomed_kb, kept_kb = create_kb(client), create_kb(client)
    doomed = {
        upload_text(client, f"Chapter {n}: the {marker} orchard, row {n}. " * 20, kb_id=doomed_kb["id"])["document_id"]
        for n in range(6)
    }
    kept = upload_text(client, f"The {marker} survives elsewhere.", kb_id=kept_kb["id"])["document_id"]
    for document_id in (*doomed, kept):
        assert wait_for_status(client, document_id)["status"] == "indexed"

    accepted_at: list[float] = []
    stop = threading.Event()
    observations: list[tuple[float, set[str], set[str]]] = []  # (started, document ids, kb ids)
    failures: list[str] = []

    def search_loop() -> None:
        with httpx.Client(base_url=api.url, headers={"x-api-key": api.keys["t1"]}, timeout=60) as c:
            while not stop.is_set():
                started = time.monotonic()
                response = c.post("/v1/kb/search", json={"query": marker, "mode": mode, "limit": 50})
                if response.status_code != 200:
                    failures.append(response.text)
                    continue
                items = response.json()["items"]
                observations.append(
                    (started, {h["payload"]["document_id"] for h in items}, {h["payload"]["kb_id"] for h in items})
                )

    threads = [threading.Thread(target=search_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # searches see the KB before it is deleted
    response = client.delete(f"/v1/knowledge-bases/{doomed_kb['id']}")
    accepted_at.append(time.monotonic())
    assert response.status_code == 202, response.text
    assert response.json()["data"]["status"] == "deleting"
    wait_until_gone(client, doomed_kb["id"])
    time.sleep(0.3)  # and a few searches after it is done
    stop.set()
    for thread in threads:
        thread.join(60)

    assert failures == []
    before = [o for o in observations if o[0] < accepted_at[0] - 0.2]
    after = [o for o in observations if o[0] > accepted_at[0]]
    assert before and all(doomed <= ids for _, ids, _ in before), "the searches saw the KB before its delete"
    assert len(after) >= 4
    leaked = [(ids & doomed, kbs) for _, ids, kbs in after if ids & doomed or doomed_kb["id"] in kbs]
    assert leaked == [], "chunks of the deleted KB in searches started after the 202"
    assert all(kept in ids for _, ids, _ in after)
    # Done: zero chunks of it, whatever the filter (the KB no longer hides anything: they are gone).
    gone = client.post(
        "/v1/kb/search", json={"query": marker, "mode": "keyword", "filters": {"kb_id": doomed_kb["id"]}}
    )
    assert gone.json()["items"] == [] and gone.json()["total_found"] == 0
    for document_id in doomed:
        assert_error(client.get(f"/v1/kb/documents/{document_id}"), 404)


def test_a_delete_cut_short_by_a_crash_finishes_at_the_next_start(tmp_path):
    data_dir = tmp_path / "data"
    key = ragline("keys", "create", "--tenant", "t1", "--data-dir", str(data_dir)).strip()
    marker = f"quince{uuid.uuid4().hex[:6]}"
    server = Server(data_dir).start()
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60) as c:
            kb = create_kb(c)
            ids = [upload_text(c, f"The {marker} tree, part {n}.", kb_id=kb["id"])["document_id"] for n in range(2)]
            for document_id in ids:
                assert wait_for_status(c, document_id)["status"] == "indexed"
    finally:
        server.kill()
    # What a crash right after the 202 leaves: the KB marked deleting, its documents all still there.
    SqliteMetadataStore(data_dir / "metadata.db").mark_kb_deleting("t1", kb["id"])
    server = Server(data_dir).start()
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60) as c:
            wait_until_gone(c, kb["id"])
            for document_id in ids:
                assert_error(c.get(f"/v1/kb/documents/{document_id}"), 404)
            found = c.post("/v1/kb/search", json={"query": marker, "mode": "keyword", "filters": {"kb_id": kb["id"]}})
            assert found.json()["total_found"] == 0
    finally:
        server.stop()


def test_creating_with_an_idempotency_key_creates_one_kb(client):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"name": unique("once")}
    first = client.post("/v1/knowledge-bases", json=body, headers=key)
    again = client.post("/v1/knowledge-bases", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    names = [kb["name"] for kb in client.get("/v1/knowledge-bases").json()["knowledge_bases"]]
    assert names.count(body["name"]) == 1
