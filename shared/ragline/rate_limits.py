"""Requests per minute per API key: the policy, as pure functions (the counters are a port,
``ragline.ports.RateLimiter``; the HTTP side is ``ragline.api.rate_limit``).

Fixed windows of 60 s, counted exactly: a key's window is one counter, and a request is served only
if the counter, incremented atomically, stays within the limit. So at most ``limit`` requests are
served per window whatever the concurrency, and the headers are the truth: ``RateLimit-Remaining``
is what the counter leaves, ``RateLimit-Reset`` the seconds until that counter is replaced.
The price of fixed windows: a client can be served up to 2 x limit within 60 s that straddle a
window boundary (the end of one window and the start of the next). A sliding log would be exact over
any 60 s but costs a write per request *and* a read of the last minute's entries; a sliding-window
estimate (two counters, weighted) is cheap but not exact, and its Remaining would be a guess.

Each key's windows start at its own second of the minute (``phase``), so the keys of a fleet do not
all reset, and retry, in the same second. The phase is a CRC of the key id, the same in every process
(``hash()`` is salted per process): every Lambda container counts a key in the same window.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragline.errors import TooManyRequests

if TYPE_CHECKING:
    from ragline.models import Principal
    from ragline.ports import RateLimiter

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Window:
    """A key's counting window: [start, start + seconds), epoch seconds."""

    start: int
    seconds: int = WINDOW_SECONDS

    @property
    def end(self) -> int:
        return self.start + self.seconds


def phase(key_id: str, seconds: int = WINDOW_SECONDS) -> int:
    """The second of the window length at which this key's windows start (stable across processes)."""
    return zlib.crc32(key_id.encode()) % seconds


def window_at(now: float, key_id: str, seconds: int = WINDOW_SECONDS) -> Window:
    """The key's window that contains ``now`` (epoch seconds)."""
    offset = phase(key_id, seconds)
    return Window(math.floor((now - offset) / seconds) * seconds + offset, seconds)


def limit_for(key_limit: int | None, default: int) -> int:
    """The key's own limit, else the server's setting as it is now."""
    return key_limit if key_limit is not None else default


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int  # requests the window still serves after this one
    reset: int  # whole seconds until the window ends (at least 1): waiting that long reaches the next one

    @property
    def retry_after(self) -> int | None:
        return None if self.allowed else self.reset


def decide(count: int | None, limit: int, window: Window, now: float) -> Decision:
    """``count``: the window's counter with this request in it, or None when the counter was full
    (the request was not counted)."""
    reset = max(1, math.ceil(window.end - now))
    if count is None:
        return Decision(False, limit, 0, reset)
    return Decision(True, limit, max(0, limit - count), reset)


def headers(decision: Decision) -> dict[str, str]:
    """The response headers (IETF draft RateLimit header fields), plus Retry-After on a refusal."""
    values = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset),
        "RateLimit-Policy": f"{decision.limit};w={WINDOW_SECONDS}",
    }
    if decision.retry_after is not None:
        values["Retry-After"] = str(decision.retry_after)
    return values


def count_request(limiter: RateLimiter, principal: Principal, default_limit: int, now: float) -> Decision:
    """Count one request of the principal's key in its current window (every way in calls this: the HTTP
    routes, a WebSocket query locally and deployed)."""
    window = window_at(now, principal.key_id)
    limit = limit_for(principal.rate_limit_per_minute, default_limit)
    return decide(limiter.acquire(principal.key_id, window, limit), limit, window, now)


def refuse_over_limit(decision: Decision) -> None:
    """TooManyRequests (429, with ``retry_after``) when the decision refused the request."""
    if decision.allowed:
        return
    assert decision.retry_after is not None
    raise TooManyRequests(
        f"this API key may make {decision.limit} requests per minute; retry after {decision.retry_after} s",
        retry_after=decision.retry_after,
        error="Rate limit exceeded",
    )
