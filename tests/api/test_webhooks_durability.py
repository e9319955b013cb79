"""Pending webhook deliveries survive a restart and a SIGKILL of `ragline serve`: none is lost, and the
repeat carries the same webhook-id. The receiver fails every request until the server has gone down."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.support import Server, ragline
from tests.webhook_receivers import Receiver, Reply

ENV = {
    "RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
    "RAGLINE_WEBHOOK_RETRY_SECONDS": "0,2,2,2,2,2",
    "RAGLINE_WEBHOOK_TIMEOUT_SECONDS": "2",
}
EVENTS = 5


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "restart"])
def test_deliveries_pending_at_a_stop_are_sent_after_the_next_start(tmp_path, stop_signal: int) -> None:
    healthy = {"now": False}
    receiver = Receiver(lambda _n: Reply(200) if healthy["now"] else Reply(503, body=b"down for maintenance"))
    key = ragline("keys", "create", "--tenant", "d1", "--data-dir", str(tmp_path)).strip()
    server = Server(tmp_path, env=ENV).start()
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30) as client:
            created = client.post("/v1/webhooks", json={"url": receiver.url, "events": ["document.uploaded"]})
            webhook_id, secret = created.json()["id"], created.json()["secret"]
            for n in range(EVENTS):
                client.post("/v1/kb/documents", json={"text": f"durable event {n}", "title": f"d{n}"})
            receiver.wait_for(EVENTS)  # every event's first attempt failed: all are pending a retry
            failed_ids = {r.webhook_id for r in receiver.received}
            assert len(failed_ids) == EVENTS
    finally:
        server.stop(stop_signal)
    seen_before_restart = len(receiver.received)

    healthy["now"] = True
    server = Server(tmp_path, env=ENV).start()
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30) as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                deliveries = client.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["deliveries"]
                if len(deliveries) == EVENTS and all(d["status"] == "succeeded" for d in deliveries):
                    break
                time.sleep(0.2)
            assert [d["status"] for d in deliveries] == ["succeeded"] * EVENTS, deliveries
    finally:
        server.stop()
        receiver.close()

    after = receiver.received[seen_before_restart:]
    assert {r.webhook_id for r in after} == failed_ids  # the same ids: receivers dedupe on them
    assert len(receiver.verified(secret)) == len(receiver.received)
    for delivery in deliveries:
        assert delivery["attempts"][0]["status_code"] == 503 and delivery["attempts"][-1]["status_code"] == 200
