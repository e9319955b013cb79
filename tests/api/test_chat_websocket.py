"""GET /v1/kb/chat/ws against a real `ragline serve`, with a real WebSocket client (`websockets`' sync client) and
"Claude" a fake of the Messages API on 127.0.0.1 that notices the moment ragline closes its connection to it.

The server runs with one chat slot per tenant and no queue (RAGLINE_TENANT_MAX_CONCURRENT=1, _MAX_QUEUED=0), so
the tests can see the WebSocket and the HTTP routes share a tenant's slots; every test lets its answers end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from ragline.adapters.local.sqlite_store import SqliteMetadataStore
from ragline.keys import hash_key
from ragline.models import ALL_SCOPES, ApiKey
from ragline_emulator.anthropic_server import FakeAnthropic, StreamRecord
from tests.support import Server, ragline, wait_for_status
from tests.webhook_receivers import Receiver, ok

AUTH_TIMEOUT = 1.0  # RAGLINE_WS_AUTH_TIMEOUT_SECONDS for this server (5 s by default)
ANSWER = "Invoices are due within 30 days [1]; API keys are rotated every 90 days [2]."
SLOW_ANSWER = " ".join(f"token{n}" for n in range(300))  # 30 s at 0.1 s a token, unless somebody stops it
DELTA_INTERVAL = 0.1
CLOSE_WITHIN = 1.0  # seconds from a cancel or a disconnect to ragline closing its stream to the model
T1_DOCUMENTS = [
    ("Billing handbook", "Invoices are due within 30 days of the invoice date. Late payments accrue 2% a month."),
    ("Security policy", "API keys must be rotated every 90 days. Production access requires two-factor auth."),
]
T2_DOCUMENTS = [("Kitchen notes", "Sourdough needs a starter fed daily and a long cold proof overnight.")]
T3_DOCUMENTS = [("Travel policy", "Economy class for flights under six hours; receipts within 30 days.")]


@dataclass
class Served:
    server: Server
    keys: dict[str, str]
    documents: dict[str, set[str]] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return self.server.url.replace("http://", "ws://") + "/v1/kb/chat/ws"

    def http(self, tenant: str = "t1") -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url, headers={"x-api-key": self.keys[tenant]}, timeout=30, trust_env=False
        )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(scope="module")
def served(fake: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("chat-websocket")
    env = {
        "ANTHROPIC_API_KEY": fake.api_key,
        "ANTHROPIC_BASE_URL": fake.url,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "RAGLINE_WS_AUTH_TIMEOUT_SECONDS": str(AUTH_TIMEOUT),
        # Every question reaches the model, whatever its evidence: a weakly covered one would abstain otherwise.
        "RAGLINE_CHAT_ANSWER_FLOOR": "0",
        "RAGLINE_TENANT_MAX_CONCURRENT": "1",
        "RAGLINE_TENANT_MAX_QUEUED": "0",
        "RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
    }
    keys = {
        tenant: ragline("keys", "create", "--tenant", tenant, "--data-dir", str(data_dir), env=env).strip()
        for tenant in ("t1", "t2", "t3")
    }
    keys["t1_search"] = ragline(
        "keys", "create", "--tenant", "t1", "--scopes", "search", "--data-dir", str(data_dir), env=env
    ).strip()
    store = SqliteMetadataStore(data_dir / "metadata.db")
    now = datetime.now(UTC)
    for name, fields in {
        "expired": {"expires_at": (now - timedelta(days=1)).isoformat()},
        "revoked": {"revoked_at": now.isoformat()},
    }.items():
        keys[name] = f"rl_{name}-websocket-key"
        store.create_key(
            ApiKey(
                id=f"key_ws_{name}",
                tenant_id="t1",
                key_hash=hash_key(keys[name]),
                prefix=f"rl_{name[:3]}",
                scopes=ALL_SCOPES,
                **fields,
            )
        )
    server = Server(data_dir, env=env).start()
    served = Served(server, keys)
    try:
        for tenant, documents in (("t1", T1_DOCUMENTS), ("t2", T2_DOCUMENTS), ("t3", T3_DOCUMENTS)):
            with served.http(tenant) as client:
                ids = set()
                for title, text in documents:
                    accepted = client.post("/v1/kb/documents", json={"title": title, "text": text})
                    assert accepted.status_code == 202, accepted.text
                    ids.add(accepted.json()["data"]["document_id"])
                for document_id in ids:
                    wait_for_status(client, document_id, ("indexed",))
                served.documents[tenant] = ids
        yield served
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def scripted(fake: FakeAnthropic) -> FakeAnthropic:
    fake.script(answer=ANSWER, input_tokens=812, output_tokens=27)
    return fake


def open_socket(served: Served, key: str | None = None) -> ClientConnection:
    headers = {"x-api-key": key} if key is not None else None
    return connect(served.ws_url, additional_headers=headers, proxy=None, open_timeout=10, close_timeout=5)


def receive(ws: ClientConnection, timeout: float = 30.0) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def send(ws: ClientConnection, message: dict[str, Any] | str) -> None:
    ws.send(message if isinstance(message, str) else json.dumps(message))


def answer(ws: ClientConnection, query: str, **body: Any) -> list[dict[str, Any]]:
    """Ask; every message up to and including the done or error that ends the answer."""
    send(ws, {"type": "query", "query": query, **body})
    messages = [receive(ws)]
    while messages[-1]["type"] not in ("done", "error"):
        messages.append(receive(ws))
    return messages


def closed_with(ws: ClientConnection, timeout: float = 10.0) -> tuple[int | None, list[dict[str, Any]]]:
    """The messages until the server closes the connection, and its close code."""
    messages = []
    try:
        while True:
            messages.append(receive(ws, timeout))
    except ConnectionClosed:
        pass
    return ws.close_code, messages


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.02)


def stream_of(fake: FakeAnthropic, question: str) -> StreamRecord:
    (record,) = [r for r in fake.streams if question in r.request.user_text]
    return record


def until_first_token(ws: ClientConnection, question: str) -> list[dict[str, Any]]:
    send(ws, {"type": "query", "query": question})
    messages = [receive(ws)]
    while messages[-1]["type"] != "token":
        messages.append(receive(ws))
    return messages


# ---- authentication -----------------------------------------------------------------------------------
def test_a_key_in_the_header_authenticates_at_the_upgrade(served: Served, scripted: FakeAnthropic) -> None:
    with open_socket(served, served.keys["t1"]) as ws:
        sources, *tokens, done = answer(ws, "When are invoices due?")
    assert sources["type"] == "sources"
    assert {s["document_id"] for s in sources["sources"]} <= served.documents["t1"]
    assert tokens and all(t["type"] == "token" for t in tokens)
    assert "".join(t["token"] for t in tokens) == ANSWER
    assert done["type"] == "done" and done["query_id"].startswith("qry_")
    assert done["usage"] == {"input_tokens": 812, "output_tokens": 27}
    # The SSE done event's other fields, as they are.
    assert {"model", "latency_ms", "confidence", "grounded", "cached", "timings", "sources_used"} <= set(done)
    assert done["grounded"] is True and done["cached"] is False
    assert scripted.last.user_text.endswith("Question: When are invoices due?")


def test_a_browser_authenticates_with_its_first_message(served: Served) -> None:
    with open_socket(served) as ws:
        send(ws, {"type": "auth", "api_key": served.keys["t1"]})
        assert receive(ws) == {"type": "authenticated"}
        *_, done = answer(ws, "How often are API keys rotated?")
    assert done["type"] == "done"


def test_no_key_within_the_auth_timeout_closes_4401(served: Served) -> None:
    with open_socket(served) as ws:
        started = time.monotonic()
        code, messages = closed_with(ws, timeout=AUTH_TIMEOUT + 5)
        waited = time.monotonic() - started
    assert code == 4401
    assert [m["code"] for m in messages] == [401] and "auth" in messages[0]["message"]
    assert AUTH_TIMEOUT * 0.8 <= waited < AUTH_TIMEOUT + 3


@pytest.mark.parametrize(
    "first",
    [
        {"type": "query", "query": "When are invoices due?"},
        {"type": "auth"},
        "not json at all",
    ],
    ids=["a query", "an auth message without a key", "not JSON"],
)
def test_a_first_message_that_does_not_authenticate_closes_4401(served: Served, first: Any) -> None:
    with open_socket(served) as ws:
        send(ws, first)
        code, messages = closed_with(ws)
    assert code == 4401
    assert [m["type"] for m in messages] == ["error"] and messages[0]["code"] == 401


@pytest.mark.parametrize("which", ["unknown", "expired", "revoked"])
@pytest.mark.parametrize("how", ["header", "message"])
def test_a_bad_key_closes_4401(served: Served, which: str, how: str) -> None:
    key = served.keys.get(which, "rl_nobody-has-this-key")
    with open_socket(served, key if how == "header" else None) as ws:
        if how == "message":
            send(ws, {"type": "auth", "api_key": key})
        code, messages = closed_with(ws)
    assert code == 4401
    (error,) = messages
    assert (error["type"], error["code"], error["error"]) == ("error", 401, "Invalid API key")


@pytest.mark.parametrize("how", ["header", "message"])
def test_a_key_without_the_chat_scope_closes_4403(served: Served, how: str) -> None:
    key = served.keys["t1_search"]
    with open_socket(served, key if how == "header" else None) as ws:
        if how == "message":
            send(ws, {"type": "auth", "api_key": key})
        code, messages = closed_with(ws)
    assert code == 4403
    assert messages[0]["code"] == 403 and "'chat'" in messages[0]["message"]


def test_a_key_revoked_mid_connection_stops_at_its_next_query(served: Served) -> None:
    with served.http("t1") as admin:
        created = admin.post("/v1/keys", json={"name": "ws-revoke", "scopes": ["chat"]})
        assert created.status_code == 201, created.text
        with open_socket(served, created.json()["key"]) as ws:
            assert answer(ws, "When are invoices due?")[-1]["type"] == "done"
            assert admin.delete(f"/v1/keys/{created.json()['id']}").status_code in (200, 204)
            send(ws, {"type": "query", "query": "When are invoices due?"})
            code, messages = closed_with(ws)
    assert code == 4401 and messages[-1]["code"] == 401


# ---- queries ------------------------------------------------------------------------------------------
def test_several_queries_on_one_connection_each_recorded_in_the_history(served: Served) -> None:
    questions = ["When are invoices due?", "How often are API keys rotated?", "What do late payments cost?"]
    with open_socket(served, served.keys["t1"]) as ws:
        answers = [answer(ws, question, history=[], limit=2) for question in questions]
    with served.http("t1") as client:
        for question, (sources, *tokens, done) in zip(questions, answers, strict=True):
            assert done["type"] == "done", done
            assert len(sources["sources"]) <= 2
            recorded = client.get(f"/v1/queries/{done['query_id']}")
            assert recorded.status_code == 200, recorded.text
            item = recorded.json()
            assert item["question"] == question
            assert item["answer"] == "".join(t["token"] for t in tokens).strip()
            assert [s["document_id"] for s in item["sources"]] == [s["document_id"] for s in sources["sources"]]


def test_the_answer_cache_serves_the_same_question_again(served: Served, scripted: FakeAnthropic) -> None:
    question = "Within how many days are invoices due, for the cache?"
    with open_socket(served, served.keys["t1"]) as ws:
        first = answer(ws, question)
        again = answer(ws, question)
    assert (first[-1]["cached"], again[-1]["cached"]) == (False, True)
    assert "".join(m.get("token", "") for m in again) == "".join(m.get("token", "") for m in first)
    assert len(scripted.requests) == 1, "the second answer came from the cache, not the model"


def test_query_completed_is_published_for_a_websocket_answer(served: Served) -> None:
    receiver = Receiver(ok())
    with served.http("t1") as admin:
        hook = admin.post("/v1/webhooks", json={"url": receiver.url, "events": ["query.completed"]})
        assert hook.status_code == 201, hook.text
        try:
            with open_socket(served, served.keys["t1"]) as ws:
                done = answer(ws, "When are invoices due? (webhook)")[-1]
            event = receiver.wait_for_type("query.completed").json
        finally:
            admin.delete(f"/v1/webhooks/{hook.json()['id']}")
    assert event["data"]["query_id"] == done["query_id"]
    assert event["data"]["usage"] == done["usage"]


def test_another_tenants_documents_are_never_in_the_sources(served: Served) -> None:
    question = "When are invoices due and how often are API keys rotated?"  # about t1's documents only
    with open_socket(served, served.keys["t2"]) as ws:
        sources, *_, done = answer(ws, question, limit=10)
        refused = answer(ws, question, filters={"tenant_id": "t1"})
    found = {s["document_id"] for s in sources["sources"]}
    assert found and found <= served.documents["t2"]
    assert not found & served.documents["t1"]
    assert done["type"] == "done"
    assert [(m["type"], m["code"]) for m in refused] == [("error", 403)]


# ---- bad messages: answered, and the connection stays open -------------------------------------------
BAD_MESSAGES = {
    "not JSON": ("{nope", 400, "Malformed JSON"),
    "not an object": ("[1, 2]", 400, "Malformed message"),
    "an unknown type": ({"type": "shout"}, 400, "Unknown message type"),
    "no type": ({"query": "x"}, 400, "Unknown message type"),
    "a query without its question": ({"type": "query"}, 422, "Validation error"),
    "a limit out of range": ({"type": "query", "query": "x", "limit": 0}, 422, "Validation error"),
    "a field the chat body does not have": ({"type": "query", "query": "x", "k": 3}, 422, "Validation error"),
    "a model not allowed": ({"type": "query", "query": "x", "model": "gpt-9"}, 422, "Validation error"),
    "a second auth": ({"type": "auth", "api_key": "rl_x"}, 400, "Bad request"),
    "more than the body limit": (json.dumps({"type": "query", "query": "x" * 1_100_000}), 413, "Payload too large"),
}


def test_bad_messages_are_answered_with_errors_and_the_connection_stays_open(served: Served) -> None:
    with open_socket(served, served.keys["t1"]) as ws:
        for name, (message, code, error) in BAD_MESSAGES.items():
            send(ws, message)
            answered = receive(ws)
            assert (answered["type"], answered["code"], answered["error"]) == ("error", code, error), name
        ws.send(b"\x00binary")
        assert receive(ws)["code"] == 400
        # The validation error has the HTTP body's fields: the first field in the message, all in details.
        send(ws, {"type": "query", "query": "x", "limit": 0, "temperature": 7})
        invalid = receive(ws)
        assert invalid["message"].startswith("limit: ")
        assert {tuple(d["loc"]) for d in invalid["details"]} == {("limit",), ("temperature",)}
        assert answer(ws, "When are invoices due?")[-1]["type"] == "done"


def test_a_model_failing_mid_answer_ends_it_with_an_error_and_the_connection_stays(
    served: Served, scripted: FakeAnthropic
) -> None:
    scripted.script(answer=ANSWER, fail_after_deltas=2)
    with open_socket(served, served.keys["t1"]) as ws:
        sources, *tokens, error = answer(ws, "When are invoices due? (overloaded)")
        assert sources["type"] == "sources" and [t["type"] for t in tokens] == ["token", "token"]
        assert (error["type"], error["code"], error["error"]) == ("error", 503, "Answer model unavailable")
        assert error["message"].startswith("Claude ") and error["message"].endswith(": Overloaded")
        scripted.script(answer=ANSWER)
        assert answer(ws, "When are invoices due? (again)")[-1]["type"] == "done"


def test_a_cancel_with_no_answer_in_progress_is_ignored(served: Served) -> None:
    with open_socket(served, served.keys["t1"]) as ws:
        send(ws, {"type": "cancel"})
        assert answer(ws, "When are invoices due?")[-1]["type"] == "done"


# ---- cancel, a second query, a client that leaves ------------------------------------------------------
def test_cancel_stops_the_answer_and_closes_the_model_stream(served: Served, scripted: FakeAnthropic) -> None:
    scripted.script(answer=SLOW_ANSWER, delta_interval=DELTA_INTERVAL)
    question = "When are invoices due? (cancelled)"
    with open_socket(served, served.keys["t1"]) as ws:
        until_first_token(ws, question)
        send(ws, {"type": "cancel"})
        cancelled_at = time.monotonic()
        rest = [receive(ws)]
        while rest[-1]["type"] == "token":
            rest.append(receive(ws))
        record = stream_of(scripted, question)
        wait_until(lambda: record.client_closed_at is not None, CLOSE_WITHIN + 1, "the model stream's close")
        assert record.client_closed_at is not None and record.client_closed_at - cancelled_at < CLOSE_WITHIN
        assert not record.finished
        # The connection goes on: the next question is answered.
        scripted.script(answer=ANSWER)
        assert answer(ws, "When are invoices due?")[-1]["type"] == "done"
    assert rest[-1] == {
        "type": "error",
        "error": "Cancelled",
        "message": "the answer was cancelled before it finished",
        "code": 499,
        "cancelled": True,
    }
    assert len(rest) - 1 <= CLOSE_WITHIN / DELTA_INTERVAL + 2, "tokens kept coming after the cancel"


def test_a_query_while_one_is_answered_is_refused_and_the_first_goes_on(
    served: Served, scripted: FakeAnthropic
) -> None:
    scripted.script(answer=" ".join(f"word{n}" for n in range(15)), delta_interval=0.05)
    with open_socket(served, served.keys["t1"]) as ws:
        until_first_token(ws, "When are invoices due? (first)")
        send(ws, {"type": "query", "query": "And the second?"})
        messages = [receive(ws)]
        while messages[-1]["type"] != "done":
            messages.append(receive(ws))
    errors = [m for m in messages if m["type"] == "error"]
    assert [(e["code"], e["error"]) for e in errors] == [(409, "Answer in progress")]
    assert len(scripted.streams) == 1, "the second query never reached the model"


def test_a_client_leaving_mid_answer_stops_the_generation(served: Served, scripted: FakeAnthropic) -> None:
    scripted.script(answer=SLOW_ANSWER, delta_interval=DELTA_INTERVAL)
    question = "When are invoices due? (left)"
    with open_socket(served, served.keys["t1"]) as ws:
        until_first_token(ws, question)
        ws.close_socket()  # no close handshake: the TCP connection just ends, as when a laptop lid closes
        left_at = time.monotonic()
    record = stream_of(scripted, question)
    wait_until(lambda: record.client_closed_at is not None, CLOSE_WITHIN + 1, "the model stream's close")
    assert record.client_closed_at is not None and record.client_closed_at - left_at < CLOSE_WITHIN
    assert not record.finished
    assert record.deltas_sent <= CLOSE_WITHIN / DELTA_INTERVAL + 3
    # The tenant's slot came back: its next question is answered at once.
    scripted.script(answer=ANSWER)
    with open_socket(served, served.keys["t1"]) as again:
        assert answer(again, "When are invoices due?")[-1]["type"] == "done"


# ---- limits -------------------------------------------------------------------------------------------
def test_a_query_over_the_keys_rate_limit_gets_an_error_and_the_connection_stays(served: Served) -> None:
    with served.http("t1") as admin:
        created = admin.post("/v1/keys", json={"name": "ws-limited", "scopes": ["chat"], "rate_limit_per_minute": 2})
        assert created.status_code == 201, created.text
    with open_socket(served, created.json()["key"]) as ws:
        ends = [answer(ws, f"When are invoices due? ({n})")[-1] for n in range(5)]
        refused = [end for end in ends if end["type"] == "error"]
        # Fixed 60 s windows: five queries in a few seconds get at most 2 per window, so at most 4 through.
        assert refused and 2 <= 5 - len(refused) <= 4
        assert refused[0]["code"] == 429 and refused[0]["error"] == "Rate limit exceeded"
        assert 1 <= refused[0]["retry_after"] <= 60
        send(ws, {"type": "cancel"})  # still open, and still read
        send(ws, "{nope")
        assert receive(ws)["code"] == 400
    with served.http("t1") as admin:
        usage = admin.get(f"/v1/keys/{created.json()['id']}/usage").json()
    assert (usage["requests"], usage["errors"]) == (5, len(refused))  # a refused query counts, as a 429 does


def test_websocket_and_http_chats_share_the_tenants_slots(served: Served, scripted: FakeAnthropic) -> None:
    scripted.script(answer=SLOW_ANSWER, delta_interval=DELTA_INTERVAL)
    with open_socket(served, served.keys["t3"]) as busy, open_socket(served, served.keys["t3"]) as second:
        until_first_token(busy, "What is the travel policy? (holds the slot)")
        with served.http("t3") as client:
            http_chat = client.post("/v1/kb/chat", json={"query": "What is the travel policy?"})
        assert http_chat.status_code == 429 and http_chat.json()["retry_after"] >= 1
        refused = answer(second, "What is the travel policy? (second socket)")
        assert [(m["type"], m["code"]) for m in refused] == [("error", 429)]
        assert refused[0]["retry_after"] >= 1
        with served.http("t1") as other:  # another tenant is not held up
            assert other.post("/v1/kb/chat", json={"query": "When are invoices due?"}).status_code == 200
        send(busy, {"type": "cancel"})
        while receive(busy)["type"] != "error":
            pass
        scripted.script(answer=ANSWER)
        assert answer(second, "What is the travel policy?")[-1]["type"] == "done"


def test_each_query_counts_in_the_keys_usage(served: Served) -> None:
    with served.http("t1") as admin:
        created = admin.post("/v1/keys", json={"name": "ws-usage", "scopes": ["chat"]})
        key_id = created.json()["id"]
        with open_socket(served, created.json()["key"]) as ws:
            answer(ws, "When are invoices due? (usage)")  # questions of their own: no cached answer
            answer(ws, "How often are API keys rotated? (usage)")
        usage = admin.get(f"/v1/keys/{key_id}/usage")
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert body["by_route"] == {"WS /v1/kb/chat/ws": 2}
    assert body["requests"] == 2 and body["errors"] == 0
    assert body["chat_tokens"] == {"input_tokens": 2 * 812, "output_tokens": 2 * 27}
