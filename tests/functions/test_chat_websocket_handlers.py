"""The deployed WebSocket chat: functions/chat_ws and the authorizer, invoked with the events API Gateway's WebSocket
API sends ($connect after the authorizer, $default per message, $disconnect), against moto: the connection records
in the DynamoDB table, the answers posted through moto's @connections API (apigatewaymanagementapi).

moto forgets a connection's posted data when it is deleted, so the function's push adapter is wrapped to record
each message (and disconnect) before it goes to moto. "Claude" is the fake Messages API on 127.0.0.1 where an
answer must be slow enough to cancel or leave.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from botocore.stub import Stubber

from ragline.adapters.aws.websocket_push import ApiGatewayConnectionPush
from ragline.errors import ConnectionGone
from ragline.ports import ChatConnection
from ragline_emulator.anthropic_server import FakeAnthropic
from ragline_emulator.event_sources import EmulatedLambdaContext
from tests.functions.conftest import ACCOUNT, API_ID, REGION, STAGE, Stack, load_function

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

DOMAIN = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
CALLBACK_URL = f"https://{DOMAIN}/{STAGE}"
AUTH_TIMEOUT = 5.0
T1_TEXT = (
    "Ragline keeps a knowledge base per tenant. Refunds are issued within fourteen days of a return, "
    "to the original payment method. Shipping to Iceland takes five working days."
)
T2_TEXT = "Sourdough needs a starter fed daily and a long cold proof in the fridge overnight."
SLOW_ANSWER = " ".join(f"token{n}" for n in range(300))  # 30 s at 0.1 s a token, unless somebody stops it
DELTA_INTERVAL = 0.1
_serial = iter(range(10**6))


# ---- events as API Gateway sends them -------------------------------------------------------------------
def _request_context(route_key: str, event_type: str, connection_id: str, connected_at_ms: int) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": "Kxyz1Fm2IAMFf0g=",
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": connected_at_ms,
        "requestTimeEpoch": now_ms,
        "identity": {"sourceIp": "203.0.113.7", "userAgent": "pytest"},
        "requestId": f"req-{next(_serial)}",
        "domainName": DOMAIN,
        "connectionId": connection_id,
        "apiId": API_ID,
    }


def _upgrade_headers(key: str | None) -> dict[str, str]:
    headers = {
        "Host": DOMAIN,
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "X-Amzn-Trace-Id": "Root=1-5f84c7a9-0d2b1c2d3e4f5a6b7c8d9e0f",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if key is not None:
        headers["x-api-key"] = key
    return headers


def authorizer_event(connection_id: str, key: str | None) -> dict[str, Any]:
    """The REQUEST authorizer's event for a WebSocket upgrade (its methodArn ends in $connect)."""
    headers = _upgrade_headers(key)
    context = _request_context("$connect", "CONNECT", connection_id, int(time.time() * 1000))
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/$connect",
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {},
        "multiValueQueryStringParameters": {},
        "stageVariables": {},
        "requestContext": context,
    }


def connect_event(connection_id: str, authorizer: dict[str, Any] | None, key: str | None = None) -> dict[str, Any]:
    headers = _upgrade_headers(key)
    context = _request_context("$connect", "CONNECT", connection_id, int(time.time() * 1000))
    if authorizer is not None:
        context["authorizer"] = authorizer
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }


def message_event(connection: Connection, body: str | bytes) -> dict[str, Any]:
    context = _request_context("$default", "MESSAGE", connection.id, connection.connected_at_ms)
    context["messageId"] = f"msg-{next(_serial)}"
    binary = isinstance(body, bytes)
    return {
        "requestContext": context,
        "body": base64.b64encode(body).decode() if binary else body,
        "isBase64Encoded": binary,
    }


