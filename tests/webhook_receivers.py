"""Real HTTP receivers on 127.0.0.1 for the webhook tests: each records what reached it and answers as told.

``Receiver(answer)`` starts a ThreadingHTTPServer on a free port; ``answer`` decides the reply to the n-th
request (see ``ok``, ``fail_then_ok``, ``always``, ``hang``, ``redirect``). ``verified(secret)`` checks
every request with the ``standardwebhooks`` package, as a user's receiver would.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass(frozen=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    hang: bool = False
    pause_seconds: float = 0.0


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival
    path: str = "/hook"

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


# Given the number of requests answered before this one (0 for the first).
Answer = Callable[[int], Reply]


def ok(status: int = 204) -> Answer:
    return lambda _n: Reply(status)


def always(status: int, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return lambda _n: Reply(status, headers, body)


def fail_then_ok(failures: int, status: int = 500) -> Answer:
    return lambda n: Reply(status, body=b"not yet") if n < failures else Reply(200, body=b"ok")


def statuses(*codes: int, pause_seconds: float = 0.0) -> Answer:
    """The n-th request gets ``codes[n]``; the last code repeats. Each answer after ``pause_seconds``."""
    return lambda n: Reply(codes[min(n, len(codes) - 1)], body=b"ok", pause_seconds=pause_seconds)


def hang() -> Answer:
    return lambda _n: Reply(200, hang=True)


def redirect(location: str) -> Answer:
    return lambda _n: Reply(302, (("location", location),))


class Receiver:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    n = len(receiver.received)
                    receiver.received.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, time.time(), self.path)
                    )
                reply = receiver.answer(n)
                if reply.hang:
                    receiver._release.wait(120)
                    return
                if reply.pause_seconds:
                    time.sleep(reply.pause_seconds)
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(reply.body)))
                self.send_header("connection", "close")
                try:
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up first (its timeout)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.json for r in self.received]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received)} requests reached the receiver, expected {count}")

    def wait_for_type(self, event_type: str, timeout: float = 30.0) -> Received:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for received in self.received:
                    if received.json["type"] == event_type:
                        return received
            time.sleep(0.05)
        raise AssertionError(f"no {event_type} reached the receiver; got {[e['type'] for e in self.events()]}")

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every request, verified as a receiver using ``standardwebhooks`` would (raises if one fails)."""
        with self._lock:
            received = list(self.received)
        return [Webhook(secret).verify(r.body, r.headers) for r in received]

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def webhook_receiver(*codes: int, pause_seconds: float = 0.0) -> Iterator[Receiver]:
    """A receiver answering ``codes`` in turn (200 if none), closed on exit."""
    receiver = Receiver(statuses(*(codes or (200,)), pause_seconds=pause_seconds))
    try:
        yield receiver
    finally:
        receiver.close()
