"""Per-tenant admission control: one tenant cannot take every core from the others.

The expensive routes (search, chat, the chat stream, uploads: `LIMITED_ROUTES`) may run at most
``tenant_max_concurrent`` requests per tenant at once. A tenant's next one waits in that tenant's own
queue (at most ``tenant_max_queued`` requests, at most ``tenant_queue_seconds``), so another tenant
never waits behind it; past either bound it is answered **429** with ``Retry-After``. A stream holds
its slot until its response ends or its client leaves. A tenant's uploads are also read at most
``tenant_upload_bytes_per_second`` (all its uploads together): reading, hashing and storing a file
costs CPU in proportion to its bytes. ``GET /health`` and the cheap routes are never limited.

`TenantSlots` is the policy, pure and synchronous (table-tested); `TenantAdmission` holds one server's
slots on its event loop; `AdmissionMiddleware` applies it to the HTTP requests: it learns the tenant from
the API key (or the API Gateway authorizer's context, or a presigned upload's token) before the route
reads the body, waits on the event loop without holding a thread, and releases the slot whatever way the
response ends. HTTP middlewares never see a WebSocket, so the WebSocket chat takes a slot of the same
`TenantAdmission` for each query it answers (`TenantAdmission.slot`), as a chat stream does.

On Lambda each execution environment serves one request at a time, so this never queues there:
per-tenant fairness deployed comes from API Gateway's usage plan (throttling per API key) and the
functions' reserved concurrency.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragline.errors import RaglineError, TooManyRequests

if TYPE_CHECKING:
    from ragline.config import Settings
    from ragline.container import Container

log = logging.getLogger(__name__)

# (method, path pattern): the routes that cost CPU (an embedding, a retrieval, reading and hashing a
# file) or hold a connection for long (a chat stream). Everything else answers from the metadata store.
# The local receiver of presigned uploads: its token, not an API key, names the tenant.
UPLOAD_RECEIVER = re.compile(r"/v1/kb/uploads/(?P<document_id>[^/]+)")
LIMITED_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("POST", re.compile(r"/v1/kb/search")),
    ("POST", re.compile(r"/v1/kb/chat")),
    ("POST", re.compile(r"/v1/kb/chat/stream")),
    ("POST", re.compile(r"/v1/kb/documents")),
    ("PUT", UPLOAD_RECEIVER),
)


# The limited routes whose body is a file (or a text document): their bytes are read at a bounded rate.
UPLOAD_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("POST", re.compile(r"/v1/kb/documents")),
    ("PUT", UPLOAD_RECEIVER),
)


def is_upload(method: str, path: str) -> bool:
    """Whether ``method path`` uploads a document, whose bytes count against the tenant's upload rate."""
    path = path.rstrip("/") or "/"
    return any(method == m and pattern.fullmatch(path) for m, pattern in UPLOAD_ROUTES)


def is_limited(method: str, path: str) -> bool:
    """Whether a request to ``method path`` takes one of its tenant's slots."""
    path = path.rstrip("/") or "/"
    return any(method == m and pattern.fullmatch(path) for m, pattern in LIMITED_ROUTES)


def default_max_concurrent(cpus: int | None = None) -> int:
    """One per core, at least two: a tenant cannot queue more CPU work than the machine has cores, and
    can still keep two chat streams open. (Half the cores measured no fairer once uploads are paced.)"""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(2, cpus)


class Decision(Enum):
    ADMIT = "admit"  # runs now, holding a slot
    WAIT = "wait"  # queued: granted later by a release, unless it gives up first
    REFUSE = "refuse"  # the tenant's queue is full: 429 at once


@dataclass
class _Tenant:
    running: int = 0
    waiting: deque[Hashable] = field(default_factory=deque)