def disconnect_event(connection: Connection) -> dict[str, Any]:
    context = _request_context("$disconnect", "DISCONNECT", connection.id, connection.connected_at_ms)
    context.update(disconnectStatusCode=1001, disconnectReason="Going away")
    headers = {"Host": DOMAIN, "x-api-key": "", "X-Forwarded-For": "203.0.113.7"}
    return {"headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()}, "requestContext": context}


def pass_authorizer(answer: dict[str, Any]) -> dict[str, Any]:
    """requestContext.authorizer as API Gateway hands the authorizer's answer on: its context plus principalId."""
    return {**answer.get("context", {}), "principalId": answer["principalId"]}


# ---- the function, with its posts recorded -------------------------------------------------------------
class RecordingPush:
    """The function's real push adapter (moto behind it), recording each message and disconnect first."""

    def __init__(self, inner: ApiGatewayConnectionPush) -> None:
        self.inner = inner
        self.sent: dict[str, list[dict[str, Any]]] = {}
        self.disconnected: list[str] = []
        self._lock = threading.Lock()

    def send(self, connection_id: str, text: str) -> None:
        with self._lock:
            self.sent.setdefault(connection_id, []).append(json.loads(text))
        self.inner.send(connection_id, text)

    def disconnect(self, connection_id: str) -> None:
        self.disconnected.append(connection_id)
        self.inner.disconnect(connection_id)

    def messages(self, connection_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.sent.get(connection_id, []))


@dataclass
class Connection:
    id: str
    connected_at_ms: int


@dataclass
class ChatWs:
    stack: Stack
    module: ModuleType
    push: RecordingPush
    context: EmulatedLambdaContext
    documents: dict[str, str] = field(default_factory=dict)

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.module.handler(event, self.context)

    def authorize(self, key: str | None, connection_id: str) -> dict[str, Any]:
        return load_function("authorizer").handler(authorizer_event(connection_id, key), self.context)

    def connect(self, key: str | None, *, connected_at_ms: int | None = None) -> Connection:
        """Through the authorizer, then $connect, as API Gateway does: the connection, once it is open."""
        connection = Connection(f"conn{next(_serial)}=", connected_at_ms or int(time.time() * 1000))
        answer = self.authorize(key, connection.id)
        event = connect_event(connection.id, pass_authorizer(answer), key)
        event["requestContext"]["connectedAt"] = connection.connected_at_ms
        assert self(event) == {"statusCode": 200}
        return connection

    def send(self, connection: Connection, message: dict[str, Any] | str | bytes) -> list[dict[str, Any]]:
        """One message; what the function posted in answer to it."""
        before = len(self.push.messages(connection.id))
        body = message if isinstance(message, str | bytes) else json.dumps(message)
        assert self(message_event(connection, body)) == {"statusCode": 200}
        return self.push.messages(connection.id)[before:]

    def is_open(self, connection: Connection) -> bool:
        return self.stack.container.chat_connections.get_connection(connection.id) is not None


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def make_chat_ws(make_stack: Callable[..., Stack], context: EmulatedLambdaContext) -> Callable[..., ChatWs]:
    def build(**env: str) -> ChatWs:
        stack = make_stack(
            RAGLINE_WS_CALLBACK_URL=CALLBACK_URL,
            RAGLINE_WS_AUTH_TIMEOUT_SECONDS=str(AUTH_TIMEOUT),
            RAGLINE_AUTH_MODE="authorizer",  # as deployed (Globals): the authorizer's context is the principal
            RAGLINE_USAGE_FLUSH_SECONDS="0",  # as deployed: each query's usage is written before the invocation ends
            **env,
        )
        documents = {tenant: _ingest(stack, tenant, text) for tenant, text in (("t1", T1_TEXT), ("t2", T2_TEXT))}
        module = load_function("chat_ws")
        push = RecordingPush(module.container.connection_push)
        module.container.__dict__["connection_push"] = push  # the cached adapter, wrapped
        return ChatWs(stack, module, push, context, documents)

    return build


@pytest.fixture
def chat_ws(make_chat_ws: Callable[..., ChatWs]) -> ChatWs:
    return make_chat_ws()


@pytest.fixture
def slow_chat_ws(make_chat_ws: Callable[..., ChatWs], fake: FakeAnthropic) -> ChatWs:
    fake.script(answer=SLOW_ANSWER, delta_interval=DELTA_INTERVAL)
    return make_chat_ws(ANTHROPIC_API_KEY=fake.api_key, ANTHROPIC_BASE_URL=fake.url, RAGLINE_CHAT_ANSWER_FLOOR="0")


def _ingest(stack: Stack, tenant: str, text: str) -> str:
    accepted = stack.container.ingest.accept(tenant, text.encode(), content_type="text/plain", title=f"{tenant} notes")
    assert accepted.job_id is not None
    job = stack.container.store.claim(accepted.job_id)
    assert job is not None
    stack.container.ingest.process(job)
    return accepted.document.id


def ask(chat_ws: ChatWs, connection: Connection, query: str, **body: Any) -> list[dict[str, Any]]:
    return chat_ws.send(connection, {"type": "query", "query": query, **body})


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.02)


