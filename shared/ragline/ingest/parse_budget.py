"""Parse documents in a child process, each under a time budget.

The parsers are Python (pypdf, bs4, re): input that makes one of them loop or backtrack would hold
the GIL, and so every request of the server, /health included, for as long as it runs, and a
thread cannot be interrupted. So documents are parsed in a child process, which is killed when a
document's parsing takes longer than its budget; the document then fails with a readable error.

The budget counts the time spent waiting for the parser, not the time the caller spends embedding
the blocks it already has. A child is kept for the next documents: starting one costs ~0.04 s
(and ~0.3 s more when it first meets a PDF or HTML page, as pypdf and bs4 load where they parse);
a document then costs 0.05-0.3 ms more than parsing in-process (2.5 ms for 5 MB of text).

The child is a fresh interpreter (`python -c`) talking over a socket pair, not a multiprocessing
Process: 'spawn' and 'forkserver' re-run the parent's main script in the child (an unguarded script
that ingests would start children forever) and start a resource-tracker process, and forking a
process that runs threads can deadlock the child. Nothing here needs /dev/shm, which AWS Lambda
lacks (multiprocessing's Queue, Pool and locks fail there).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from ragline.errors import DocumentParseError
from ragline.ingest.parsers import Block, ParsedDocument, parse

# A child that has not imported the parsers by then is broken, not slow.
STARTUP_TIMEOUT_SECONDS = 60.0
# After these messages the child has finished the document and waits for the next one.
_DOCUMENT_DONE = ("end", "parse_error", "crash")
_CHILD_MAIN = "import sys; from ragline.ingest.parse_budget import serve; serve(int(sys.argv[1]))"
# Every child this process started: killed at exit, so none outlives us parsing a document nobody waits for.
_started: weakref.WeakSet[_Child] = weakref.WeakSet()


class ParserCrashed(RuntimeError):
    """The parser raised something other than DocumentParseError (a bug); the message is its traceback."""


def serve(fd: int) -> None:
    """The child's main: parse each (data, content_type, filename) sent on the socket `fd` and
    stream the result back, until the parent closes its end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which then closes the socket
    conn = Connection(fd)
    try:
        conn.send(("ready",))
        while True:
            _parse_one(conn, conn.recv())
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the parent is gone


def _parse_one(conn: Connection, request: tuple[bytes, str, str | None]) -> None:
    try:
        parsed = parse(*request)
        conn.send(("parsed", parsed.title, parsed.page_count))
        for block in parsed.blocks:
            conn.send(("block", block))
        conn.send(("end",))
    except DocumentParseError as exc:
        conn.send(("parse_error", str(exc)))
    except (BrokenPipeError, ConnectionResetError):
        raise
    except Exception:  # a parser bug: the parent raises it, with this trace, and this child goes on
        conn.send(("crash", traceback.format_exc()))


class _Child:
    """One parser process and the parent's end of its socket; parses one document at a time."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        # The child finds ragline (and pypdf, bs4) where this process found them.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _CHILD_MAIN, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
            )
        _started.add(self)
        self.conn = Connection(ours.detach())
        self.timeout = self.left = 0.0
        try:
            started = self.conn.poll(STARTUP_TIMEOUT_SECONDS) and self.conn.recv() == ("ready",)
        except EOFError:
            started = False
        if not started:
            self.kill()
            raise ChildProcessError(f"the parser process did not start (exit code {self.process.returncode})")

    def request(self, data: bytes, content_type: str, filename: str | None, timeout_seconds: float) -> None:
        self.timeout = self.left = timeout_seconds
        self.conn.send((data, content_type, filename))

    def receive(self) -> tuple[Any, ...]:
        """The child's next message, waiting at most what is left of the budget."""
        started = time.monotonic()
        ready = self.conn.poll(max(self.left, 0.0))
        self.left -= time.monotonic() - started
        if not ready:
            self.kill()
            raise DocumentParseError(f"parsing took longer than {self.timeout:g} s")
        try:
            return self.conn.recv()
        except (EOFError, ConnectionResetError):
            self._reap()
            raise ChildProcessError(
                f"the parser process exited unexpectedly (exit code {self.process.returncode})"
            ) from None

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.conn.close()

    def _reap(self) -> None:
        """Kill a child whose socket closed, giving it a moment to exit by itself (for its exit code)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1.0)
        self.kill()


def _raise_failure(message: tuple[Any, ...]) -> None:
    if message[0] == "parse_error":
        raise DocumentParseError(message[1])
    if message[0] == "crash":
        raise ParserCrashed(message[1])
    raise ChildProcessError(f"the parser process sent {message[0]!r} out of turn")


class ParserProcesses:
    """Idle parser processes, one taken per document being parsed (so one per ingest thread at most)."""

    def __init__(self) -> None:
        self._idle: list[_Child] = []
        self._lock = threading.Lock()

    def parse(self, data: bytes, content_type: str, filename: str | None, timeout_seconds: float) -> ParsedDocument:
        """parsers.parse in a child process: the same result and errors, or DocumentParseError once
        parsing has taken longer than timeout_seconds (the child is killed)."""
        child = self._take()
        try:
            child.request(data, content_type, filename, timeout_seconds)
            message = child.receive()
        except BaseException:
            child.kill()
            raise
        if message[0] != "parsed":
            self._release(child, done=message[0] in _DOCUMENT_DONE)
            _raise_failure(message)
        _, title, page_count = message
        return ParsedDocument(title=title, page_count=page_count, blocks=self._blocks(child))

    def _blocks(self, child: _Child) -> Iterator[Block]:
        done = False
        try:
            while True:
                message = child.receive()
                if message[0] != "block":
                    done = message[0] in _DOCUMENT_DONE
                    if message[0] != "end":
                        _raise_failure(message)
                    return
                yield message[1]
        finally:
            # A caller that stopped early, or a child that failed, leaves it mid-document: never reused.
            self._release(child, done=done)

    def _take(self) -> _Child:
        with self._lock:
            while self._idle:
                child = self._idle.pop()
                if child.alive():
                    return child
                child.kill()
        return _Child()

    def _release(self, child: _Child, *, done: bool) -> None:
        if not done:
            child.kill()
            return
        with self._lock:
            self._idle.append(child)


# Processes are per interpreter, so is their pool.
_processes = ParserProcesses()


@atexit.register
def _kill_children() -> None:
    for child in list(_started):
        child.kill()


def parse_with_budget(data: bytes, content_type: str, filename: str | None, timeout_seconds: float) -> ParsedDocument:
    return _processes.parse(data, content_type, filename, timeout_seconds)
