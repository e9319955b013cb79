"""Webhooks through a real `ragline serve`, delivering to real receivers on 127.0.0.1.

The server allows private targets (as the README shows for local development), retries quickly
(0, 0.5, 0.5, 0.5 s), times an attempt out after 1 s and disables an endpoint after 2 failed events.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support import Server, free_port, ragline, wait_for_status
from tests.webhook_receivers import Receiver, always, fail_then_ok, hang, ok, redirect

TENANTS = ("w1", "w2", "w3", "w4")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("webhooks-server")
    keys = {t: ragline("keys", "create", "--tenant", t, "--data-dir", str(data_dir)).strip() for t in TENANTS}
    keys["w1_search"] = ragline(
        "keys", "create", "--tenant", "w1", "--scopes", "search", "--data-dir", str(data_dir)
    ).strip()
    server = Server(
        data_dir,
        env={
            "RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
            "RAGLINE_WEBHOOK_RETRY_SECONDS": "0,0.5,0.5,0.5",
            "RAGLINE_WEBHOOK_TIMEOUT_SECONDS": "1",
            "RAGLINE_WEBHOOK_DISABLE_AFTER_FAILED_EVENTS": "2",
        },
    ).start()
    server.keys = keys
    yield server
    server.stop()


def _client(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": server.keys[key]}, timeout=30)


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.close()


@pytest.fixture
def w1(server: Server) -> Iterator[httpx.Client]:
    """Tenant w1's admin client; its endpoints are deleted after each test."""
    with _client(server, "w1") as client:
        yield client
        for endpoint in client.get("/v1/webhooks").json()["webhooks"]:
            client.delete(f"/v1/webhooks/{endpoint['id']}")


def _register(client: httpx.Client, url: str, events: list[str] | None = None) -> tuple[str, str]:
    answer = client.post("/v1/webhooks", json={"url": url, "events": events or ["*"]})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], answer.json()["secret"]


def _deliveries(client: httpx.Client, webhook_id: str, **params: str) -> list[dict]:
    answer = client.get(f"/v1/webhooks/{webhook_id}/deliveries", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["deliveries"]


def _wait_settled(client: httpx.Client, webhook_id: str, count: int, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deliveries = _deliveries(client, webhook_id)
        if len(deliveries) >= count and all(d["status"] != "pending" for d in deliveries):
            return deliveries
        time.sleep(0.1)
    raise AssertionError(f"deliveries not settled: {_deliveries(client, webhook_id)}")


# ---- the endpoints API ---------------------------------------------------------------------------
def test_register_list_get_update_delete(w1: httpx.Client) -> None:
    created = w1.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["document.indexed"], "description": "crm"},
    )
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["active"] is True and body["events"] == ["document.indexed"]
    webhook_id = body["id"]

    listed = w1.get("/v1/webhooks").json()["webhooks"]
    assert [w["id"] for w in listed] == [webhook_id] and "secret" not in listed[0]
    got = w1.get(f"/v1/webhooks/{webhook_id}").json()
    assert got == listed[0] and "secret" not in got

    patched = w1.patch(f"/v1/webhooks/{webhook_id}", json={"events": ["*"], "active": False})
    assert patched.status_code == 200 and patched.json()["events"] == ["*"] and patched.json()["active"] is False
    assert w1.get(f"/v1/webhooks/{webhook_id}").json() == patched.json()

    assert w1.delete(f"/v1/webhooks/{webhook_id}").status_code == 204
    missing = w1.get(f"/v1/webhooks/{webhook_id}")
    assert missing.status_code == 404 and missing.json()["code"] == 404


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1:9/", "events": ["document.exploded"]},
        {"url": "http://127.0.0.1:9/", "events": []},
        {"url": "http://127.0.0.1:9/"},
        {"events": ["*"]},
        {"url": "http://127.0.0.1:9/", "events": ["*"], "active": "maybe"},
    ],
)
def test_bad_registrations_are_422_with_the_error_body(w1: httpx.Client, body: dict) -> None:
    answer = w1.post("/v1/webhooks", json=body)
    assert answer.status_code == 422
    assert set(answer.json()) >= {"error", "message", "code"}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("gopher://127.0.0.1/", "https or http"),
        ("http://user:pw@127.0.0.1/", "password"),
        ("http://no-such-host.invalid/", "resolve"),
    ],
)
def test_refused_urls_are_400_with_the_reason_even_when_private_targets_are_allowed(
    w1: httpx.Client, url: str, reason: str
) -> None:
    answer = w1.post("/v1/webhooks", json={"url": url, "events": ["*"]})
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["message"]