# ---- the authorizer on $connect ---------------------------------------------------------------------------
def test_the_authorizer_allows_a_good_key_to_connect_and_passes_its_tenant(chat_ws: ChatWs) -> None:
    answer = chat_ws.authorize(chat_ws.stack.keys["t1"], "c1=")
    assert answer["principalId"] == chat_ws.stack.key_ids["t1"]
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == [f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/$connect"]
    assert answer["context"]["tenant_id"] == "t1" and "chat" in answer["context"]["scopes"].split(",")


def test_the_authorizer_lets_a_browser_connect_pending_without_a_key(chat_ws: ChatWs) -> None:
    answer = chat_ws.authorize(None, "c2=")
    assert answer["context"] == {"auth": "pending"}
    assert "tenant_id" not in answer["context"]
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement["Resource"] == [f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/$connect"]


@pytest.mark.parametrize("which", ["unknown", "expired", "revoked"])
def test_the_authorizer_refuses_a_bad_key_at_the_upgrade(chat_ws: ChatWs, which: str) -> None:
    authorizer = load_function("authorizer")
    key = chat_ws.stack.keys.get(which, "rl_nobody")
    with pytest.raises(authorizer.Denied, match="^Unauthorized$"):  # API Gateway answers the upgrade 401
        authorizer.handler(authorizer_event("c3=", key), chat_ws.context)


# ---- $connect and $disconnect -----------------------------------------------------------------------------
def test_connect_records_the_connection_and_refuses_a_key_without_the_chat_scope(chat_ws: ChatWs) -> None:
    connection = chat_ws.connect(chat_ws.stack.keys["t1"])
    record = chat_ws.stack.container.chat_connections.get_connection(connection.id)
    assert record is not None and record.principal is not None and record.principal.tenant_id == "t1"
    assert record.connected_at == connection.connected_at_ms / 1000

    search_only = pass_authorizer(chat_ws.authorize(chat_ws.stack.keys["t1_search"], "c4="))
    assert chat_ws(connect_event("c4=", search_only)) == {"statusCode": 403}
    assert chat_ws(connect_event("c5=", None)) == {"statusCode": 401}  # did not come through the authorizer
    assert chat_ws.stack.container.chat_connections.get_connection("c4=") is None

    assert chat_ws(disconnect_event(connection)) == {"statusCode": 200}
    assert not chat_ws.is_open(connection)


# ---- answers ------------------------------------------------------------------------------------------------
def test_queries_are_answered_through_the_connections_api(chat_ws: ChatWs) -> None:
    connection = chat_ws.connect(chat_ws.stack.keys["t1"])
    for question in ("How long do refunds take?", "How long does shipping to Iceland take?"):
        sources, *tokens, done = ask(chat_ws, connection, question)
        assert sources["type"] == "sources"
        assert [s["document_id"] for s in sources["sources"]] == [chat_ws.documents["t1"]]
        assert tokens and all(t["type"] == "token" for t in tokens)
        assert done["type"] == "done" and done["query_id"].startswith("qry_")
        assert {"usage", "model", "confidence", "grounded", "cached", "timings", "sources_used"} <= set(done)
        recorded = chat_ws.stack.container.insight.query("t1", done["query_id"])
        assert recorded.question == question
        assert recorded.answer == "".join(t["token"] for t in tokens).strip()
    # What API Gateway's @connections received (moto), message after message: the same JSON text.
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    connections = apigatewaymanagementapi_backends[ACCOUNT][REGION].connections
    posted = connections[quote(connection.id, safe="")].data.decode()  # moto keys them as they are in the URL
    assert posted == "".join(
        json.dumps(m, ensure_ascii=False, separators=(",", ":")) for m in chat_ws.push.sent[connection.id]
    )
    usage = chat_ws.stack.container.usage.usage(chat_ws.stack.key_ids["t1"], 1)
    assert usage.by_route == {"WS /v1/kb/chat/ws": 2}


def test_another_tenants_documents_are_never_in_the_sources(chat_ws: ChatWs) -> None:
    connection = chat_ws.connect(chat_ws.stack.keys["t2"])
    sources, *_ = ask(chat_ws, connection, "How long do refunds take?", limit=10)
    assert chat_ws.documents["t1"] not in {s["document_id"] for s in sources.get("sources", [])}
    (refused,) = ask(chat_ws, connection, "How long do refunds take?", filters={"tenant_id": "t1"})
    assert (refused["type"], refused["code"]) == ("error", 403)


def test_bad_messages_are_answered_and_the_connection_stays(chat_ws: ChatWs) -> None:
    connection = chat_ws.connect(chat_ws.stack.keys["t1"])
    cases: list[tuple[Any, int]] = [
        ("{nope", 400),
        ({"type": "shout"}, 400),
        ({"type": "query"}, 422),
        ({"type": "query", "query": "x", "limit": 0}, 422),
        ({"type": "auth", "api_key": chat_ws.stack.keys["t1"]}, 400),
        (b"\x00\x01", 400),
    ]
    for message, code in cases:
        (answered,) = chat_ws.send(connection, message)
        assert (answered["type"], answered["code"]) == ("error", code), message
    assert chat_ws.send(connection, {"type": "cancel"}) == []  # nothing in progress: ignored
    assert chat_ws.is_open(connection) and not chat_ws.push.disconnected
    assert ask(chat_ws, connection, "How long do refunds take?")[-1]["type"] == "done"


def test_a_query_while_an_answer_holds_the_connection_is_refused(chat_ws: ChatWs) -> None:
    connection = chat_ws.connect(chat_ws.stack.keys["t1"])
    connections = chat_ws.stack.container.chat_connections
    now = time.time()
    assert connections.start_answer(connection.id, "ans_other", now=now, until=now + 60)
    (busy,) = ask(chat_ws, connection, "How long do refunds take?")
    assert (busy["code"], busy["error"]) == (409, "Answer in progress")
    # A claim past its time (its invocation died) does not hold the connection for ever.
    assert connections.start_answer(connection.id, "ans_dead", now=now, until=now - 1) is False
    connections.finish_answer(connection.id, "ans_other")
    assert connections.start_answer(connection.id, "ans_dead", now=now, until=now - 1)
    assert ask(chat_ws, connection, "How long do refunds take?")[-1]["type"] == "done"


def test_a_query_over_the_keys_rate_limit_gets_an_error_and_the_connection_stays(chat_ws: ChatWs) -> None:
    from ragline.keys import CreateKeyRequest

    key, record = chat_ws.stack.container.keys.create(
        "t1", CreateKeyRequest(name="limited", scopes=["chat"], rate_limit_per_minute=1)
    )
    connection = chat_ws.connect(key)
    ends = [ask(chat_ws, connection, f"How long do refunds take? ({n})")[-1] for n in range(3)]
    refused = [end for end in ends if end["type"] == "error"]
    assert refused and refused[0]["code"] == 429 and 1 <= refused[0]["retry_after"] <= 60
    assert chat_ws.is_open(connection)


def test_a_revoked_key_is_refused_at_its_next_query(chat_ws: ChatWs) -> None:
    from ragline.keys import CreateKeyRequest

    key, record = chat_ws.stack.container.keys.create("t1", CreateKeyRequest(name="soon revoked", scopes=["chat"]))
    connection = chat_ws.connect(key)
    assert ask(chat_ws, connection, "How long do refunds take?")[-1]["type"] == "done"
    chat_ws.stack.container.keys.revoke("t1", record.id)
    (refused,) = ask(chat_ws, connection, "How long do refunds take?")
    assert refused["code"] == 401
    assert chat_ws.push.disconnected == [connection.id] and not chat_ws.is_open(connection)


# ---- first-message authentication (browsers) --------------------------------------------------------------
def test_a_pending_connection_authenticates_with_its_first_message(chat_ws: ChatWs) -> None:
    connection = chat_ws.connect(None)
    record = chat_ws.stack.container.chat_connections.get_connection(connection.id)
    assert record == ChatConnection(connection.id, connection.connected_at_ms / 1000, None)
    assert chat_ws.send(connection, {"type": "auth", "api_key": chat_ws.stack.keys["t1"]}) == [
        {"type": "authenticated"}
    ]
    assert ask(chat_ws, connection, "How long do refunds take?")[-1]["type"] == "done"


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ({"type": "query", "query": "How long do refunds take?"}, 401),
        ({"type": "auth", "api_key": "rl_nobody"}, 401),
        ({"type": "auth", "api_key": "revoked"}, 401),
        ({"type": "auth", "api_key": "t1_search"}, 403),
        ("not json", 401),
    ],
    ids=["a query", "an unknown key", "a revoked key", "a key without the chat scope", "not JSON"],
)
def test_a_pending_connection_whose_first_message_fails_is_closed(chat_ws: ChatWs, first: Any, code: int) -> None:
    if isinstance(first, dict) and first.get("type") == "auth":
        first = {**first, "api_key": chat_ws.stack.keys.get(first["api_key"], first["api_key"])}
    connection = chat_ws.connect(None)
    (refused,) = chat_ws.send(connection, first)
    assert (refused["type"], refused["code"]) == ("error", code)
    assert chat_ws.push.disconnected == [connection.id] and not chat_ws.is_open(connection)


