"""Rate limits per key against a real `ragline serve`: the (limit + 1)th request of a window is a 429 with
Retry-After and retry_after, every answer of a counted request carries the RateLimit headers, other
keys are untouched, concurrent clients get exactly the limit served, and Retry-After is the truth.

The keys are made through the API with their own ``rate_limit_per_minute``. Each test picks a key whose
window (ragline.rate_limits.window_at, the server's own arithmetic) has the time it needs left, so no
test straddles a window boundary by chance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from ragline.rate_limits import window_at
from tests.support import Server, ragline

DEFAULT_LIMIT = 1000  # the server's setting: the admin key (no limit of its own) makes many keys here
HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("rate-limits")
    admin = ragline("keys", "create", "--tenant", "t1", "--data-dir", str(data_dir)).strip()
    server = Server(data_dir, env={"RAGLINE_RATE_LIMIT_PER_MINUTE": str(DEFAULT_LIMIT)}).start()
    server.key = admin
    yield server
    server.stop()


@pytest.fixture
def admin(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"x-api-key": server.key}, timeout=30) as client:
        yield client


def seconds_left(key_id: str) -> float:
    now = time.time()
    return window_at(now, key_id).end - now


def make_key(admin: httpx.Client, limit: int | None, *, left: tuple[float, float] = (20, 61), **extra) -> dict:
    """A new key of t1 whose current window has between left[0] and left[1] seconds to run."""
    for n in range(80):
        body = {"name": f"rl-{n}", "scopes": ["search", "ingest"], **extra}
        if limit is not None:
            body["rate_limit_per_minute"] = limit
        created = admin.post("/v1/keys", json=body)
        assert created.status_code == 201, created.text
        key = created.json()
        if left[0] <= seconds_left(key["id"]) <= left[1]:
            return key
    raise AssertionError("no key with a window that fits: the phases are not spread")


def rate_headers(response: httpx.Response) -> tuple[int, int, int]:
    return tuple(int(response.headers[name]) for name in HEADERS)  # type: ignore[return-value]


def test_the_request_after_the_limit_is_429_with_retry_after(server: Server, admin: httpx.Client) -> None:
    key = make_key(admin, 5)
    with httpx.Client(base_url=server.url, headers={"x-api-key": key["key"]}, timeout=30) as client:
        served = [client.get("/v1/kb/documents") for _ in range(5)]
        refused = client.get("/v1/kb/documents")
    assert [r.status_code for r in served] == [200] * 5
    assert [rate_headers(r)[:2] for r in served] == [(5, 4), (5, 3), (5, 2), (5, 1), (5, 0)]
    resets = [rate_headers(r)[2] for r in served]
    assert resets == sorted(resets, reverse=True) and 1 <= resets[-1] <= 60
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert set(body) == {"error", "message", "code", "retry_after"} and body["code"] == 429
    retry_after = int(refused.headers["retry-after"])
    assert body["retry_after"] == retry_after == rate_headers(refused)[2]
    assert abs(retry_after - seconds_left(key["id"])) <= 1.5
    assert rate_headers(refused)[:2] == (5, 0)
    assert refused.headers["ratelimit-policy"] == "5;w=60"

    # Another key, of the same tenant, is not touched by it.
    other = admin.get("/v1/kb/documents")
    assert other.status_code == 200 and rate_headers(other)[0] == DEFAULT_LIMIT


def test_a_key_without_its_own_limit_follows_the_setting(server: Server, admin: httpx.Client) -> None:
    key = make_key(admin, None)
    assert key["rate_limit_per_minute"] is None
    answer = httpx.get(f"{server.url}/v1/kb/documents", headers={"x-api-key": key["key"]}, timeout=30)
    assert answer.status_code == 200 and rate_headers(answer)[:2] == (DEFAULT_LIMIT, DEFAULT_LIMIT - 1)


def test_concurrent_clients_get_exactly_the_limit_served(server: Server, admin: httpx.Client) -> None:
    limit, clients = 7, 24
    key = make_key(admin, limit)
    barrier = threading.Barrier(clients)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def call() -> None:
        with httpx.Client(base_url=server.url, headers={"x-api-key": key["key"]}, timeout=60) as client:
            barrier.wait()
            answer = client.post("/v1/kb/search", json={"query": "refunds"})
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=call) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * limit + [429] * (clients - limit), statuses
    remaining = sorted(rate_headers(a)[1] for a in answers if a.status_code == 200)
    assert remaining == list(range(limit))  # each served request saw its own count
    assert all(a.headers["retry-after"] == str(a.json()["retry_after"]) for a in answers if a.status_code == 429)


def test_retry_after_is_the_truth(server: Server, admin: httpx.Client) -> None:
    key = make_key(admin, 2, left=(2.5, 8))
    with httpx.Client(base_url=server.url, headers={"x-api-key": key["key"]}, timeout=30) as client:
        assert [client.get("/v1/kb/documents").status_code for _ in range(3)] == [200, 200, 429]
        refused = client.get("/v1/kb/documents")
        assert refused.status_code == 429
        time.sleep(int(refused.headers["retry-after"]))
        again = client.get("/v1/kb/documents")
    assert again.status_code == 200, again.text
    assert rate_headers(again)[:2] == (2, 1) and rate_headers(again)[2] >= 50


def test_every_answer_of_a_counted_request_has_the_headers_and_401_has_none(
    server: Server, admin: httpx.Client
) -> None:
    key = make_key(admin, 50)
    with httpx.Client(base_url=server.url, headers={"x-api-key": key["key"]}, timeout=30) as client:
        answers = [
            client.get("/v1/kb/documents"),  # 200
            client.get("/v1/kb/documents/doc_does-not-exist"),  # 404
            client.post("/v1/kb/search", json={"query": "x", "limit": 0}),  # 422
            client.get("/v1/keys"),  # 403: the key has no admin scope
        ]
    assert [a.status_code for a in answers] == [200, 404, 422, 403]
    assert [rate_headers(a)[1] for a in answers] == [49, 48, 47, 46]  # a refused request is counted too

    unknown = httpx.get(f"{server.url}/v1/kb/documents", headers={"x-api-key": "rl_never-issued"}, timeout=30)
    missing = httpx.get(f"{server.url}/v1/kb/documents", timeout=30)
    for answer in (unknown, missing):
        assert answer.status_code == 401
        assert not any(name in answer.headers for name in (*HEADERS, "retry-after"))


def test_health_is_not_limited(server: Server) -> None:
    answers = [httpx.get(f"{server.url}/health", timeout=30) for _ in range(30)]
    assert {a.status_code for a in answers} == {200}
    assert not any(name in answers[-1].headers for name in HEADERS)


def test_an_idempotent_replay_is_counted_and_has_the_headers(server: Server, admin: httpx.Client) -> None:
    key = make_key(admin, 3)
    headers = {"x-api-key": key["key"], "Idempotency-Key": "rate-limit-replay-1"}
    body = {"text": "Refunds are accepted within 30 days.", "title": "policy"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        first = client.post("/v1/kb/documents", json=body)
        replay = client.post("/v1/kb/documents", json=body)
        client.get("/v1/kb/documents")
        refused = client.post("/v1/kb/documents", json=body)
    assert first.status_code == 202, first.text
    assert replay.headers.get("idempotent-replayed") == "true"
    assert rate_headers(first)[1] == 2 and rate_headers(replay)[1] == 1
    # Over the limit, even a replay is refused: the key's budget is spent before any record is read.
    assert refused.status_code == 429 and refused.json()["retry_after"] == int(refused.headers["retry-after"])