def test_private_targets_are_refused_by_default(api) -> None:
    """The shared API server runs with the defaults: https to public addresses only."""
    with httpx.Client(base_url=api.url, headers={"x-api-key": api.keys["t1"]}, timeout=30) as client:
        for url, reason in (
            ("http://example.com/hook", "https"),
            ("https://127.0.0.1/hook", "loopback"),
            ("https://10.1.2.3/hook", "private"),
            ("https://[::ffff:192.168.0.1]/hook", "private"),
            ("https://100.64.0.1/hook", "shared"),
        ):
            answer = client.post("/v1/webhooks", json={"url": url, "events": ["*"]})
            assert answer.status_code == 400, (url, answer.text)
            assert reason in answer.json()["message"].lower(), (url, answer.json())


def test_another_tenants_endpoint_is_404_on_every_route(server: Server, w1: httpx.Client) -> None:
    webhook_id, _ = _register(w1, "http://127.0.0.1:9/hook")
    test = w1.post(f"/v1/webhooks/{webhook_id}/test").json()
    with _client(server, "w2") as w2:
        for method, path, body in (
            ("GET", f"/v1/webhooks/{webhook_id}", None),
            ("PATCH", f"/v1/webhooks/{webhook_id}", {"active": False}),
            ("DELETE", f"/v1/webhooks/{webhook_id}", None),
            ("POST", f"/v1/webhooks/{webhook_id}/rotate-secret", {"grace_period_hours": 1}),
            ("POST", f"/v1/webhooks/{webhook_id}/test", None),
            ("GET", f"/v1/webhooks/{webhook_id}/deliveries", None),
            ("POST", f"/v1/webhooks/{webhook_id}/deliveries/{test['delivery_id']}/redeliver", None),
        ):
            answer = w2.request(method, path, json=body)
            assert answer.status_code == 404, (method, path, answer.text)
        assert w2.get("/v1/webhooks").json() == {"webhooks": []}
    assert w1.get(f"/v1/webhooks/{webhook_id}").json()["active"] is True


def test_webhooks_need_the_admin_scope(server: Server) -> None:
    with _client(server, "w1_search") as reader:
        assert reader.get("/v1/webhooks").status_code == 403
        assert reader.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["*"]}).status_code == 403
    assert httpx.get(f"{server.url}/v1/webhooks").status_code == 401


# ---- deliveries to real receivers ----------------------------------------------------------------
def test_document_events_arrive_signed_and_thin(w1: httpx.Client, receivers: list[Receiver]) -> None:
    receiver = Receiver(ok())
    receivers.append(receiver)
    _, secret = _register(w1, receiver.url, ["document.uploaded", "document.indexed"])
    text = "Webhooks tell integrations when documents are ready. " * 20
    accepted = w1.post("/v1/kb/documents", json={"text": text, "title": "hooks"}).json()["data"]
    wait_for_status(w1, accepted["document_id"])
    indexed = receiver.wait_for_type("document.indexed")

    payloads = receiver.verified(secret)  # raises unless every request verifies with standardwebhooks
    types = [p["type"] for p in payloads]
    assert "document.uploaded" in types and "document.indexed" in types
    for received, payload in zip(receiver.received, payloads, strict=True):
        assert received.webhook_id == payload["id"]
        assert payload["tenant_id"] == "w1" and set(payload) == {"id", "type", "timestamp", "tenant_id", "data"}
        assert received.headers["content-type"] == "application/json"
        assert "Webhooks tell" not in received.body.decode()  # never document text
    assert indexed.json["data"]["document_id"] == accepted["document_id"]