def test_an_auth_message_after_the_deadline_is_refused(chat_ws: ChatWs) -> None:
    connection = chat_ws.connect(None, connected_at_ms=int((time.time() - AUTH_TIMEOUT - 1) * 1000))
    (refused,) = chat_ws.send(connection, {"type": "auth", "api_key": chat_ws.stack.keys["t1"]})
    assert refused["code"] == 401 and f"{AUTH_TIMEOUT:g} s" in refused["message"]
    assert chat_ws.push.disconnected == [connection.id]


def test_a_message_on_an_unknown_connection_is_refused(chat_ws: ChatWs) -> None:
    connection = Connection("never-connected=", int(time.time() * 1000))
    (refused,) = chat_ws.send(connection, {"type": "query", "query": "x"})
    assert refused["code"] == 401 and chat_ws.push.disconnected == [connection.id]


# ---- cancel, and a client that leaves, while another invocation answers ----------------------------------
def _answer_in_background(chat_ws: ChatWs, connection: Connection, question: str) -> threading.Thread:
    event = message_event(connection, json.dumps({"type": "query", "query": question}))
    thread = threading.Thread(target=chat_ws, args=(event,), name="answering-invocation")
    thread.start()
    wait_for(
        lambda: any(m["type"] == "token" for m in chat_ws.push.messages(connection.id)), 30, "the first token's post"
    )
    return thread


