"""One real `ragline serve` for the SDK tests, and `both`: one test body run with ``Ragline`` and with ``AsyncRagline``.

A test asks for ``both`` and writes ``both(client.documents.get(id))``: with the sync client that is the
answer itself, with the async one the coroutine is run to its answer on the test's event loop. Iterators
(``both.all``) and streams (``both.events``) likewise.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx
import pytest
from ragline_client import AsyncRagline, Ragline

from tests.support import Server, ragline

TENANTS = ("s1", "s2")
# Small enough that a test can exceed it; big enough for every other upload of the suite.
UPLOAD_LIMIT = 2_000_000


@pytest.fixture(scope="session")
def sdk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("sdk-server")
    keys = {t: ragline("keys", "create", "--tenant", t, "--data-dir", str(data_dir)).strip() for t in TENANTS}
    # The CLI's remote-mode tests get a tenant of their own: other tests empty s1 and s2 with deletes
    # that finish in the background, which could take the CLI's documents away mid-test.
    keys["cli"] = ragline("keys", "create", "--tenant", "cli", "--data-dir", str(data_dir)).strip()
    keys["s1_search"] = ragline(
        "keys", "create", "--tenant", "s1", "--scopes", "search", "--data-dir", str(data_dir)
    ).strip()
    server = Server(
        data_dir,
        env={
            "ANTHROPIC_API_KEY": "",  # extractive answers
            "RAGLINE_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
            "RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",  # receivers on 127.0.0.1
            "RAGLINE_WEBHOOK_RETRY_SECONDS": "0,0.5,0.5",
            "RAGLINE_WEBHOOK_TIMEOUT_SECONDS": "2",
        },
    ).start()
    server.keys = keys  # type: ignore[attr-defined]
    yield server
    server.stop()


class Both:
    """Runs one test body with the sync or the async client (``kind``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.loop = asyncio.new_event_loop() if kind == "async" else None
        self._clients: list[Ragline | AsyncRagline] = []
        self._http_clients: list[httpx.Client | httpx.AsyncClient] = []

    def client(self, api_key: str, base_url: str, *, record: list[httpx.Request] | None = None, **options: Any) -> Any:
        """A client of ``base_url``; with ``record``, every HTTP request it sends is appended to that list."""
        if record is not None:
            if self.kind == "async":

                async def note(request: httpx.Request) -> None:
                    record.append(request)

                options["http_client"] = httpx.AsyncClient(event_hooks={"request": [note]})
            else:
                options["http_client"] = httpx.Client(event_hooks={"request": [record.append]})
            self._http_clients.append(options["http_client"])
        cls = AsyncRagline if self.kind == "async" else Ragline
        client = cls(api_key=api_key, base_url=base_url, **options)
        self._clients.append(client)
        return client

    def __call__(self, value: Any) -> Any:
        """The answer: ``value`` itself from the sync client; the async client's coroutine, run."""
        if self.kind == "async":
            assert inspect.isawaitable(value), f"the async client answered {type(value).__name__}, not an awaitable"
            assert self.loop is not None
            return self.loop.run_until_complete(value)
        assert not inspect.isawaitable(value), "the sync client answered an awaitable"
        return value

    def all(self, items: Iterable[Any] | AsyncIterator[Any]) -> list[Any]:
        """Every item of a (possibly paginated) list."""
        if self.kind == "async":
            assert hasattr(items, "__aiter__"), f"the async client's list is a {type(items).__name__}"

            async def collect() -> list[Any]:
                return [item async for item in items]  # type: ignore[union-attr]

            return self(collect())
        assert not hasattr(items, "__aiter__")
        return list(items)  # type: ignore[arg-type]

    def events(self, stream: Any, *, stop_after: int | None = None) -> list[Any]:
        """A stream's events read inside its context manager (``with`` / ``async with``), optionally only the
        first ``stop_after`` of them (leaving the block early)."""
        if self.kind == "async":

            async def collect() -> list[Any]:
                received = []
                async with stream as opened:
                    async for event in opened:
                        received.append(event)
                        if stop_after is not None and len(received) >= stop_after:
                            break
                return received

            return self(collect())
        received = []
        with stream as opened:
            for event in opened:
                received.append(event)
                if stop_after is not None and len(received) >= stop_after:
                    break
        return received

    def close(self) -> None:
        for client in self._clients:
            if isinstance(client, AsyncRagline):
                self(client.close())
            else:
                client.close()
        for http in self._http_clients:  # brought by the test: the clients leave them open
            if isinstance(http, httpx.AsyncClient):
                self(http.aclose())
            else:
                http.close()
        if self.loop is not None:
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def both(request: pytest.FixtureRequest) -> Iterator[Both]:
    runner = Both(request.param)
    yield runner
    runner.close()


@pytest.fixture
def s1(both: Both, sdk_server: Server) -> Any:
    """Tenant s1's client (all scopes), sync or async."""
    return both.client(sdk_server.keys["s1"], sdk_server.url)  # type: ignore[attr-defined]


@pytest.fixture
def s2(both: Both, sdk_server: Server) -> Any:
    """Tenant s2's client: another tenant."""
    return both.client(sdk_server.keys["s2"], sdk_server.url)  # type: ignore[attr-defined]
