"""iterate_in_thread: a blocking generator runs, and is closed, on one thread of its own, as soon as the consumer stops."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field

import pytest
from starlette.requests import ClientDisconnect

from ragline.api.streaming import ThreadedStreamingResponse, iterate_in_thread

CLOSE_WITHIN = 2.0  # seconds; generous for a loaded machine, the close itself takes microseconds


@dataclass
class Watched:
    """A generator of `count` items that records which threads ran its steps and its close."""

    count: int = 3
    delay: float = 0.0  # seconds each item takes, like a token from a slow model
    fail_at: int | None = None
    pulled: int = 0
    threads: set[int] = field(default_factory=set)
    closed_on: int | None = None
    closed: threading.Event = field(default_factory=threading.Event)

    def items(self) -> Generator[str, None, None]:
        try:
            for n in range(self.count):
                self.threads.add(threading.get_ident())
                time.sleep(self.delay)
                if n == self.fail_at:
                    raise ValueError(f"item {n} failed")
                self.pulled += 1
                yield f"item {n}"
        finally:
            self.closed_on = threading.get_ident()
            self.closed.set()


def test_items_arrive_in_order_all_pulled_and_closed_on_one_thread_that_is_not_the_loops() -> None:
    watched = Watched(count=5)

    async def consume() -> list[str]:
        return [item async for item in iterate_in_thread(watched.items())]

    assert asyncio.run(consume()) == [f"item {n}" for n in range(5)]
    assert watched.closed.wait(CLOSE_WITHIN)
    assert len(watched.threads) == 1 and watched.closed_on in watched.threads
    assert watched.closed_on != threading.get_ident()


def test_a_consumer_that_stops_early_closes_the_generator_on_its_thread_and_pulls_nothing_more() -> None:
    watched = Watched(count=100)

    async def consume() -> None:
        items = iterate_in_thread(watched.items())
        assert await anext(items) == "item 0"
        await items.aclose()

    asyncio.run(consume())
    assert watched.closed.wait(CLOSE_WITHIN)
    assert watched.pulled == 1
    assert watched.threads == {watched.closed_on}


def test_cancelling_the_consumer_mid_item_closes_the_generator_once_that_item_is_made() -> None:
    watched = Watched(count=100, delay=0.3)

    async def consume() -> None:
        async def read_all() -> None:
            async for _ in iterate_in_thread(watched.items()):
                pass

        task = asyncio.create_task(read_all())
        await asyncio.sleep(0.45)  # the second item is being made
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(consume())
    assert watched.closed.wait(CLOSE_WITHIN)
    assert watched.pulled == 2, "the item in progress finishes; no other is asked for"
    assert watched.threads == {watched.closed_on}


def test_an_error_in_the_generator_reaches_the_consumer() -> None:
    watched = Watched(count=5, fail_at=2)

    async def consume() -> list[str]:
        got = []
        with pytest.raises(ValueError, match="item 2 failed"):
            async for item in iterate_in_thread(watched.items()):
                got.append(item)
        return got

    assert asyncio.run(consume()) == ["item 0", "item 1"]
    assert watched.closed.wait(CLOSE_WITHIN)


def test_the_response_closes_its_generator_when_sending_fails() -> None:
    """ASGI 2.4 servers report a gone client as an error from send, not by cancelling the response."""
    watched = Watched(count=100)
    response = ThreadedStreamingResponse(watched.items(), media_type="text/plain")
    sent: list[dict] = []

    async def receive() -> dict:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message.get("body"):
            raise OSError("the client has gone")
        sent.append(message)

    async def serve() -> bool:
        with pytest.raises(ClientDisconnect):
            await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
        # Still inside the event loop, whose shutdown would close every async generator left open.
        return await asyncio.to_thread(watched.closed.wait, CLOSE_WITHIN)

    assert asyncio.run(serve()), "the generator was left open"
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert watched.pulled == 1