class TenantSlots:
    """At most ``limit`` requests running per tenant; up to ``max_queued`` more wait, first come first
    served, in a queue of the tenant's own. A release hands the slot straight to the tenant's next
    waiter, so a late arrival cannot overtake the queue. Thread-safe; waiters are opaque tokens."""

    def __init__(self, limit: int, max_queued: int) -> None:
        if limit < 1 or max_queued < 0:
            raise ValueError("limit must be at least 1 and max_queued at least 0")
        self.limit = limit
        self.max_queued = max_queued
        self._tenants: dict[str, _Tenant] = {}
        self._lock = threading.Lock()

    def request(self, tenant: str, waiter: Hashable) -> Decision:
        with self._lock:
            state = self._tenants.setdefault(tenant, _Tenant())
            if state.running < self.limit and not state.waiting:
                state.running += 1
                return Decision.ADMIT
            if len(state.waiting) < self.max_queued:
                state.waiting.append(waiter)
                return Decision.WAIT
            self._forget_if_idle(tenant, state)
            return Decision.REFUSE

    def release(self, tenant: str) -> Hashable | None:
        """End one running request; the waiter now granted its slot (it is running from now on), if any."""
        with self._lock:
            state = self._tenants.get(tenant)
            if state is None or state.running == 0:
                raise RuntimeError(f"release without a running request for tenant {tenant!r}")
            if state.waiting:
                return state.waiting.popleft()  # the slot passes on: running stays the same
            state.running -= 1
            self._forget_if_idle(tenant, state)
            return None

    def abandon(self, tenant: str, waiter: Hashable) -> bool:
        """A waiter gives up (its wait is over). True: it left the queue; False: it was granted a slot
        meanwhile, so it holds one and must run (or release it)."""
        with self._lock:
            state = self._tenants.get(tenant)
            if state is None or waiter not in state.waiting:
                return False
            state.waiting.remove(waiter)
            self._forget_if_idle(tenant, state)
            return True

    def running(self, tenant: str) -> int:
        with self._lock:
            state = self._tenants.get(tenant)
            return state.running if state else 0

    def waiting(self, tenant: str) -> int:
        with self._lock:
            state = self._tenants.get(tenant)
            return len(state.waiting) if state else 0

    def tenants(self) -> int:
        """How many tenants have requests running or waiting (idle tenants are forgotten)."""
        with self._lock:
            return len(self._tenants)

    def _forget_if_idle(self, tenant: str, state: _Tenant) -> None:
        if state.running == 0 and not state.waiting:
            del self._tenants[tenant]


class ByteRate:
    """Each tenant's upload bytes, read at most ``rate`` bytes/s on average with a burst of ``burst``
    bytes (GCRA, a token bucket in one number: when the tenant's bytes read so far would be paid
    off). `delay` says how long to wait before reading past a piece; pure, given the clock."""

    IDLE_FORGET_SECONDS = 60.0

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 0:
            raise ValueError("rate must be positive and burst at least 0")
        self.rate = rate
        self.burst = burst
        self._paid_off: dict[str, float] = {}  # tenant → when its bytes so far are paid off
        self._lock = threading.Lock()

    def delay(self, tenant: str, size: int, now: float) -> float:
        """Account ``size`` more bytes of ``tenant`` at ``now``; the seconds to wait before the next read."""
        with self._lock:
            paid_off = max(self._paid_off.get(tenant, now), now) + size / self.rate
            self._paid_off[tenant] = paid_off
            if len(self._paid_off) > 1024:
                self._forget_idle(now)
            return max(0.0, paid_off - now - self.burst / self.rate)

    def tenants(self) -> int:
        with self._lock:
            return len(self._paid_off)

    def _forget_idle(self, now: float) -> None:
        for tenant in [t for t, paid_off in self._paid_off.items() if paid_off < now - self.IDLE_FORGET_SECONDS]:
            del self._paid_off[tenant]


@dataclass(frozen=True)
class AdmissionLimits:
    max_concurrent: int  # per tenant; 0: no admission control
    max_queued: int
    queue_seconds: float
    retry_after_seconds: int
    upload_bytes_per_second: int = 0  # per tenant, over all its uploads at once; 0: unbounded

    @classmethod
    def from_settings(cls, settings: Settings) -> AdmissionLimits:
        limit = settings.tenant_max_concurrent
        limit = default_max_concurrent() if limit is None else limit
        return cls(
            max_concurrent=limit,
            max_queued=settings.tenant_max_queued,
            queue_seconds=settings.tenant_queue_seconds,
            retry_after_seconds=max(1, math.ceil(settings.tenant_queue_seconds)),
            upload_bytes_per_second=settings.tenant_upload_bytes_per_second,
        )


def tenant_busy(limits: AdmissionLimits) -> TooManyRequests:
    """The refusal of a request over its tenant's slots and queue (429, with ``retry_after``)."""
    seconds = limits.retry_after_seconds
    return TooManyRequests(
        f"this tenant already has {limits.max_concurrent} searches, chats or uploads running "
        f"and others waiting; retry after {seconds} s",
        retry_after=seconds,
    )


