"""``Ragline`` and ``AsyncRagline``: the same resources, over ``httpx.Client`` or ``httpx.AsyncClient``."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Union

import httpx

from ragline_client._core import (
    DEFAULT_MAX_RETRIES,
    PRESIGNED_UPLOAD_THRESHOLD,
    ClientConfig,
)
from ragline_client._transport import AsyncTransport, SyncTransport
from ragline_client.models import SearchResponse
from ragline_client.resources.answers import AsyncChat, Chat, search_call
from ragline_client.resources.documents import AsyncDocuments, AsyncJobs, Documents, Jobs
from ragline_client.resources.insight import (
    Analytics,
    AsyncAnalytics,
    AsyncHealthChecks,
    AsyncQueries,
    HealthChecks,
    Queries,
)
from ragline_client.resources.keys import AsyncAudit, AsyncKeys, Audit, Keys
from ragline_client.resources.knowledge_bases import AsyncKnowledgeBases, KnowledgeBases
from ragline_client.resources.webhooks import AsyncWebhooks, Webhooks

Timeout = Union[float, httpx.Timeout, None]


class Ragline:
    """A client of one Ragline server with one API key.

    ``api_key`` defaults to ``RAGLINE_API_KEY``, ``base_url`` to ``RAGLINE_URL`` (else ``ragline serve``'s
    http://127.0.0.1:8000). ``timeout`` (seconds, or an ``httpx.Timeout``) bounds each attempt, default 60 s;
    ``stream_timeout`` bounds a streamed answer's connection and each wait between its events (default read
    300 s). Failed attempts are retried ``max_retries`` times (see the README). ``http_client`` lets you
    bring your own ``httpx.Client`` (proxies, certificates); it is then yours to close.
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        timeout: Timeout = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        *,
        stream_timeout: Timeout = None,
        presigned_upload_threshold: int = PRESIGNED_UPLOAD_THRESHOLD,
        default_headers: Optional[Mapping[str, str]] = None,
        http_client: Optional[httpx.Client] = None,
    ) -> None:
        config = ClientConfig.resolve(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            stream_timeout=stream_timeout,
            max_retries=max_retries,
            presigned_upload_threshold=presigned_upload_threshold,
            default_headers=default_headers,
        )
        self._owns_http = http_client is None
        self._transport = SyncTransport(config, http_client or httpx.Client())
        self.documents = Documents(self._transport)
        self.jobs = Jobs(self._transport)
        self.chat = Chat(self._transport)
        self.knowledge_bases = KnowledgeBases(self._transport)
        self.webhooks = Webhooks(self._transport)
        self.keys = Keys(self._transport)
        self.audit = Audit(self._transport)
        self.queries = Queries(self._transport)
        self.analytics = Analytics(self._transport)
        self.health = HealthChecks(self._transport)

    @property
    def base_url(self) -> str:
        return self._transport.config.base_url

    @property
    def max_retries(self) -> int:
        return self._transport.config.max_retries

    def search(
        self,
        query: str,
        *,
        filters: Optional[Dict[str, Any]] = None,
        limit: Optional[int] = None,
        mode: Optional[str] = None,
        score_threshold: Optional[float] = None,
    ) -> SearchResponse:
        """Passages by meaning and keywords (``mode``: hybrid, semantic or keyword) within ``filters``."""
        return self._transport.request(
            search_call(query, filters=filters, limit=limit, mode=mode, score_threshold=score_threshold)
        )

    def close(self) -> None:
        if self._owns_http:
            self._transport.close()

    def __enter__(self) -> Ragline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRagline:
    """``Ragline`` for asyncio: the same arguments and resources, every request method awaited."""

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        timeout: Timeout = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        *,
        stream_timeout: Timeout = None,
        presigned_upload_threshold: int = PRESIGNED_UPLOAD_THRESHOLD,
        default_headers: Optional[Mapping[str, str]] = None,
        http_client: Optional[httpx.AsyncClient] = None,
    ) -> None:
        config = ClientConfig.resolve(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            stream_timeout=stream_timeout,
            max_retries=max_retries,
            presigned_upload_threshold=presigned_upload_threshold,
            default_headers=default_headers,
        )
        self._owns_http = http_client is None
        self._transport = AsyncTransport(config, http_client or httpx.AsyncClient())
        self.documents = AsyncDocuments(self._transport)
        self.jobs = AsyncJobs(self._transport)
        self.chat = AsyncChat(self._transport)
        self.knowledge_bases = AsyncKnowledgeBases(self._transport)
        self.webhooks = AsyncWebhooks(self._transport)
        self.keys = AsyncKeys(self._transport)
        self.audit = AsyncAudit(self._transport)
        self.queries = AsyncQueries(self._transport)
        self.analytics = AsyncAnalytics(self._transport)
        self.health = AsyncHealthChecks(self._transport)

    @property
    def base_url(self) -> str:
        return self._transport.config.base_url

    @property
    def max_retries(self) -> int:
        return self._transport.config.max_retries

    async def search(
        self,
        query: str,
        *,
        filters: Optional[Dict[str, Any]] = None,
        limit: Optional[int] = None,
        mode: Optional[str] = None,
        score_threshold: Optional[float] = None,
    ) -> SearchResponse:
        return await self._transport.request(
            search_call(query, filters=filters, limit=limit, mode=mode, score_threshold=score_threshold)
        )

    async def close(self) -> None:
        if self._owns_http:
            await self._transport.aclose()

    async def __aenter__(self) -> AsyncRagline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
