"""The only I/O of the client: send a ``Call`` with httpx (retrying as ``_core`` decides), sleep, and drive
``Flow``s and paginated lists. One class for ``httpx.Client``, one for ``httpx.AsyncClient``; everything
they do besides awaiting is in ``_core``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Callable, Iterator, List, Optional, TypeVar

import httpx

from ragline_client._core import Call, ClientConfig, Flow, Sleep, build_request, delay_after_error, delay_after_status
from ragline_client.errors import APIConnectionError, APITimeoutError, status_error

T = TypeVar("T")
P = TypeVar("P")
Item = TypeVar("Item")


def _connection_error(exc: httpx.TransportError, request: httpx.Request) -> APIConnectionError:
    where = f"{request.method} {request.url}"
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"{where} timed out ({type(exc).__name__})", request=request)
    return APIConnectionError(f"{where} failed: {exc or type(exc).__name__}", request=request)


class SyncTransport:
    def __init__(self, config: ClientConfig, http: httpx.Client) -> None:
        self.config = config
        self.http = http

    def send(self, call: Call[Any]) -> httpx.Response:
        """The call's successful answer (its body still unread for a stream); typed errors otherwise."""
        headers = call.headers_for(self.config)
        retry_number = 0
        while True:
            request = build_request(self.http, self.config, call, headers)
            try:
                response = self.http.send(request, stream=call.stream)
            except httpx.TransportError as exc:
                delay = delay_after_error(call, exc, retry_number, self.config.max_retries)
                if delay is None:
                    raise _connection_error(exc, request) from exc
            else:
                if response.is_success or response.status_code in call.accept:
                    return response
                if call.stream:
                    response.read()  # the error body, to read the error from
                    response.close()
                delay = delay_after_status(call, response, retry_number, self.config.max_retries)
                if delay is None:
                    raise status_error(response)
            retry_number += 1
            time.sleep(delay)

    def request(self, call: Call[T]) -> T:
        return call.parse(self.send(call))

    def run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = flow.send(None)
                else:
                    step = flow.send(self.request(step))
        except StopIteration as finished:
            return finished.value  # type: ignore[no-any-return]

    def paginate(self, page: Callable[[Optional[str]], Call[P]], items: Callable[[P], List[Item]]) -> Iterator[Item]:
        """Every item of a cursor-paged list, fetching each page when the one before is used up."""
        cursor: Optional[str] = None
        while True:
            answer = self.request(page(cursor))
            yield from items(answer)
            cursor = getattr(answer, "next_cursor", None)
            if not cursor:
                return

    def close(self) -> None:
        self.http.close()


class AsyncTransport:
    def __init__(self, config: ClientConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http

    async def send(self, call: Call[Any]) -> httpx.Response:
        headers = call.headers_for(self.config)
        retry_number = 0
        while True:
            request = build_request(self.http, self.config, call, headers)
            try:
                response = await self.http.send(request, stream=call.stream)
            except httpx.TransportError as exc:
                delay = delay_after_error(call, exc, retry_number, self.config.max_retries)
                if delay is None:
                    raise _connection_error(exc, request) from exc
            else:
                if response.is_success or response.status_code in call.accept:
                    return response
                if call.stream:
                    await response.aread()
                    await response.aclose()
                delay = delay_after_status(call, response, retry_number, self.config.max_retries)
                if delay is None:
                    raise status_error(response)
            retry_number += 1
            await asyncio.sleep(delay)

    async def request(self, call: Call[T]) -> T:
        return call.parse(await self.send(call))

    async def run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = flow.send(None)
                else:
                    step = flow.send(await self.request(step))
        except StopIteration as finished:
            return finished.value  # type: ignore[no-any-return]

    async def paginate(
        self, page: Callable[[Optional[str]], Call[P]], items: Callable[[P], List[Item]]
    ) -> AsyncIterator[Item]:
        cursor: Optional[str] = None
        while True:
            answer = await self.request(page(cursor))
            for item in items(answer):
                yield item
            cursor = getattr(answer, "next_cursor", None)
            if not cursor:
                return

    async def aclose(self) -> None:
        await self.http.aclose()