def test_cancel_from_another_invocation_stops_the_answer(slow_chat_ws: ChatWs, fake: FakeAnthropic) -> None:
    connection = slow_chat_ws.connect(slow_chat_ws.stack.keys["t1"])
    answering = _answer_in_background(slow_chat_ws, connection, "How long do refunds take? (cancelled)")
    assert slow_chat_ws.send(connection, {"type": "cancel"}) == []  # the answering invocation says it stopped
    cancelled_at = time.monotonic()
    answering.join(10)
    assert not answering.is_alive()
    *tokens, last = slow_chat_ws.push.messages(connection.id)[1:]
    assert all(t["type"] == "token" for t in tokens)
    assert last == {
        "type": "error",
        "error": "Cancelled",
        "message": "the answer was cancelled before it finished",
        "code": 499,
        "cancelled": True,
    }
    (record,) = fake.streams
    wait_for(lambda: record.client_closed_at is not None, 2, "the model stream's close")
    assert record.client_closed_at is not None and record.client_closed_at - cancelled_at < 1.0
    assert not record.finished
    # The connection is free again.
    fake.script(answer="Refunds take fourteen days [1].")
    assert ask(slow_chat_ws, connection, "How long do refunds take?")[-1]["type"] == "done"


def test_a_client_leaving_mid_answer_stops_the_generation(slow_chat_ws: ChatWs, fake: FakeAnthropic) -> None:
    connection = slow_chat_ws.connect(slow_chat_ws.stack.keys["t1"])
    answering = _answer_in_background(slow_chat_ws, connection, "How long do refunds take? (left)")
    assert slow_chat_ws(disconnect_event(connection)) == {"statusCode": 200}
    left_at = time.monotonic()
    answering.join(10)
    assert not answering.is_alive()
    assert [m["type"] for m in slow_chat_ws.push.messages(connection.id)][-1] == "token"  # no done, no error
    (record,) = fake.streams
    wait_for(lambda: record.client_closed_at is not None, 2, "the model stream's close")
    assert record.client_closed_at is not None and record.client_closed_at - left_at < 1.0
    assert not record.finished


