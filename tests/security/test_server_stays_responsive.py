"""End to end, against `ragline serve` on 127.0.0.1: adversarial uploads are ingested (or fail
within the parse budget) while /health keeps answering within a second. Before, a 2 KB Markdown
file with a padded heading line froze every route for 38 s."""

from __future__ import annotations

import threading
import time

import httpx

from ragline_bench.adversarial import PADDED_HEADING, PADDED_HEADINGS, SLOW_HTML
from tests.support import Server, ragline, wait_for_status


class HealthProbe(threading.Thread):
    """GET /health every 0.1 s until stopped, keeping each answer's latency."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self.statuses: set[int] = set()
        self.stopped = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stopped.is_set():
                started = time.monotonic()
                self.statuses.add(client.get(f"{self.url}/health").status_code)
                self.latencies.append(time.monotonic() - started)
                self.stopped.wait(0.1)


def test_health_answers_within_a_second_while_adversarial_uploads_are_ingested(tmp_path):
    data_dir = tmp_path / "server"
    key = ragline("keys", "create", "--tenant", "t1", "--data-dir", str(data_dir)).strip()
    server = Server(data_dir, env={"RAGLINE_PARSE_TIMEOUT_SECONDS": "2"}).start()
    probe = HealthProbe(server.url)
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60) as client:
            probe.start()
            ids = {}
            for name, data in [("padded.md", PADDED_HEADING), ("many.md", PADDED_HEADINGS), ("slow.html", SLOW_HTML)]:
                response = client.post("/v1/kb/documents", files={"file": (name, data)})
                assert response.status_code == 202, response.text
                ids[name] = response.json()["data"]["document_id"]
            final = {name: wait_for_status(client, document_id) for name, document_id in ids.items()}
    finally:
        probe.stopped.set()
        probe.join(30)
        server.stop()
    assert final["padded.md"]["status"] == "indexed" and final["padded.md"]["title"] == "a" + " " * 2000 + "x"
    assert final["many.md"]["status"] == "indexed" and final["many.md"]["chunk_count"] >= 1
    assert final["slow.html"]["status"] == "failed"
    assert final["slow.html"]["error"] == "parsing took longer than 2 s"
    assert len(probe.latencies) >= 10 and probe.statuses == {200}
    assert max(probe.latencies) < 1.0, sorted(probe.latencies)[-5:]
