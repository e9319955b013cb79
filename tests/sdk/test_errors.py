"""A typed error for each status, raised from the real server's answers (and, for what a healthy server does not
answer on cue -- a 500, a proxy's HTML page, a request id -- from a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from ragline_client import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RaglineError,
    RateLimitError,
    UnprocessableEntityError,
)

from tests.sdk.conftest import Both
from tests.sdk.scripted import Reply, ScriptedServer, error_reply, in_turn
from tests.support import Server


def _bad_filter(client: Any) -> Any:
    return client.search("refunds", filters={"no_such_field": 1})


def _duplicate_kb(client: Any) -> Any:
    name = f"twice {uuid.uuid4().hex[:8]}"
    return _then(client.knowledge_bases.create(name), lambda: client.knowledge_bases.create(name))


def _then(first: Any, second: Callable[[], Any]) -> Any:
    """``second()`` after ``first`` is done: for the async client, one coroutine awaiting both."""
    if hasattr(first, "__await__"):

        async def both_in_turn() -> Any:
            await first
            return await second()

        return both_in_turn()
    return second()


CASES = [
    (400, BadRequestError, "s1", _bad_filter),
    (401, AuthenticationError, "rl_not-a-key", lambda c: c.search("refunds")),
    (403, PermissionDeniedError, "s1_search", lambda c: c.documents.list_page()),
    (403, PermissionDeniedError, "s1", lambda c: c.search("refunds", filters={"tenant_id": "s2"})),
    (404, NotFoundError, "s1", lambda c: c.documents.get("doc_does_not_exist")),
    (409, ConflictError, "s1", _duplicate_kb),
    (422, UnprocessableEntityError, "s1", lambda c: c.chat("refunds", limit=0)),
]


@pytest.mark.parametrize(("status", "error_class", "key", "call"), CASES)
def test_each_status_raises_its_error(
    both: Both, sdk_server: Server, status: int, error_class: type, key: str, call: Callable[[Any], Any]
) -> None:
    client = both.client(sdk_server.keys.get(key, key), sdk_server.url, max_retries=0)  # type: ignore[attr-defined]
    with pytest.raises(error_class) as raised:
        both(call(client))
    error = raised.value
    assert isinstance(error, APIStatusError) and isinstance(error, RaglineError)
    assert error.status_code == status and error.code == status and error.body["code"] == status
    assert error.error and error.message == error.body["message"]
    assert error.response.status_code == status and error.request.url.path.startswith("/v1/")
    # The server names every answer's request (API Gateway's request id when deployed).
    assert error.request_id and error.request_id.startswith("req_")
    if status == 422:
        assert error.details and error.details[0]["loc"]


def test_rate_limited_key_raises_rate_limit_error(both: Both, s1: Any, sdk_server: Server) -> None:
    limited = both(s1.keys.create(f"slow {uuid.uuid4().hex[:6]}", ["search"], rate_limit_per_minute=1))
    client = both.client(limited.key, sdk_server.url, max_retries=0)
    both(client.search("refunds"))
    with pytest.raises(RateLimitError) as refused:
        both(client.search("refunds"))
    error = refused.value
    assert error.status_code == 429 and error.body["retry_after"] == error.retry_after
    assert 1 <= error.retry_after <= 60 and float(error.response.headers["retry-after"]) == error.retry_after


def test_server_errors_and_request_ids(both: Both) -> None:
    failed = error_reply(500, "Internal error", "something went wrong on our side", ("x-request-id", "req-123"))
    with ScriptedServer(in_turn(failed)) as server:
        with pytest.raises(InternalServerError) as raised:
            both(both.client("rl_test", server.url, max_retries=0).documents.get("doc_1"))
    assert raised.value.status_code == 500 and raised.value.request_id == "req-123"
    assert str(raised.value) == "500 Internal error: something went wrong on our side (request id req-123)"

    # A gateway's page instead of Ragline's JSON body: still typed, with the text as the message.
    page = Reply(502, b"<html>Bad Gateway</html>", (("content-type", "text/html"), ("x-amzn-RequestId", "gw-9")))
    with ScriptedServer(in_turn(page)) as server:
        with pytest.raises(InternalServerError) as raised:
            both(both.client("rl_test", server.url, max_retries=0).documents.get("doc_1"))
    assert raised.value.status_code == 502 and raised.value.body is None and raised.value.error is None
    assert raised.value.message == "<html>Bad Gateway</html>" and raised.value.request_id == "gw-9"