def test_a_gone_client_ends_the_answer_at_its_next_post(slow_chat_ws: ChatWs, fake: FakeAnthropic) -> None:
    """$disconnect may come late (or never): a 410 from @connections stops the answer as well."""
    connection = slow_chat_ws.connect(slow_chat_ws.stack.keys["t1"])
    gone_after = 3

    class GoneAfter:
        def __init__(self) -> None:
            self.posts = 0

        def send(self, connection_id: str, text: str) -> None:
            self.posts += 1
            if self.posts > gone_after:
                raise ConnectionGone(connection_id)

        def disconnect(self, connection_id: str) -> None:
            raise AssertionError("nobody to disconnect")

    push = GoneAfter()
    slow_chat_ws.module.container.__dict__["connection_push"] = push
    started = time.monotonic()
    slow_chat_ws(message_event(connection, json.dumps({"type": "query", "query": "Refunds? (gone)"})))
    assert time.monotonic() - started < 5 and push.posts == gone_after + 1
    (record,) = fake.streams
    wait_for(lambda: record.client_closed_at is not None, 2, "the model stream's close")
    assert not record.finished


# ---- the push adapter ------------------------------------------------------------------------------------
def test_the_push_adapter_turns_410_into_connection_gone(chat_ws: ChatWs) -> None:
    client = boto3.client("apigatewaymanagementapi", region_name=REGION, endpoint_url=CALLBACK_URL)
    push = ApiGatewayConnectionPush(CALLBACK_URL, client=client)
    with Stubber(client) as stub:
        stub.add_client_error("post_to_connection", service_error_code="GoneException", http_status_code=410)
        with pytest.raises(ConnectionGone):
            push.send("c9=", '{"type":"token","token":"x"}')
        stub.add_client_error("delete_connection", service_error_code="GoneException", http_status_code=410)
        push.disconnect("c9=")  # gone already: nothing to do
        stub.add_response("post_to_connection", {}, {"ConnectionId": "c9=", "Data": b'{"type":"done"}'})
        push.send("c9=", '{"type":"done"}')
