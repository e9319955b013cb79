"""Run a producer (parsing and chunking) in a thread while the caller consumes (embedding).

onnxruntime releases the GIL while it runs, so pypdf's pure-Python parsing of the next pages
overlaps the embedding of the current ones. The queue is bounded: parsing never runs far ahead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import closing
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def grouped(items: Iterable[T], size: int) -> Iterator[list[T]]:
    group: list[T] = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield what `items` yields, produced one step ahead in a background thread.

    An exception in the producer is raised in the consumer; a consumer that stops early stops
    the producer.
    """
    # Groups of exactly one: the same producer thread, buffer and error hand-over.
    with closing(prefetch_groups(items, 1, 1, depth)) as groups:
        for group in groups:
            yield from group


def prefetch_groups(items: Iterable[T], min_size: int, max_size: int, depth: int | None = None) -> Iterator[list[T]]:
    """Groups of what `items` yields, produced in a background thread: each group waits for at least
    `min_size` items (fewer only at the end), then takes whatever else is already produced, up to
    `max_size`. So the consumer starts as soon as there is a batch's worth of work and never waits
    for a full group while the producer is behind, but gets big groups when the producer is ahead.
    At most `depth` items (default 2 × max_size) wait in the buffer."""
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth or 2 * max_size)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        done = False
        while not done:
            group: list[T] = []
            while len(group) < max_size:
                if len(group) < min_size:
                    item = buffer.get()
                else:
                    try:
                        item = buffer.get_nowait()
                    except queue.Empty:
                        break
                if item is _DONE:
                    done = True
                    break
                if isinstance(item, BaseException):
                    if group:  # what was produced before the error is still handed over first
                        yield group
                    raise item
                group.append(item)  # type: ignore[arg-type]
            if group:
                yield group
    finally:
        stop.set()
        thread.join(timeout=5)
