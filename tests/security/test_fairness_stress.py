"""One tenant cannot stall another: against `ragline serve` on 127.0.0.1, tenant A uploads adversarial
files (ragline_bench.adversarial: backtracking bait, quadratic and deeply nested HTML), a big text
file, and opens chat streams it drops after the first bytes, from background threads, while
tenant B's GET /health and POST /v1/kb/search keep answering: B's p99 under a second, no 5xx for
either tenant, and A's flood really ran.

It fails if a parse runs on the event loop (SLOW_HTML alone holds it for minutes) or if ingestion
holds a lock searches need while it parses or embeds. `ragline bench fairness` measures the same
flood at full size and compares B's latencies with a quiet server.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import httpx
import pytest

from ragline.background import background_services
from ragline.worker import IngestWorker
from ragline_bench.common import percentile
from ragline_bench.fairness import Flood
from tests.support import Server, ragline, wait_for_status

FLOOD_SECONDS = 15.0
P99_WITHIN = 1.0  # seconds
QUERIES = ["When are invoices due?", "How long do refunds take?", "Is shipping free?", "Who answers support calls?"]
CORPUS = {
    "Billing": "Invoices are due within 30 days of the invoice date. Late invoices accrue 2% interest per month.",
    "Returns": "Refunds take 5 days once the parcel is back in our warehouse. Returns are free within 30 days.",
    "Shipping": "Shipping is free for orders over 50 euros; smaller orders pay a flat 4.90 euros.",
    "Support": "Support calls are answered by the on-call engineer from 8 am to 8 pm on working days.",
}


class TenantB(threading.Thread):
    """GET /health and POST /v1/kb/search in turn, back to back, until stopped; each answer's latency."""

    def __init__(self, url: str, api_key: str) -> None:
        super().__init__(name="tenant-b", daemon=True)
        self.url = url
        self.api_key = api_key
        self.latencies: dict[str, list[float]] = {"health": [], "search": []}
        self.answers: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        with httpx.Client(
            base_url=self.url, headers={"x-api-key": self.api_key}, timeout=30, trust_env=False
        ) as client:
            number = 0
            while not self.stopped.is_set():
                for route in ("health", "search"):
                    started = time.monotonic()
                    try:
                        if route == "health":
                            answer = str(client.get("/health").status_code)
                        else:
                            query = f"{QUERIES[number % len(QUERIES)]} ({number})"  # never a cached query
                            answer = str(client.post("/v1/kb/search", json={"query": query}).status_code)
                    except httpx.TransportError as exc:
                        answer = type(exc).__name__
                    self.latencies[route].append(time.monotonic() - started)
                    self.answers.append(answer)
                number += 1
                self.stopped.wait(0.02)


@pytest.mark.timeout(60)
def test_a_tenant_flooding_the_server_does_not_stall_another_tenant(tmp_path):
    data_dir = tmp_path / "server"
    keys = {
        tenant: ragline("keys", "create", "--tenant", tenant, "--data-dir", str(data_dir)).strip()
        for tenant in ("tenant-a", "tenant-b")
    }
    server = Server(data_dir, env={"RAGLINE_PARSE_TIMEOUT_SECONDS": "5"}).start()
    try:
        with httpx.Client(
            base_url=server.url, headers={"x-api-key": keys["tenant-b"]}, timeout=30, trust_env=False
        ) as client:
            ids = []
            for title, text in CORPUS.items():
                accepted = client.post("/v1/kb/documents", json={"title": title, "text": text})
                assert accepted.status_code == 202, accepted.text
                ids.append(accepted.json()["data"]["document_id"])
            for document_id in ids:
                wait_for_status(client, document_id, ("indexed",), timeout=30)
        b = TenantB(server.url, keys["tenant-b"])
        flood = Flood(server.url, keys["tenant-a"], adversarial=2, big=1, streams=2, big_mb=5, timeout=30)
        flood.start()
        b.start()
        time.sleep(FLOOD_SECONDS)
        b.stopped.set()
        a = flood.stop(timeout=20)
        b.join(20)
    finally:
        server.stop()

    server_errors_b = [answer for answer in b.answers if not answer.startswith(("2", "4"))]
    summary = {
        route: (len(seconds), round(percentile(seconds, 50) * 1000), round(percentile(seconds, 99) * 1000))
        for route, seconds in b.latencies.items()
    }
    print(f"tenant B (requests, p50 ms, p99 ms): {summary}; tenant A: {a['requests']}, answers {a['answers']}")
    assert all(a["requests"][kind] > 0 for kind in ("adversarial", "big", "stream")), a
    assert a["answers"]["adversarial"].get("202", 0) > 0 and a["answers"]["stream"].get("200", 0) > 0, a
    assert a["server_errors"] == 0, a
    assert not server_errors_b, f"tenant B got {server_errors_b[:5]}"
    assert set(b.answers) == {"200"}, set(b.answers)
    for route, seconds in b.latencies.items():
        assert len(seconds) >= 20, f"tenant B sent only {len(seconds)} {route} requests"
        assert percentile(seconds, 99) < P99_WITHIN, f"{route}: p99 {percentile(seconds, 99):.2f} s, {summary}"


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are Linux's")
def test_ingest_threads_run_below_the_request_threads_with_a_model_session_of_their_own(local):
    world = local(ingest_nice=7)
    background = background_services(world.container)
    (worker,) = [service for service in background.services if isinstance(service, IngestWorker)]
    assert worker.ingest is not world.container.ingest  # its embedder will be built by the ingest thread
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    worker.start()
    try:
        (thread,) = worker._threads
        deadline = time.monotonic() + 5
        while os.getpriority(os.PRIO_PROCESS, thread.native_id) == base and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == min(base + 7, 19)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
    finally:
        worker.stop()


def test_with_nice_0_ingest_threads_share_the_servers_session(local):
    world = local(ingest_nice=0)
    (worker,) = [s for s in background_services(world.container).services if isinstance(s, IngestWorker)]
    assert worker.ingest is world.container.ingest and worker.nice == 0
