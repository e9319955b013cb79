"""Per-tenant admission control against `ragline serve`: tenant A holding its LIMIT slots with slow chat streams
(a fake Claude that writes a token every 100 ms) gets 429 with Retry-After for its next search, chat or upload,
while tenant B is served at once and /health is never limited; a stream gives its slot back when its client leaves,
and a request waiting in A's queue takes that slot."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx
import pytest

from ragline.api.app import create_app
from ragline.config import Settings
from ragline.container import Container
from ragline_emulator.anthropic_server import FakeAnthropic
from tests.support import Server, ragline, wait_for_status

LIMIT = 2
QUEUE_SECONDS = 1.0
ANSWER = " ".join(f"token{n}" for n in range(600))  # a minute of answer at 0.1 s a token
PROMPT = {"title": "Billing", "text": "Invoices are due within 30 days of the invoice date."}
LIMITED_ROUTES = {
    ("post", "/v1/kb/search"),
    ("post", "/v1/kb/chat"),
    ("post", "/v1/kb/chat/stream"),
    ("post", "/v1/kb/documents"),
    ("put", "/v1/kb/uploads/{document_id}"),
}


@dataclass
class Served:
    url: str
    keys: dict[str, str]

    def client(self, tenant: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"x-api-key": self.keys[tenant]}, timeout=30, trust_env=False)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        server.script(answer=ANSWER, delta_interval=0.1)
        yield server


@pytest.fixture(scope="module")
def served(fake: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("admission")
    env = {
        "ANTHROPIC_API_KEY": fake.api_key,
        "ANTHROPIC_BASE_URL": fake.url,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        # Every question goes to the model (main's answer floor would let a weakly covered one abstain,
        # and an abstained answer opens no stream to hold a slot); ignored where the setting is absent.
        "RAGLINE_CHAT_ANSWER_FLOOR": "0",
        "RAGLINE_TENANT_MAX_CONCURRENT": str(LIMIT),
        "RAGLINE_TENANT_MAX_QUEUED": "1",
        "RAGLINE_TENANT_QUEUE_SECONDS": str(QUEUE_SECONDS),
    }
    keys = {
        tenant: ragline("keys", "create", "--tenant", tenant, "--data-dir", str(data_dir), env=env).strip()
        for tenant in ("tenant-a", "tenant-b")
    }
    server = Server(data_dir, env=env).start()
    try:
        served = Served(server.url, keys)
        for tenant in keys:
            with served.client(tenant) as client:
                accepted = client.post("/v1/kb/documents", json=PROMPT)
                assert accepted.status_code == 202, accepted.text
                wait_for_status(client, accepted.json()["data"]["document_id"], ("indexed",))
        yield served
    finally:
        server.stop()


@contextmanager
def open_stream(served: Served, tenant: str, number: int) -> Iterator[None]:
    """A chat stream of `tenant`, read up to its first token and held open until the block ends."""
    with served.client(tenant) as client:
        body = {"query": f"When are invoices due? (stream {number})", "mode": "keyword"}
        with client.stream("POST", "/v1/kb/chat/stream", json=body) as response:
            assert response.status_code == 200, response.read()
            # Keep the iterator: dropping a half-read one closes the response, and so the stream.
            lines = response.iter_lines()
            for line in lines:
                if line.startswith("data: {") and json.loads(line[len("data: ") :])["event"] == "message":
                    break
            yield


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body == {"error": "Too many requests", "message": body["message"], "code": 429, "retry_after": 1}


def search(served: Served, tenant: str, query: str = "When are invoices due?") -> tuple[httpx.Response, float]:
    with served.client(tenant) as client:
        started = time.monotonic()
        response = client.post("/v1/kb/search", json={"query": query, "mode": "keyword"})
        return response, time.monotonic() - started


def test_a_tenant_at_its_limit_gets_429_while_another_is_served(served: Served) -> None:
    with ExitStack() as streams:
        for number in range(LIMIT):
            streams.enter_context(open_stream(served, "tenant-a", number))

        # A's next search waits its QUEUE_SECONDS in A's queue (one place), then is refused...
        waiting: list[tuple[httpx.Response, float]] = []
        queued = threading.Thread(target=lambda: waiting.append(search(served, "tenant-a")))
        queued.start()
        time.sleep(0.2)
        # ...while the queue is full, A's next ones are refused at once, whatever the route...
        with served.client("tenant-a") as a:
            started = time.monotonic()
            assert_rate_limited(a.post("/v1/kb/search", json={"query": "Is shipping free?"}))
            assert_rate_limited(a.post("/v1/kb/chat", json={"query": "Is shipping free?"}))
            assert_rate_limited(a.post("/v1/kb/documents", files={"file": ("notes.txt", b"x " * 20_000)}))
            assert time.monotonic() - started < QUEUE_SECONDS
            assert a.get("/v1/kb/documents").status_code == 200  # the cheap routes are not limited
        # ...and B, who shares the server, never waits behind A's queue; nor does /health.
        answer, seconds = search(served, "tenant-b")
        assert answer.status_code == 200 and answer.json()["items"], answer.text
        assert seconds < QUEUE_SECONDS / 2, f"B waited {seconds:.2f} s"
        assert httpx.get(f"{served.url}/health", timeout=5, trust_env=False).status_code == 200

        queued.join(10)
        ((response, waited),) = waiting
        assert_rate_limited(response)
        assert QUEUE_SECONDS * 0.9 <= waited < QUEUE_SECONDS + 2, waited

    # The streams' clients left: their slots are free again.
    assert search(served, "tenant-a")[0].status_code == 200


def test_a_stream_keeps_its_slot_until_its_client_leaves_then_a_waiting_request_takes_it(served: Served) -> None:
    with ExitStack() as streams:
        for number in range(LIMIT):
            streams.enter_context(open_stream(served, "tenant-a", 10 + number))
        time.sleep(0.5)  # the streams go on: neither slot has come back by itself
        assert_rate_limited(search(served, "tenant-a")[0])

        waiting: list[tuple[httpx.Response, float]] = []
        queued = threading.Thread(target=lambda: waiting.append(search(served, "tenant-a", "Who pays invoices?")))
        queued.start()
        time.sleep(0.3)
        streams.close()  # both clients leave
        queued.join(10)
    ((response, waited),) = waiting
    assert response.status_code == 200, response.text
    assert waited < QUEUE_SECONDS, f"the waiting search took {waited:.2f} s"


def test_the_openapi_lists_429_with_retry_after_on_the_limited_routes_only(tmp_path) -> None:
    spec = create_app(Container(Settings(data_dir=tmp_path))).openapi()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if (method, path) in LIMITED_ROUTES:
                too_many = operation["responses"]["429"]
                assert too_many["headers"]["Retry-After"]["schema"] == {"type": "integer"}, (method, path)
                schema = too_many["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
                assert "retry_after" in spec["components"]["schemas"][schema]["properties"]
            else:
                assert "429" not in operation["responses"], (method, path)