def too_many_requests(limits: AdmissionLimits) -> JSONResponse:
    """The 429: the API's error body with ``retry_after``, and the same delay in ``Retry-After``."""
    refusal = tenant_busy(limits)
    return JSONResponse(refusal.body(), status_code=429, headers={"Retry-After": str(refusal.retry_after)})


def tenant_resolver(container: Container) -> Callable[[Scope], str | None]:
    """The tenant a request will be served as, or None when the route will refuse it anyway (no or a
    bad key, a bad upload token). Blocking (a metadata-store read): call it on a worker thread."""
    from ragline.api.auth import current_principal

    def tenant_of(scope: Scope) -> str | None:
        try:
            match = UPLOAD_RECEIVER.fullmatch(scope["path"].rstrip("/"))
            if scope["method"] == "PUT" and match:
                token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
                return str(container.uploads.redeem(match["document_id"], token)["tenant_id"])
            request = Request(scope)
            return current_principal(container, request, request.headers.get("x-api-key")).tenant_id
        except RaglineError:
            return None

    return tenant_of


class TenantAdmission:
    """One server's tenant slots (`TenantSlots`) on its event loop: the HTTP middleware below and the WebSocket
    chat (each query a slot, like a chat stream) take and give back the same slots."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self.slots = TenantSlots(max(1, limits.max_concurrent), limits.max_queued)

    @property
    def limiting(self) -> bool:
        return self.limits.max_concurrent > 0

    @asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        """Hold one of the tenant's slots for the block (after waiting in its queue); TooManyRequests when
        the queue is full or the wait ran out."""
        if not self.limiting:
            yield
            return
        if not await self.admit(tenant):
            raise tenant_busy(self.limits)
        try:
            yield
        finally:
            self.release(tenant)

    async def admit(self, tenant: str) -> bool:
        """True: the caller holds a slot and must `release` it. False: refused (429)."""
        loop = asyncio.get_running_loop()
        granted: asyncio.Future[None] = loop.create_future()
        decision = self.slots.request(tenant, granted)
        if decision is Decision.ADMIT:
            return True
        if decision is Decision.REFUSE:
            return False
        try:
            await asyncio.wait_for(asyncio.shield(granted), self.limits.queue_seconds)
            return True
        except TimeoutError:
            return not self.slots.abandon(tenant, granted)  # granted just now: it holds a slot
        except asyncio.CancelledError:
            if not self.slots.abandon(tenant, granted):
                self.release(tenant)
            raise

    def release(self, tenant: str) -> None:
        waiter = self.slots.release(tenant)
        if isinstance(waiter, asyncio.Future):
            try:
                waiter.get_loop().call_soon_threadsafe(_grant, waiter)
            except RuntimeError:  # its event loop is closed: nobody will run with that slot
                self.release(tenant)


class AdmissionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        limits: AdmissionLimits,
        tenant_of: Callable[[Scope], str | None],
        admission: TenantAdmission | None = None,
    ) -> None:
        self.app = app
        self.limits = limits
        self.tenant_of = tenant_of
        self.admission = admission if admission is not None else TenantAdmission(limits)
        rate = limits.upload_bytes_per_second
        # A burst of one second's worth: a small file is read at once, a big one at the rate.
        self.upload_rate = ByteRate(rate, burst=rate) if rate else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiting = self.admission.limiting
        if (
            scope["type"] != "http"
            or not is_limited(scope["method"], scope["path"])
            or not (limiting or self.upload_rate is not None)
        ):
            await self.app(scope, receive, send)
            return
        tenant = await to_thread.run_sync(self.tenant_of, scope)
        if tenant is None:  # the route refuses it (401, 403, 404) before doing any work
            await self.app(scope, receive, send)
            return
        if limiting and not await self.admission.admit(tenant):
            await too_many_requests(self.limits)(scope, receive, send)
            return
        if self.upload_rate is not None and is_upload(scope["method"], scope["path"]):
            receive = self._rate_limited(receive, tenant, self.upload_rate)
        try:
            await self.app(scope, receive, send)  # a stream returns when it ends or its client leaves
        finally:
            if limiting:
                self.admission.release(tenant)

    @staticmethod
    def _rate_limited(receive: Receive, tenant: str, rate: ByteRate) -> Receive:
        """``receive``, pausing after each piece of the body as long as the tenant's upload rate asks."""
        loop = asyncio.get_running_loop()

        async def paced() -> Message:
            message = await receive()
            if message["type"] == "http.request" and (size := len(message.get("body", b""))):
                if wait := rate.delay(tenant, size, loop.time()):
                    await asyncio.sleep(wait)
            return message

        return paced


def _grant(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