def test_failing_three_times_then_succeeding_keeps_one_webhook_id(w1: httpx.Client, receivers) -> None:
    receiver = Receiver(fail_then_ok(3))
    receivers.append(receiver)
    webhook_id, secret = _register(w1, receiver.url, ["document.deleted"])
    sent = w1.post(f"/v1/webhooks/{webhook_id}/test")
    assert sent.status_code == 202 and set(sent.json()) == {"event_id", "delivery_id"}
    (delivery,) = _wait_settled(w1, webhook_id, 1)

    assert delivery["status"] == "succeeded" and delivery["id"] == sent.json()["delivery_id"]
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 500, 200]
    assert delivery["attempts"][0]["response_body"] == "not yet"
    assert {r.webhook_id for r in receiver.received} == {sent.json()["event_id"]}
    assert len(receiver.verified(secret)) == 4


def test_a_hanging_endpoint_times_out_and_never_delays_another(w1: httpx.Client, receivers) -> None:
    stuck, healthy = Receiver(hang()), Receiver(ok())
    receivers.extend([stuck, healthy])
    stuck_id, _ = _register(w1, stuck.url)
    _register(w1, healthy.url)
    started = time.time()
    for n in range(3):
        w1.post("/v1/kb/documents", json={"text": f"note number {n} about hanging receivers", "title": f"n{n}"})
    healthy.wait_for(3, timeout=10)
    assert max(r.at for r in healthy.received[:3]) - started < 3.0  # not behind the 1 s timeouts in a queue

    deliveries = _wait_settled(w1, stuck_id, 3, timeout=30)
    attempts = [a for d in deliveries for a in d["attempts"]]
    timeouts = [a for a in attempts if a["error"] == "timeout"]
    assert len(timeouts) >= 4 and all(a["latency_ms"] < 2500 for a in timeouts)
    # Two events' attempts all timed out: the endpoint was disabled, and the rest were not sent.
    assert all(a["error"] == "timeout" or a["error"].startswith("not sent") for a in attempts)
    assert all(d["status"] == "failed" for d in deliveries)
    assert w1.get(f"/v1/webhooks/{stuck_id}").json()["disabled_reason"] == "2 consecutive events failed"


def test_410_disables_at_once_and_the_other_endpoints_hear_of_it(w1: httpx.Client, receivers) -> None:
    gone, watcher = Receiver(always(410)), Receiver(ok())
    receivers.extend([gone, watcher])
    gone_id, _ = _register(w1, gone.url, ["document.uploaded"])
    _, watcher_secret = _register(w1, watcher.url, ["webhook.disabled"])
    w1.post("/v1/kb/documents", json={"text": "a document whose event meets a 410", "title": "gone"})

    disabled = watcher.wait_for_type("webhook.disabled").json
    assert disabled["data"] == {"webhook_id": gone_id, "url": gone.url, "reason": "410 Gone"}
    assert watcher.verified(watcher_secret)
    endpoint = w1.get(f"/v1/webhooks/{gone_id}").json()
    assert endpoint["active"] is False and endpoint["disabled_reason"] == "410 Gone"
    assert len(gone.received) == 1  # no retries after a 410


def test_redirects_are_not_followed(w1: httpx.Client, receivers) -> None:
    target = Receiver(ok())
    bouncer = Receiver(redirect(target.url))
    receivers.extend([target, bouncer])
    webhook_id, _ = _register(w1, bouncer.url)
    w1.post(f"/v1/webhooks/{webhook_id}/test")
    (delivery,) = _wait_settled(w1, webhook_id, 1)
    assert delivery["status"] == "failed" and {a["status_code"] for a in delivery["attempts"]} == {302}
    assert target.received == []


