"""The local webhook dispatcher with its SQLite store and the real sender, against receivers on 127.0.0.1:
deliveries pending in SQLite survive a restart, at most ``per_webhook`` attempts run at once per endpoint,
and the same event fanned out twice is delivered once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ragline.background import _webhook_dispatcher
from ragline.config import Settings
from ragline.container import Container
from ragline.events import event_envelope

TENANT = "t1"


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay: float = 0.0) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["content-length"]))
                with receiver.lock:
                    receiver.running += 1
                    receiver.most = max(receiver.most, receiver.running)
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.running -= 1
                    receiver.ids[self.headers["webhook-id"]] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.delay = delay
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.ids: Counter[str] = Counter()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while sum(self.ids.values()) < count and time.monotonic() < deadline:
            time.sleep(0.02)


def _container(data_dir: Path) -> Container:
    return Container(Settings(data_dir=data_dir, backend="local", webhooks_allow_private_targets=True))


@pytest.fixture
def receivers() -> Iterator[list[_Receiver]]:
    made: list[_Receiver] = []
    yield made
    for receiver in made:
        receiver.shutdown()
        receiver.server_close()


def test_pending_deliveries_are_sent_after_a_restart_each_once(tmp_path: Path, receivers: list[_Receiver]) -> None:
    receivers += [_Receiver(), _Receiver()]
    first = _container(tmp_path)
    for receiver in receivers:
        first.webhooks.create(TENANT, receiver.url, ["*"], None, True)
    for n in range(30):  # no dispatcher running: the deliveries wait in SQLite
        first.events.publish("document.indexed", TENANT, {"document_id": f"doc_{n}"})
    time.sleep(0.2)
    assert all(not r.ids for r in receivers)

    second = _container(tmp_path)  # another process's view of the same data directory
    dispatcher = _webhook_dispatcher(second)
    dispatcher.start()
    try:
        for receiver in receivers:
            receiver.wait_for(30)
        time.sleep(0.3)
    finally:
        dispatcher.stop()
    for receiver in receivers:
        assert len(receiver.ids) == 30 and set(receiver.ids.values()) == {1}


def test_at_most_two_attempts_at_once_per_endpoint_and_a_repeated_event_adds_nothing(
    tmp_path: Path, receivers: list[_Receiver]
) -> None:
    receivers += [_Receiver(delay=0.05), _Receiver()]
    container = _container(tmp_path)
    for receiver in receivers:
        container.webhooks.create(TENANT, receiver.url, ["*"], None, True)
    dispatcher = _webhook_dispatcher(container)
    dispatcher.start()
    try:
        events = [event_envelope("document.indexed", TENANT, {"document_id": f"doc_{n}"}) for n in range(40)]
        for event in events:
            assert len(container.webhooks.fan_out(event)) == 2
        assert container.webhooks.fan_out(events[0]) == []  # the same event again: already recorded
        for receiver in receivers:
            receiver.wait_for(40)
        time.sleep(0.3)
    finally:
        dispatcher.stop()
    slow, fast = receivers
    assert slow.most == 2  # the cap, reached and never passed
    assert fast.most <= 2
    for receiver in receivers:
        assert len(receiver.ids) == 40 and set(receiver.ids.values()) == {1}
