"""Retries, against real HTTP servers on 127.0.0.1 that fail on cue: what is retried, how often, how long the
client waits (Retry-After honoured), and that a retried POST carries the same Idempotency-Key every time."""

from __future__ import annotations

import time
from typing import Any

import pytest
from ragline_client import (
    APIConnectionError,
    APITimeoutError,
    ConflictError,
    InternalServerError,
    RateLimitError,
)

from tests.sdk.conftest import Both
from tests.sdk.scripted import Reply, ScriptedServer, error_reply, in_turn, json_reply, sse, sse_reply
from tests.support import free_port

KB = {"id": "kb_1", "name": "Manuals", "status": "active", "document_count": 0, "chunk_count": 0}
SEARCH = {"items": [], "total_found": 0, "latency_ms": 1.0}


def unavailable() -> Reply:
    return error_reply(503, "Dependency unavailable", "the metadata store is down")


def test_a_failing_post_is_retried_with_one_idempotency_key(both: Both) -> None:
    with ScriptedServer(in_turn(unavailable(), unavailable(), json_reply(201, KB))) as server:
        client = both.client("rl_test", server.url)
        kb = both(client.knowledge_bases.create("Manuals"))
    assert kb.id == "kb_1"
    assert [r.method for r in server.requests] == ["POST"] * 3
    keys = {r.headers.get("idempotency-key") for r in server.requests}
    assert len(keys) == 1 and None not in keys  # one key for the logical call, sent with every attempt
    assert all(r.body == server.requests[0].body for r in server.requests)

    # A second logical call gets a key of its own.
    with ScriptedServer(in_turn(json_reply(201, KB))) as other:
        both(both.client("rl_test", other.url).knowledge_bases.create("Manuals"))
    assert other.requests[0].headers["idempotency-key"] not in keys


def test_retries_back_off_and_then_give_up(both: Both) -> None:
    with ScriptedServer(in_turn(unavailable())) as server:
        client = both.client("rl_test", server.url, max_retries=2)
        with pytest.raises(InternalServerError) as failed:
            both(client.search("anything"))
    assert failed.value.status_code == 503 and failed.value.error == "Dependency unavailable"
    arrivals = [r.at for r in server.requests]
    assert len(arrivals) == 3  # the first attempt and max_retries=2 more
    first_wait, second_wait = arrivals[1] - arrivals[0], arrivals[2] - arrivals[1]
    # 0.5 s then 1 s, less up to a quarter (jitter); the upper bounds leave room for a loaded machine
    assert 0.37 <= first_wait < 1.5 and 0.75 <= second_wait < 2.5

    with ScriptedServer(in_turn(unavailable())) as server:
        with pytest.raises(InternalServerError):
            both(both.client("rl_test", server.url, max_retries=0).search("anything"))
    assert len(server.requests) == 1


def test_429_waits_for_retry_after(both: Both) -> None:
    limited = error_reply(429, "Rate limit exceeded", "slow down", ("retry-after", "1"), retry_after=1)
    with ScriptedServer(in_turn(limited, json_reply(200, SEARCH))) as server:
        found = both(both.client("rl_test", server.url).search("anything"))
    assert found.total_found == 0 and len(server.requests) == 2
    waited = server.requests[1].at - server.requests[0].at
    assert 1.0 <= waited < 2.5  # what the server asked for, not the 0.5 s backoff


def test_the_body_retry_after_is_honoured_without_the_header(both: Both) -> None:
    limited = error_reply(429, "Rate limit exceeded", "slow down", retry_after=1)
    with ScriptedServer(in_turn(limited, json_reply(200, SEARCH))) as server:
        both(both.client("rl_test", server.url).search("anything"))
    assert 1.0 <= server.requests[1].at - server.requests[0].at < 2.5


