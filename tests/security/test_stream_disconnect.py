"""Clients that leave a chat stream mid-answer: the answer ends upstream at once, and a storm of them stalls nothing.

`ragline serve` (a subprocess) answers with "Claude", here a slow fake of the Messages API that notices the moment
ragline closes its connection. Rounds of more clients at once than the server has worker threads each leave after the first token.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from ragline_emulator.anthropic_server import FakeAnthropic
from tests.support import Server, ragline, wait_for_status

STREAMS = 50  # at once: more than the 40 threads of the server's worker pool
ROUNDS = 3  # the abandoned generators of the first 100-150 streams were enough to deadlock the old server
DELTA_INTERVAL = 0.1  # seconds between two tokens of the fake model
ANSWER = " ".join(f"token{n}" for n in range(300))  # 30 s of answer unless somebody stops it
CLOSE_WITHIN = 1.0  # seconds from a client leaving to ragline closing its upstream connection
HEALTH_WITHIN = 1.0
STOP_WITHIN = 5.0  # seconds from SIGTERM to the server's exit


@dataclass
class Served:
    server: Server
    api_key: str


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(scope="module")
def served(fake: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("stream-disconnect")
    env = {
        "ANTHROPIC_API_KEY": fake.api_key,
        "ANTHROPIC_BASE_URL": fake.url,
        "RAGLINE_ANSWER_CACHE_ENABLED": "false",  # every stream here must reach the model
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        # Every question goes to the model, whatever its evidence: the numbered questions below are not
        # all covered by the document, and an abstained answer never opens an upstream stream.
        "RAGLINE_CHAT_ANSWER_FLOOR": "0",
        # One tenant's storm of streams is the point here, not per-tenant admission (test_tenant_admission.py).
        "RAGLINE_TENANT_MAX_CONCURRENT": "0",
    }
    api_key = ragline("keys", "create", "--tenant", "t1", "--data-dir", str(data_dir), env=env).strip()
    server = Server(data_dir, env=env).start()
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": api_key}, timeout=30, trust_env=False) as client:
            accepted = client.post(
                "/v1/kb/documents", json={"title": "Billing", "text": "Invoices are due within 30 days of the date."}
            )
            assert accepted.status_code == 202, accepted.text
            wait_for_status(client, accepted.json()["data"]["document_id"], ("indexed",))
        yield Served(server, api_key)
    finally:
        server.stop(timeout=STOP_WITHIN)


def leave_after_first_token(served: Served, number: int) -> float:
    """Stream one answer, hang up after its first token; the time.monotonic() of hanging up."""
    body = {"query": f"When are invoices due? (client {number})", "mode": "keyword"}
    with httpx.Client(
        base_url=served.server.url, headers={"x-api-key": served.api_key}, timeout=10, trust_env=False
    ) as c:
        with c.stream("POST", "/v1/kb/chat/stream", json=body) as response:
            assert response.status_code == 200, response.read()
            for line in response.iter_lines():
                if line.startswith("data: {") and json.loads(line[len("data: ") :])["event"] == "message":
                    break
            else:
                raise AssertionError("the stream ended before its first token")
        # Leaving the block closed the half-read response, and so the connection.
        return time.monotonic()


class HealthProbe:
    """GET /health every 100 ms on a thread of its own; the slowest answer, a timeout counting as infinite."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-probe", daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5, trust_env=False) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    ok = client.get("/health").status_code == 200
                except httpx.TransportError:
                    ok = False
                self.latencies.append(time.monotonic() - started if ok else float("inf"))
                self._stop.wait(0.1)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_clients_leaving_mid_answer_close_upstream_at_once_and_stall_nothing(
    served: Served, fake: FakeAnthropic
) -> None:
    fake.script(answer=ANSWER, delta_interval=DELTA_INTERVAL)
    left: dict[int, float] = {}
    stalled: list[str] = []
    with HealthProbe(served.server.url) as during:
        for first in range(0, ROUNDS * STREAMS, STREAMS):
            numbers = range(first, first + STREAMS)
            with ThreadPoolExecutor(STREAMS) as pool:
                outcomes = [pool.submit(leave_after_first_token, served, number) for number in numbers]
            for number, outcome in zip(numbers, outcomes, strict=True):
                if outcome.exception() is None:
                    left[number] = outcome.result()
                else:
                    stalled.append(f"client {number}: {outcome.exception()!r}")
        time.sleep(CLOSE_WITHIN + 0.5)  # let the last upstream connections close
    assert not stalled, f"{len(stalled)} clients got no first token, e.g. {stalled[:3]}"
    assert len(fake.streams) == ROUNDS * STREAMS

    # (a) every upstream connection closed within CLOSE_WITHIN of its client leaving, and the fake stopped sending
    close_delays = []
    for record in fake.streams:
        number = int(record.request.user_text.rsplit("(client ", 1)[1].split(")", 1)[0])
        assert not record.finished, f"client {number}'s answer was generated to the end after the client left"
        assert record.client_closed_at is not None, f"client {number}'s upstream connection was never closed"
        close_delays.append(record.client_closed_at - left[number])
    assert max(close_delays) < CLOSE_WITHIN, f"upstream closed {max(close_delays):.2f} s after the client left"
    assert max(r.deltas_sent for r in fake.streams) <= CLOSE_WITHIN / DELTA_INTERVAL + 2

    # (b) /health kept answering, during the storm and after it
    assert during.latencies, "the health probe never ran"
    assert max(during.latencies) < HEALTH_WITHIN, f"/health took up to {max(during.latencies):.2f} s in the storm"
    started = time.monotonic()
    assert httpx.get(f"{served.server.url}/health", timeout=5, trust_env=False).status_code == 200
    assert time.monotonic() - started < HEALTH_WITHIN

    # (c) SIGTERM stops the server promptly
    process = served.server.process
    assert process is not None
    started = time.monotonic()
    process.terminate()
    try:
        process.wait(STOP_WITHIN)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ragline serve still runs {STOP_WITHIN} s after SIGTERM")
    print(
        f"upstream closed {min(close_delays):.3f}-{max(close_delays):.3f} s after the client left; "
        f"/health in {max(during.latencies) * 1000:.0f} ms at worst over {len(during.latencies)} probes; "
        f"exit {time.monotonic() - started:.2f} s after SIGTERM"
    )
