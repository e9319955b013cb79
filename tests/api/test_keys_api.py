"""The Keys API, key usage and the audit log on a real server (`ragline serve`), and the CLI beside it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support import Server, ragline

HOOK = {"url": "http://127.0.0.1:9/hook", "events": ["*"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("keys-api")
    keys = {
        tenant: ragline(
            "keys", "create", "--tenant", tenant, "--name", f"{tenant} admin", "--data-dir", str(data_dir)
        ).strip()
        for tenant in ("t1", "t2")
    }
    server = Server(data_dir, env={"RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true"}).start()
    server.keys = keys
    yield server
    server.stop()


def client(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60)


@pytest.fixture
def t1(server: Server) -> Iterator[httpx.Client]:
    with client(server, server.keys["t1"]) as c:
        yield c


@pytest.fixture
def t2(server: Server) -> Iterator[httpx.Client]:
    with client(server, server.keys["t2"]) as c:
        yield c


def no_secrets(item: dict, *secrets: str) -> None:
    text = json.dumps(item)
    assert "key_hash" not in item and "key" not in item
    for secret in secrets:
        assert secret not in text and secret[3:] not in text


def test_create_list_get_show_the_key_once_and_never_its_hash(t1: httpx.Client) -> None:
    created = t1.post(
        "/v1/keys",
        json={"name": "dashboard", "scopes": ["search"], "expires_in_days": 7, "rate_limit_per_minute": 30},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body.pop("key")
    assert secret.startswith("rl_") and body["prefix"] == secret[: len(body["prefix"])]
    assert body["name"] == "dashboard" and body["scopes"] == ["search"] and body["rate_limit_per_minute"] == 30
    assert body["expires_at"] and body["revoked_at"] is None and body["last_used_at"] is None
    got = t1.get(f"/v1/keys/{body['id']}")
    assert got.status_code == 200
    assert got.json() == body
    no_secrets(got.json(), secret)
    listed = t1.get("/v1/keys").json()
    assert body in listed["keys"] and listed["next_cursor"] is None
    for item in listed["keys"]:
        no_secrets(item, secret)
    assert set(got.json()) == set(listed["keys"][0])  # an item is the same shape as in its list
    # The new key works, for what it may do only.
    with client_of(t1, secret) as dashboard:
        assert dashboard.post("/v1/kb/search", json={"query": "x"}).status_code == 200
        assert dashboard.get("/v1/kb/documents").status_code == 403
        assert dashboard.get("/v1/keys").status_code == 403


def client_of(other: httpx.Client, key: str) -> httpx.Client:
    return httpx.Client(base_url=str(other.base_url), headers={"x-api-key": key}, timeout=60)


def test_list_pages_with_a_cursor(t1: httpx.Client) -> None:
    made = {t1.post("/v1/keys", json={"name": f"page {n}", "scopes": ["chat"]}).json()["id"] for n in range(3)}
    seen: list[str] = []
    cursor = None
    while True:
        page = t1.get("/v1/keys", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["keys"]) <= 2
        seen += [k["id"] for k in page["keys"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert made <= set(seen) and len(seen) == len(set(seen)) and seen == sorted(seen)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["superuser"]},
        {"name": "", "scopes": ["search"]},
        {"scopes": ["search"]},
        {"name": "x", "scopes": ["search"], "expires_in_days": 0},
        {"name": "x", "scopes": ["search"], "rate_limit_per_minute": 0},
        {"name": "x", "scopes": ["search"], "owner": "t2"},
    ],
)
def test_bad_key_requests_are_422(t1: httpx.Client, body: dict) -> None:
    response = t1.post("/v1/keys", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == 422


def test_a_key_cannot_create_or_rotate_a_key_with_more_scopes_than_its_own(t1: httpx.Client) -> None:
    limited = t1.post("/v1/keys", json={"name": "ops", "scopes": ["admin", "search"]}).json()
    chat_key = t1.post("/v1/keys", json={"name": "bot", "scopes": ["chat"]}).json()
    with client_of(t1, limited["key"]) as ops:
        # admin does not stand in for the other scopes here
        refused = ops.post("/v1/keys", json={"name": "x", "scopes": ["search", "chat"]})
        assert refused.status_code == 403
        assert refused.json()["error"] == "Insufficient scope" and "chat" in refused.json()["message"]
        assert ops.post("/v1/keys", json={"name": "x", "scopes": ["search"]}).status_code == 201
        # rotating would hand it the chat key's new secret
        assert ops.post(f"/v1/keys/{chat_key['id']}/rotate", json={"grace_period_hours": 1}).status_code == 403
    assert t1.get(f"/v1/keys/{chat_key['id']}").json()["replaced_by"] is None


def test_rotation_keeps_the_old_secret_for_its_grace_period_then_401(t1: httpx.Client) -> None:
    old = t1.post("/v1/keys", json={"name": "ci", "scopes": ["search"]}).json()
    rotated = t1.post(f"/v1/keys/{old['id']}/rotate", json={"grace_period_hours": 3 / 3600})  # 3 seconds
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["id"] != old["id"] and new["key"] != old["key"] and new["rotated_from"] == old["id"]
    assert new["name"] == "ci" and new["scopes"] == ["search"]
    assert t1.get(f"/v1/keys/{old['id']}").json()["replaced_by"] == new["id"]
    with client_of(t1, old["key"]) as before, client_of(t1, new["key"]) as after:
        assert before.post("/v1/kb/search", json={"query": "x"}).status_code == 200  # in its grace period
        assert after.post("/v1/kb/search", json={"query": "x"}).status_code == 200
        time.sleep(3.2)
        late = before.post("/v1/kb/search", json={"query": "x"})
        assert late.status_code == 401
        assert "rotated" in late.json()["message"]
        assert after.post("/v1/kb/search", json={"query": "x"}).status_code == 200
    again = t1.post(f"/v1/keys/{old['id']}/rotate", json={"grace_period_hours": 1})
    assert again.status_code == 409


def test_revocation_is_immediate(t1: httpx.Client) -> None:
    doomed = t1.post("/v1/keys", json={"name": "leaked", "scopes": ["search"]}).json()
    with client_of(t1, doomed["key"]) as leaked:
        assert leaked.post("/v1/kb/search", json={"query": "x"}).status_code == 200
        assert t1.delete(f"/v1/keys/{doomed['id']}").status_code == 204
        refused = leaked.post("/v1/kb/search", json={"query": "x"})
        assert refused.status_code == 401
        assert refused.json() == {"error": "Invalid API key", "message": "the API key has been revoked", "code": 401}
    assert t1.get(f"/v1/keys/{doomed['id']}").json()["revoked_at"]
    assert t1.delete(f"/v1/keys/{doomed['id']}").status_code == 204  # again: still revoked, same time
    assert t1.post(f"/v1/keys/{doomed['id']}/rotate", json={}).status_code == 409


def test_usage_counts_a_known_sequence(t1: httpx.Client) -> None:
    worker = t1.post("/v1/keys", json={"name": "worker", "scopes": ["search", "chat"]}).json()
    with client_of(t1, worker["key"]) as w:
        for _ in range(3):
            assert w.post("/v1/kb/search", json={"query": "refunds"}).status_code == 200
        assert w.post("/v1/kb/chat", json={"query": "refunds"}).status_code == 200
        assert w.post("/v1/kb/search", json={"query": "x", "limit": 1000}).status_code == 422
        assert w.get("/v1/kb/documents").status_code == 403  # counted too: the key was presented
    with client_of(t1, "rl_unknown") as stranger:  # a 401 belongs to no key
        assert stranger.post("/v1/kb/search", json={"query": "x"}).status_code == 401
    usage = t1.get(f"/v1/keys/{worker['id']}/usage", params={"period_days": 1})
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert body["requests"] == 6 and body["errors"] == 2
    assert body["by_route"] == {"POST /v1/kb/search": 4, "POST /v1/kb/chat": 1, "GET /v1/kb/documents": 1}
    assert body["unique_ips"] == 1 and body["period_days"] == 1 and body["last_used_at"]
    assert set(body["chat_tokens"]) == {"input_tokens", "output_tokens"}
    assert t1.get(f"/v1/keys/{worker['id']}").json()["last_used_at"] == body["last_used_at"]
    assert t1.get(f"/v1/keys/{worker['id']}/usage", params={"period_days": 0}).status_code == 422
    assert t1.get(f"/v1/keys/{worker['id']}/usage", params={"period_days": 91}).status_code == 422


def test_another_tenants_keys_are_404_on_every_key_route(t1: httpx.Client, t2: httpx.Client) -> None:
    theirs = t2.post("/v1/keys", json={"name": "t2 bot", "scopes": ["search"]}).json()
    for method, path, body in (
        ("GET", f"/v1/keys/{theirs['id']}", None),
        ("POST", f"/v1/keys/{theirs['id']}/rotate", {"grace_period_hours": 0}),
        ("DELETE", f"/v1/keys/{theirs['id']}", None),
        ("GET", f"/v1/keys/{theirs['id']}/usage", None),
    ):
        response = t1.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json() == {"error": "Key not found", "message": f"key {theirs['id']} not found", "code": 404}
        missing = t1.request(method, path.replace(theirs["id"], "key_00000000000000000000000"), json=body)
        assert missing.status_code == 404  # exactly as for an id that does not exist
    assert theirs["id"] not in {k["id"] for k in t1.get("/v1/keys").json()["keys"]}
    still = t2.get(f"/v1/keys/{theirs['id']}").json()
    assert still["revoked_at"] is None and still["replaced_by"] is None
    with client_of(t2, theirs["key"]) as bot:
        assert bot.post("/v1/kb/search", json={"query": "x"}).status_code == 200


def audit(c: httpx.Client, limit: int = 100) -> list[dict]:
    response = c.get("/v1/audit", params={"limit": limit})
    assert response.status_code == 200, response.text
    return response.json()["events"]


def test_audit_records_key_and_webhook_administration_and_deletes_newest_first(
    t1: httpx.Client, t2: httpx.Client
) -> None:
    key = t1.post("/v1/keys", json={"name": "audited", "scopes": ["search"]}).json()
    rotated = t1.post(f"/v1/keys/{key['id']}/rotate", json={"grace_period_hours": 0}).json()
    t1.delete(f"/v1/keys/{rotated['id']}")
    hook = t1.post("/v1/webhooks", json=HOOK).json()
    t1.patch(f"/v1/webhooks/{hook['id']}", json={"description": "changed"})
    t1.post(f"/v1/webhooks/{hook['id']}/rotate-secret", json={"grace_period_hours": 0})
    t1.delete(f"/v1/webhooks/{hook['id']}")
    document = t1.post("/v1/kb/documents", json={"text": "to be deleted", "metadata": {"batch": "a"}}).json()
    document_id = document["data"]["document_id"]
    deleted = t1.delete(f"/v1/kb/documents/{document_id}")
    assert deleted.status_code in (200, 202), deleted.text
    by_filter = t1.post("/v1/kb/delete", json={"filters": {"metadata.batch": "nothing-matches"}})
    assert by_filter.status_code == 200, by_filter.text
    refused = t1.post("/v1/kb/delete", json={"filters": {}})  # refused deletes are recorded with their outcome
    assert refused.status_code == 400
    t1.get("/v1/keys")  # reads are not audited

    events = audit(t1)
    assert [e["action"] for e in events[:10]] == [
        "delete_by_filter",
        "delete_by_filter",
        "delete_document",
        "delete_webhook",
        "rotate_secret",
        "update_webhook",
        "create_webhook",
        "revoke_key",
        "rotate_key",
        "create_key",
    ]
    assert [e["outcome"] for e in events[:10]] == [400, 200, deleted.status_code, 204, 200, 200, 201, 204, 200, 201]
    first = {e["action"]: e for e in reversed(events[:10])}
    assert first["create_key"]["target"] == key["id"]
    assert first["rotate_key"]["target"] == f"{key['id']} -> {rotated['id']}"
    assert first["revoke_key"]["target"] == rotated["id"]
    assert first["create_webhook"]["target"] == hook["id"]
    assert first["delete_document"]["target"] == document_id
    assert json.loads(events[1]["target"]) == {
        "deleted_documents": 0,
        "filters": {"metadata.batch": "nothing-matches", "tenant_id": "t1"},
    }
    t1_key_id = t1.get("/v1/keys").json()["keys"][0]["id"]  # the CLI's key, the first made
    for event in events[:10]:
        assert event["key_id"] == t1_key_id and event["ip"] == "127.0.0.1"
        assert set(event) == {"id", "at", "key_id", "action", "method", "path", "target", "ip", "outcome"}
    assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)
    # The other tenant sees none of it.
    assert all(e["key_id"] != t1_key_id for e in audit(t2))


def test_audit_pages_and_cannot_be_changed_through_the_api(t1: httpx.Client) -> None:
    for n in range(3):
        t1.post("/v1/keys", json={"name": f"for paging {n}", "scopes": ["search"]})
    whole = audit(t1)
    seen, cursor = [], None
    while True:
        page = t1.get("/v1/audit", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["id"] for e in seen] == [e["id"] for e in whole]
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        response = t1.request(method, "/v1/audit", json={"events": []})
        assert response.status_code == 405, (method, response.text)
        assert response.json()["code"] == 405
        by_id = t1.request(method, f"/v1/audit/{whole[0]['id']}", json={})
        assert by_id.status_code in (404, 405), (method, by_id.text)
    assert audit(t1) == whole
    assert t1.get("/v1/audit", params={"limit": 0}).status_code == 422
    assert t1.get("/v1/audit", params={"limit": 101}).status_code == 422


def test_cli_lists_rotates_revokes_and_shows_usage(server: Server, t1: httpx.Client) -> None:
    data_dir = str(server.data_dir)
    made = t1.post("/v1/keys", json={"name": "cli", "scopes": ["search"]}).json()
    with client_of(t1, made["key"]) as cli_key:
        assert cli_key.post("/v1/kb/search", json={"query": "x"}).status_code == 200
    listed = json.loads(ragline("keys", "list", "--tenant", "t1", "--json", "--data-dir", data_dir))
    assert made["id"] in {k["id"] for k in listed} and all("key_hash" not in k for k in listed)
    assert made["key"] not in json.dumps(listed)
    time.sleep(1.5)  # the server writes its counts every second (RAGLINE_USAGE_FLUSH_SECONDS)
    usage = json.loads(ragline("keys", "usage", made["id"], "--json", "--data-dir", data_dir))
    assert usage["requests"] == 1 and usage["by_route"] == {"POST /v1/kb/search": 1}
    secret = ragline("keys", "rotate", made["id"], "--grace-period-hours", "0", "--data-dir", data_dir).strip()
    assert secret.startswith("rl_") and "\n" not in secret
    with client_of(t1, made["key"]) as old, client_of(t1, secret) as new:
        assert old.post("/v1/kb/search", json={"query": "x"}).status_code == 401
        assert new.post("/v1/kb/search", json={"query": "x"}).status_code == 200
        new_id = t1.get(f"/v1/keys/{made['id']}").json()["replaced_by"]
        ragline("keys", "revoke", new_id, "--data-dir", data_dir)
        assert new.post("/v1/kb/search", json={"query": "x"}).status_code == 401
