"""Streaming a blocking generator (an answer read from the model over HTTP) to a client who may leave at any moment.

Starlette runs a sync generator one `next()` at a time on whichever worker thread is free and, when the client
leaves, simply stops asking: the generator stays suspended until the garbage collector closes it, on whatever thread
it happens to run. Meanwhile the model keeps writing (and billing) the answer, and the generator's cleanup, which
closes the HTTP response and so takes the connection pool's lock, can run on a thread that already holds that lock:
a deadlock that took every worker thread and then the event loop with it.

So each generator lives on a thread of its own, which pulls an item only when the consumer asks for one and closes
the generator itself as soon as the consumer stops, for whatever reason. A WebSocket route uses `iterate_in_thread`
the same way, inside `contextlib.aclosing`.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncGenerator, Generator
from contextlib import aclosing
from typing import Any, TypeVar

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

T = TypeVar("T")

_END = object()  # the generator is exhausted (StopIteration cannot travel through an asyncio future)


async def iterate_in_thread(items: Generator[T, None, None], *, name: str = "stream") -> AsyncGenerator[T, None]:
    """`items` one at a time, each `next()` on the same dedicated thread. When this async iterator is closed or its
    task cancelled, that thread closes `items` -- at once, or right after the `next()` it is blocked in returns."""
    loop = asyncio.get_running_loop()
    asks: queue.SimpleQueue[asyncio.Future[Any] | None] = queue.SimpleQueue()  # None: stop
    threading.Thread(target=_pump, args=(items, asks, loop), name=name, daemon=True).start()
    try:
        while True:
            answer: asyncio.Future[Any] = loop.create_future()
            asks.put(answer)
            item = await answer
            if item is _END:
                return
            yield item
    finally:
        asks.put(None)


def _pump(
    items: Generator[Any, None, None],
    asks: queue.SimpleQueue[asyncio.Future[Any] | None],
    loop: asyncio.AbstractEventLoop,
) -> None:
    try:
        while (answer := asks.get()) is not None:
            try:
                item = next(items)
            except StopIteration:
                _hand_over(loop, answer, _END, None)
                return
            except BaseException as exc:  # raised again by the consumer, in its own task
                _hand_over(loop, answer, None, exc)
                return
            if not _hand_over(loop, answer, item, None):
                return
    finally:
        items.close()


def _hand_over(
    loop: asyncio.AbstractEventLoop, answer: asyncio.Future[Any], item: Any, error: BaseException | None
) -> bool:
    """Resolve `answer` on the event loop's thread; False when the loop is closed (nobody will ever ask again)."""

    def resolve() -> None:
        if answer.done():  # cancelled: the consumer has gone
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(item)

    try:
        loop.call_soon_threadsafe(resolve)
    except RuntimeError:  # the event loop is closed
        return False
    return True


class ThreadedStreamingResponse(StreamingResponse):
    """A streamed response of a blocking generator, run by `iterate_in_thread` and closed the moment the response
    ends: finished, client gone (whether Starlette learns it by cancellation or by a failed send) or server stopping."""

    def __init__(self, content: Generator[str, None, None], **kwargs: Any) -> None:
        self._items = iterate_in_thread(content, name="response-stream")
        super().__init__(self._items, **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with aclosing(self._items):
            await super().__call__(scope, receive, send)
