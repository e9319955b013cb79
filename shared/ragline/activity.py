"""What keys did: per-key usage counters and the audit log.

Usage is counted per key and UTC day. A request costs the server one dictionary update under a lock
(``UsageRecorder.record``); the counts reach the store in one write per key and day, every
``RAGLINE_USAGE_FLUSH_SECONDS`` (a background thread) or, with 0, at once (Lambda, where nothing runs
between invocations). Reading usage through the recorder flushes first, so the API answers exact counts.

The audit log is an append-only record of administration actions and deletes (``audited``), one
entry per request, written before the response leaves the server.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from ragline.errors import DependencyUnavailable
from ragline.models import new_id, utcnow
from ragline.ports import AuditLog, UsageStore

log = logging.getLogger("ragline.activity")

# A day keeps at most this many distinct client IPs per key (the rest are counted as requests only).
MAX_IPS_PER_DAY = 1000
MAX_PERIOD_DAYS = 90


# ---- usage -------------------------------------------------------------------------------------------
@dataclass
class UsageDelta:
    """Counts to add to one key's day."""

    key_id: str
    tenant_id: str
    day: str  # YYYY-MM-DD, UTC
    requests: int = 0
    errors: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    ips: set[str] = field(default_factory=set)
    input_tokens: int = 0
    output_tokens: int = 0
    last_used_at: str = ""


class UsageDay(BaseModel):
    key_id: str
    day: str
    requests: int = 0
    errors: int = 0
    routes: dict[str, int] = Field(default_factory=dict)
    ips: list[str] = Field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    last_used_at: str | None = None


class ChatTokens(BaseModel):
    input_tokens: int
    output_tokens: int


class KeyUsage(BaseModel):
    """GET /v1/keys/{id}/usage."""

    key_id: str
    period_days: int
    since: str
    requests: int
    errors: int
    by_route: dict[str, int]
    unique_ips: int
    chat_tokens: ChatTokens
    last_used_at: str | None


def today(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).date().isoformat()


def summarize(key_id: str, days: list[UsageDay], period_days: int, since: str) -> KeyUsage:
    routes: Counter[str] = Counter()
    ips: set[str] = set()
    for day in days:
        routes.update(day.routes)
        ips.update(day.ips)
    last = max((d.last_used_at for d in days if d.last_used_at), default=None)
    return KeyUsage(
        key_id=key_id,
        period_days=period_days,
        since=since,
        requests=sum(d.requests for d in days),
        errors=sum(d.errors for d in days),
        by_route=dict(sorted(routes.items())),
        unique_ips=len(ips),
        chat_tokens=ChatTokens(
            input_tokens=sum(d.input_tokens for d in days), output_tokens=sum(d.output_tokens for d in days)
        ),
        last_used_at=last,
    )


class UsageRecorder:
    """Counts requests in memory and hands them to the store in batches (or at once: ``flush_seconds`` 0)."""

    def __init__(self, store: UsageStore, *, flush_seconds: float) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], UsageDelta] = {}
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()

    def record(
        self,
        key_id: str,
        tenant_id: str,
        route: str,
        status: int,
        ip: str | None,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        now = datetime.now(UTC)
        day = today(now)
        at = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self._lock:
            delta = self._pending.get((key_id, day))
            if delta is None:
                delta = self._pending[(key_id, day)] = UsageDelta(key_id, tenant_id, day)
            delta.requests += 1
            delta.errors += status >= 400
            delta.routes[route] += 1
            if ip and len(delta.ips) < MAX_IPS_PER_DAY:
                delta.ips.add(ip)
            delta.input_tokens += input_tokens
            delta.output_tokens += output_tokens
            delta.last_used_at = max(delta.last_used_at, at)
        if self.flush_seconds <= 0:
            self.flush()
        elif self._flusher is None:
            self._start_flusher()

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(target=self._run, name="usage-flusher", daemon=True)
            self._flusher.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except DependencyUnavailable as exc:  # kept in memory and tried again at the next tick
                log.warning("usage counts not written yet: %s", exc)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            self.store.add_usage(list(pending.values()))
        except BaseException:
            with self._lock:  # put them back, under any counted meanwhile
                for key, delta in pending.items():
                    self._pending[key] = _merge(delta, self._pending.get(key))
            raise

    def close(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        self.flush()

    # ---- reads (flushed first, so they include every request answered so far) --------------------
    def usage(self, key_id: str, period_days: int) -> KeyUsage:
        self.flush()
        since = (datetime.now(UTC).date() - timedelta(days=period_days - 1)).isoformat()
        return summarize(key_id, self.store.usage_days(key_id, since), period_days, since)

    def last_used(self, key_ids: list[str]) -> dict[str, str]:
        self.flush()
        return self.store.last_used(key_ids) if key_ids else {}


def _merge(older: UsageDelta, newer: UsageDelta | None) -> UsageDelta:
    if newer is None:
        return older
    older.requests += newer.requests
    older.errors += newer.errors
    older.routes.update(newer.routes)
    older.ips |= newer.ips
    older.input_tokens += newer.input_tokens
    older.output_tokens += newer.output_tokens
    older.last_used_at = max(older.last_used_at, newer.last_used_at)
    return older


# ---- audit -------------------------------------------------------------------------------------------
class AuditEvent(BaseModel):
    id: str = Field(default_factory=lambda: new_id("aud"))
    tenant_id: str
    at: str = Field(default_factory=utcnow)
    key_id: str
    action: str
    method: str
    path: str
    target: str | None = None
    ip: str | None = None
    outcome: int  # the HTTP status answered

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"tenant_id"})


class AuditEventOut(BaseModel):
    id: str
    at: str
    key_id: str
    action: str
    method: str
    path: str
    target: str | None
    ip: str | None
    outcome: int


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    next_cursor: str | None


ADMINISTERED = ("/v1/keys", "/v1/webhooks")


def audited(method: str, route_path: str) -> bool:
    """The one rule: every delete (any DELETE route, and delete-by-filters), and every change to keys
    or webhooks (any method but GET on their routes)."""
    if method == "DELETE" or (method, route_path) == ("POST", "/v1/kb/delete"):
        return True
    return method not in ("GET", "HEAD", "OPTIONS") and route_path.startswith(ADMINISTERED)


class AuditTrail:
    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def record(self, event: AuditEvent) -> None:
        self.log.append_audit(event)

    def page(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[AuditEvent], str | None]:
        return self.log.list_audit(tenant_id, limit=limit, cursor=cursor)
