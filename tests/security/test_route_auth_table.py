"""Every route of the served OpenAPI, tried with every kind of bad credential, against a real server.

The table below names each route's scope (or that it is open, or authorized by an upload token). A route
the server serves without an entry here fails the test: whoever adds a route decides, here, who may call it.
Each case has its exact status and error body:

- no key, an unknown key, a revoked key, an expired key, a rotated key after its grace: 401;
- a key of the tenant without the route's scope (nor admin): 403;
- the other tenant's ids in the path: 404, as for ids that do not exist; the other tenant named in
  ``filters.tenant_id``: 403.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from ragline.adapters.local.sqlite_store import SqliteMetadataStore
from ragline.keys import KeyService, create_key
from ragline.models import ALL_SCOPES, Scope
from tests.support import Server


@dataclass(frozen=True)
class Route:
    scope: Scope | None  # None: open (health) or authorized otherwise (token)
    body: dict[str, Any] | None = None
    token: bool = False  # authorized by the upload token in its URL, not by a key
    # Where the other tenant can be named besides the path: the body's filters.
    tenant_in_body: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # A second scope that also grants it (either one will do): the 403 case uses a key with neither.
    or_scope: Scope | None = None


TEXT = {"text": "Refunds are accepted within 30 days.", "title": "policy"}
QUERY = {"query": "refunds", "filters": {"tenant_id": "t2"}}
ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/health"): Route(None),
    ("GET", "/health/detailed"): Route(Scope.ADMIN),
    ("POST", "/v1/kb/uploads"): Route(Scope.INGEST, {"filename": "a.txt"}),
    ("PUT", "/v1/kb/uploads/{document_id}"): Route(None, token=True),
    ("POST", "/v1/kb/documents"): Route(Scope.INGEST, TEXT),
    ("GET", "/v1/kb/documents"): Route(Scope.INGEST),
    ("GET", "/v1/kb/documents/{document_id}"): Route(Scope.INGEST),
    ("DELETE", "/v1/kb/documents/{document_id}"): Route(Scope.INGEST),
    ("POST", "/v1/kb/delete"): Route(Scope.INGEST, {"filters": {"tenant_id": "t2"}}, tenant_in_body=True),
    ("GET", "/v1/kb/jobs/{job_id}"): Route(Scope.INGEST),
    ("POST", "/v1/kb/search"): Route(Scope.SEARCH, QUERY, tenant_in_body=True),
    ("POST", "/v1/kb/chat"): Route(Scope.CHAT, QUERY, tenant_in_body=True),
    ("POST", "/v1/kb/chat/stream"): Route(Scope.CHAT, QUERY, tenant_in_body=True),
    ("POST", "/v1/webhooks"): Route(Scope.ADMIN, {"url": "http://127.0.0.1:9/hook", "events": ["*"]}),
    ("GET", "/v1/webhooks"): Route(Scope.ADMIN),
    ("GET", "/v1/webhooks/{webhook_id}"): Route(Scope.ADMIN),
    ("PATCH", "/v1/webhooks/{webhook_id}"): Route(Scope.ADMIN, {"description": "x"}),
    ("DELETE", "/v1/webhooks/{webhook_id}"): Route(Scope.ADMIN),
    ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"): Route(Scope.ADMIN, {"grace_period_hours": 1}),
    ("POST", "/v1/webhooks/{webhook_id}/test"): Route(Scope.ADMIN),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): Route(Scope.ADMIN),
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): Route(Scope.ADMIN),
    ("POST", "/v1/keys"): Route(Scope.ADMIN, {"name": "x", "scopes": ["search"]}),
    ("GET", "/v1/keys"): Route(Scope.ADMIN),
    ("GET", "/v1/keys/{key_id}"): Route(Scope.ADMIN),
    ("DELETE", "/v1/keys/{key_id}"): Route(Scope.ADMIN),
    ("POST", "/v1/keys/{key_id}/rotate"): Route(Scope.ADMIN, {"grace_period_hours": 1}),
    ("GET", "/v1/keys/{key_id}/usage"): Route(Scope.ADMIN),
    ("GET", "/v1/audit"): Route(Scope.ADMIN),
    ("GET", "/v1/queries/history"): Route(Scope.CHAT),
    ("GET", "/v1/queries/{query_id}"): Route(Scope.CHAT),
    ("DELETE", "/v1/queries/{query_id}"): Route(Scope.CHAT),
    ("PATCH", "/v1/queries/{query_id}/rating"): Route(Scope.CHAT, {"rating": 3}),
    ("GET", "/v1/analytics/popular"): Route(Scope.CHAT),
    ("GET", "/v1/analytics/usage"): Route(Scope.CHAT),
    ("GET", "/v1/documents/{document_id}/stats"): Route(Scope.INGEST),
    ("GET", "/v1/kb/documents/{document_id}/stats"): Route(Scope.INGEST),
    ("POST", "/v1/knowledge-bases"): Route(Scope.INGEST, {"name": "Manuals"}),
    ("GET", "/v1/knowledge-bases"): Route(Scope.SEARCH, or_scope=Scope.INGEST),
    ("GET", "/v1/knowledge-bases/{kb_id}"): Route(Scope.SEARCH, or_scope=Scope.INGEST),
    ("PATCH", "/v1/knowledge-bases/{kb_id}"): Route(Scope.INGEST, {"description": "x"}),
    ("DELETE", "/v1/knowledge-bases/{kb_id}"): Route(Scope.INGEST),
    ("GET", "/v1/knowledge-bases/{kb_id}/documents"): Route(Scope.INGEST),
}

UNAUTHORIZED = {
    "none": {"error": "Missing API key", "message": "send your API key in the x-api-key header", "code": 401},
    "unknown": {"error": "Invalid API key", "message": "the API key is not valid", "code": 401},
    "revoked": {"error": "Invalid API key", "message": "the API key has been revoked", "code": 401},
    "expired": {"error": "Invalid API key", "message": "the API key has expired", "code": 401},
    "rotated": {
        "error": "Invalid API key",
        "message": "the API key was rotated and its grace period has ended: use its replacement",
        "code": 401,
    },
}


@dataclass
class World:
    server: Server
    keys: dict[str, str]
    t2_ids: dict[str, str]  # path parameter -> an id of tenant t2's

    def call(self, method: str, path: str, key: str | None, body: dict[str, Any] | None) -> httpx.Response:
        headers = {"x-api-key": key} if key is not None else {}
        return httpx.request(method, self.server.url + path, headers=headers, json=body, timeout=60)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("route-table")
    store = SqliteMetadataStore(data_dir / "metadata.db")
    keys: dict[str, str] = {}
    keys["t1"], _ = create_key(store, "t1")
    keys["t2"], _ = create_key(store, "t2")
    for scope in Scope:  # each lacks one scope (and admin, which would stand in for it)
        keys[f"without_{scope.value}"], _ = create_key(store, "t1", ALL_SCOPES - {scope, Scope.ADMIN})
    keys["only_chat"], _ = create_key(store, "t1", frozenset({Scope.CHAT}))
    keys["revoked"], revoked = create_key(store, "t1")
    store.revoke_key(revoked.id, "2026-01-01T00:00:00.000Z")
    keys["expired"], expired = create_key(store, "t1")
    keys["rotated"], rotated = create_key(store, "t1")
    KeyService(store, lambda ids: {}).rotate("t1", rotated.id, 0)
    with store._write() as db:  # noqa: SLF001 - an expiry in the past, as time would make it
        db.execute("UPDATE api_keys SET expires_at = '2026-01-01T00:00:00.000Z' WHERE id = ?", (expired.id,))
    keys["unknown"] = "rl_this-key-was-never-issued"
    server = Server(data_dir, env={"RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true"}).start()
    try:
        t2 = httpx.Client(base_url=server.url, headers={"x-api-key": keys["t2"]}, timeout=60)
        accepted = t2.post("/v1/kb/documents", json=TEXT).json()["data"]
        webhook = t2.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["*"]}).json()
        delivery = t2.post(f"/v1/webhooks/{webhook['id']}/test").json()
        t2_key = t2.post("/v1/keys", json={"name": "t2's", "scopes": ["search"]}).json()
        t2_query = t2.post("/v1/kb/chat", json={"query": "refunds"}).json()
        t2_kb = t2.post("/v1/knowledge-bases", json={"name": "t2's manuals"}).json()
        t2.close()
        ids = {
            "document_id": accepted["document_id"],
            "job_id": accepted["job_id"],
            "webhook_id": webhook["id"],
            "delivery_id": delivery["delivery_id"],
            "key_id": t2_key["id"],
            "query_id": t2_query["query_id"],
            "kb_id": t2_kb["id"],
        }
        yield World(server, keys, ids)
    finally:
        server.stop()


def _path(template: str, ids: dict[str, str]) -> str:
    return template.format(**ids)


def test_every_served_route_has_an_entry(world: World) -> None:
    openapi = httpx.get(world.server.url + "/openapi.json", timeout=30).json()
    served = {(method.upper(), path) for path, operations in openapi["paths"].items() for method in operations}
    assert served - set(ROUTES) == set(), "routes without an entry: say who may call them"
    assert set(ROUTES) - served == set(), "entries for routes the server does not serve"


@pytest.mark.parametrize("case", sorted(UNAUTHORIZED))
@pytest.mark.parametrize(("method", "template"), sorted(ROUTES))
def test_bad_credentials_are_401_with_the_reason(world: World, method: str, template: str, case: str) -> None:
    route = ROUTES[(method, template)]
    path = _path(template, world.t2_ids)
    key = None if case == "none" else world.keys[case]
    if route.token:  # the URL's token authorizes it, whatever key comes along: a bad token is a 403
        response = world.call(method, path + "?token=not-a-token", key, None)
        assert response.status_code == 403, response.text
        assert response.json()["code"] == 403 and set(response.json()) == {"error", "message", "code"}
        return
    response = world.call(method, path, key, route.body)
    if route.scope is None:
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 401, response.text
    assert response.json() == UNAUTHORIZED[case]


@pytest.mark.parametrize(("method", "template"), sorted(k for k, r in ROUTES.items() if r.scope is not None))
def test_a_key_without_the_scope_is_403(world: World, method: str, template: str) -> None:
    route = ROUTES[(method, template)]
    assert route.scope is not None
    key = world.keys["only_chat" if route.or_scope else f"without_{route.scope.value}"]
    response = world.call(method, _path(template, world.t2_ids), key, route.body)
    assert response.status_code == 403, response.text
    lacks = f"{route.scope.value!r}" + (f" or {route.or_scope.value!r}" if route.or_scope else "")
    assert response.json() == {
        "error": "Insufficient scope",
        "message": f"this API key lacks the {lacks} scope",
        "code": 403,
    }


CROSS_TENANT = sorted(k for k, r in ROUTES.items() if r.scope is not None and ("{" in k[1] or r.tenant_in_body))


@pytest.mark.parametrize(("method", "template"), CROSS_TENANT)
def test_another_tenants_ids_are_404_and_naming_it_is_403(world: World, method: str, template: str) -> None:
    route = ROUTES[(method, template)]
    response = world.call(method, _path(template, world.t2_ids), world.keys["t1"], route.body)
    expected = 404 if "{" in template else 403
    assert response.status_code == expected, response.text
    body = response.json()
    assert set(body) == {"error", "message", "code"} and body["code"] == expected
    assert "t2" not in body["message"] or expected == 403  # nothing of the other tenant's leaks into a 404


def test_the_other_tenants_things_are_untouched(world: World) -> None:
    """After every attempt above (deletes, rotations, revocations): t2's things are all still there."""
    t2 = httpx.Client(base_url=world.server.url, headers={"x-api-key": world.keys["t2"]}, timeout=60)
    ids = world.t2_ids
    deadline = time.monotonic() + 30
    while t2.get(f"/v1/kb/documents/{ids['document_id']}").json().get("status") not in ("indexed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert t2.get(f"/v1/kb/documents/{ids['document_id']}").status_code == 200
    assert t2.get(f"/v1/webhooks/{ids['webhook_id']}").status_code == 200
    key = t2.get(f"/v1/keys/{ids['key_id']}").json()
    assert key["revoked_at"] is None and key["replaced_by"] is None
    assert t2.get(f"/v1/knowledge-bases/{ids['kb_id']}").json()["status"] == "active"
    t2.close()