def test_rate_limit_error_carries_retry_after_once_retries_are_exhausted(both: Both) -> None:
    limited = error_reply(429, "Rate limit exceeded", "60 requests per minute", ("retry-after", "1"), retry_after=1)
    with ScriptedServer(in_turn(limited)) as server:
        client = both.client("rl_test", server.url, max_retries=1)
        with pytest.raises(RateLimitError) as refused:
            both(client.search("anything"))
    assert len(server.requests) == 2
    assert refused.value.retry_after == 1.0 and refused.value.status_code == 429
    assert refused.value.message == "60 requests per minute"

    # A wait longer than a minute is not sat through: the caller decides.
    long_wait = error_reply(429, "Rate limit exceeded", "later", ("retry-after", "120"), retry_after=120)
    with ScriptedServer(in_turn(long_wait)) as server:
        started = time.monotonic()
        with pytest.raises(RateLimitError) as refused:
            both(both.client("rl_test", server.url).search("anything"))
    assert refused.value.retry_after == 120 and len(server.requests) == 1 and time.monotonic() - started < 1


def test_what_is_not_retried(both: Both) -> None:
    # A POST that changes something each time is not sent again after a 5xx: it may have run.
    with ScriptedServer(in_turn(unavailable())) as server:
        with pytest.raises(InternalServerError):
            both(both.client("rl_test", server.url).webhooks.rotate_secret("wh_1"))
    assert len(server.requests) == 1 and "idempotency-key" not in server.requests[0].headers

    # ...but it is after a 429, which the server answers before running the route.
    limited = error_reply(429, "Too many requests", "queue full", ("retry-after", "0"))
    with ScriptedServer(in_turn(limited, json_reply(200, {"secret": "whsec_x"}))) as server:
        assert both(both.client("rl_test", server.url).webhooks.rotate_secret("wh_1")) == "whsec_x"
    assert len(server.requests) == 2

    # A conflict that will not clear (a name in use) raises at once...
    with ScriptedServer(in_turn(error_reply(409, "Name in use", "a knowledge base is named so"))) as server:
        with pytest.raises(ConflictError):
            both(both.client("rl_test", server.url).knowledge_bases.create("Manuals"))
    assert len(server.requests) == 1

    # ...the one that does (the same Idempotency-Key still running) is retried.
    in_use = error_reply(409, "Idempotency-Key in use", "retry once the first request has answered")
    with ScriptedServer(in_turn(in_use, json_reply(201, KB))) as server:
        assert both(both.client("rl_test", server.url).knowledge_bases.create("Manuals")).id == "kb_1"
    assert len(server.requests) == 2
    assert server.requests[0].headers["idempotency-key"] == server.requests[1].headers["idempotency-key"]


def test_connection_refused_is_retried_then_raised(both: Both) -> None:
    port = free_port()  # nothing listens there
    client = both.client("rl_test", f"http://127.0.0.1:{port}", max_retries=2)
    started = time.monotonic()
    with pytest.raises(APIConnectionError) as refused:
        both(client.documents.get("doc_1"))
    assert not isinstance(refused.value, APITimeoutError)
    assert f"127.0.0.1:{port}" in str(refused.value)
    assert 1.1 <= time.monotonic() - started < 5  # two backoffs (0.5 s and 1 s, less jitter) before giving up


def test_a_timeout_is_retried_then_raised(both: Both) -> None:
    with ScriptedServer(lambda n, request: Reply(hang_seconds=5)) as server:
        client = both.client("rl_test", server.url, timeout=0.3, max_retries=1)
        with pytest.raises(APITimeoutError):
            both(client.documents.get("doc_1"))
        assert len(server.requests) == 2

    with ScriptedServer(in_turn(Reply(hang_seconds=5), json_reply(200, SEARCH))) as server:
        found = both(both.client("rl_test", server.url, timeout=0.3).search("anything"))
    assert found.total_found == 0 and len(server.requests) == 2


def test_a_stream_is_retried_until_it_opens(both: Both) -> None:
    frames = sse({"event": "message", "data": {"content": "ok"}}, "[DONE]")
    with ScriptedServer(in_turn(unavailable(), sse_reply(frames))) as server:
        events: Any = both.events(both.client("rl_test", server.url).chat.stream("q"))
    assert [e.content for e in events] == ["ok"] and len(server.requests) == 2
    assert server.requests[0].headers["idempotency-key"] == server.requests[1].headers["idempotency-key"]