def test_a_down_endpoint_is_logged_as_connection_refused_and_can_be_redelivered(w1: httpx.Client, receivers) -> None:
    port = free_port()
    webhook_id, secret = _register(w1, f"http://127.0.0.1:{port}/hook")
    sent = w1.post(f"/v1/webhooks/{webhook_id}/test").json()
    (delivery,) = _wait_settled(w1, webhook_id, 1)
    assert delivery["status"] == "failed" and len(delivery["attempts"]) == 4
    assert all("refused" in a["error"] for a in delivery["attempts"])
    assert delivery["next_attempt_at"] is None

    # The endpoint comes up: a redelivery carries the same webhook-id, freshly signed.
    receiver = Receiver(ok())
    receivers.append(receiver)
    w1.patch(f"/v1/webhooks/{webhook_id}", json={"url": receiver.url})
    again = w1.post(f"/v1/webhooks/{webhook_id}/deliveries/{delivery['id']}/redeliver")
    assert again.status_code == 202 and again.json()["status"] == "pending"
    (received,) = receiver.wait_for(1)
    assert received.webhook_id == sent["event_id"] and receiver.verified(secret)
    (delivery,) = _wait_settled(w1, webhook_id, 1)
    assert delivery["status"] == "succeeded" and len(delivery["attempts"]) == 5
    assert w1.post(f"/v1/webhooks/{webhook_id}/deliveries/dlv_nope/redeliver").status_code == 404


def test_rotation_signs_with_both_secrets_during_the_grace_period(w1: httpx.Client, receivers) -> None:
    receiver = Receiver(ok())
    receivers.append(receiver)
    webhook_id, old = _register(w1, receiver.url)
    rotated = w1.post(f"/v1/webhooks/{webhook_id}/rotate-secret", json={"grace_period_hours": 2})
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    w1.post(f"/v1/webhooks/{webhook_id}/test")
    (received,) = receiver.wait_for(1)
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    assert receiver.verified(old) and receiver.verified(new)
    assert w1.post(f"/v1/webhooks/{webhook_id}/rotate-secret", json={"grace_period_hours": 1000}).status_code == 422


def test_the_delivery_log_pages_newest_first_and_filters_by_status(w1: httpx.Client, receivers) -> None:
    receiver = Receiver(ok())
    receivers.append(receiver)
    webhook_id, _ = _register(w1, receiver.url)
    sent = [w1.post(f"/v1/webhooks/{webhook_id}/test").json()["delivery_id"] for _ in range(5)]
    _wait_settled(w1, webhook_id, 5)
    first = w1.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": 2}).json()
    assert [d["id"] for d in first["deliveries"]] == sent[::-1][:2] and first["next_cursor"]
    rest = w1.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": 10, "cursor": first["next_cursor"]}).json()
    assert [d["id"] for d in rest["deliveries"]] == sent[::-1][2:] and rest["next_cursor"] is None
    assert _deliveries(w1, webhook_id, status="failed") == []
    assert len(_deliveries(w1, webhook_id, status="succeeded")) == 5
    assert w1.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"status": "lost"}).status_code == 422
    assert w1.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": 0}).status_code == 422


def test_consecutive_failed_events_disable_the_endpoint(server: Server, receivers) -> None:
    with _client(server, "w4") as w4:
        webhook_id, _ = _register(w4, f"http://127.0.0.1:{free_port()}/hook", ["document.uploaded"])
        for n in range(2):
            w4.post("/v1/kb/documents", json={"text": f"failing event number {n}", "title": f"f{n}"})
        deadline = time.monotonic() + 20
        while w4.get(f"/v1/webhooks/{webhook_id}").json()["active"] and time.monotonic() < deadline:
            time.sleep(0.1)
        endpoint = w4.get(f"/v1/webhooks/{webhook_id}").json()
        assert endpoint["active"] is False and endpoint["disabled_reason"] == "2 consecutive events failed"
        # Turned back on, it starts a new run.
        again = w4.patch(f"/v1/webhooks/{webhook_id}", json={"active": True}).json()
        assert again["active"] is True and again["disabled_reason"] is None
