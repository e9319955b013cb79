"""When a failed webhook delivery is tried again: the Standard Webhooks retry schedule, jitter, Retry-After."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

# Standard Webhooks' schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h (~3 days in all).
DEFAULT_RETRY_SECONDS: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
# A receiver's Retry-After is honoured up to a day: longer would outlive the whole schedule's last step.
MAX_RETRY_AFTER_SECONDS = 86400.0

_DELTA_SECONDS = re.compile(r"^[0-9]+$")


def parse_retry_schedule(text: str) -> tuple[float, ...]:
    """The delays of RAGLINE_WEBHOOK_RETRY_SECONDS ("0,5,300"): comma-separated non-negative seconds, one at least."""
    items = [item.strip() for item in text.split(",")]
    if items == [""]:
        raise ValueError("the webhook retry schedule needs at least one delay (comma-separated seconds)")
    delays: list[float] = []
    for position, item in enumerate(items, start=1):
        try:
            delay = float(item)
        except ValueError:
            raise ValueError(
                f"the webhook retry schedule's delay #{position} ({item!r}) is not a number of seconds"
            ) from None
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"the webhook retry schedule's delay #{position} ({item!r}) must be a finite number >= 0")
        delays.append(delay)
    return tuple(delays)


def next_delay(schedule: Sequence[float], attempts_made: int, rng: random.Random, jitter: float = 0.2) -> float | None:
    """Seconds to wait before attempt number ``attempts_made + 1``, or None when the schedule is exhausted.

    ``schedule[0]`` is the first attempt's delay; each delay is spread by ±``jitter`` (a fraction) so that
    retries of a burst of failures do not arrive together, and is never negative.
    """
    if attempts_made < 0:
        raise ValueError("attempts_made cannot be negative")
    if not 0 <= jitter <= 1:
        raise ValueError("jitter is a fraction between 0 and 1")
    if attempts_made >= len(schedule):
        return None
    base = schedule[attempts_made]
    return max(0.0, base * (1 + rng.uniform(-jitter, jitter)))


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header's wait in seconds (delta-seconds or an HTTP-date), capped at 24 h; None if absent or
    unreadable. An HTTP-date in the past means "now" (0)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELTA_SECONDS.match(value):
        return min(float(int(value)), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # email.utils on text that is not a date
        return None
    if when.tzinfo is None:  # "-0000": HTTP-dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_SECONDS)
