"""Rate-limit counters in the server's memory (the RateLimiter port, local backend).

`ragline serve` is one process, so a dict under a lock is exact and costs microseconds (a SQLite
write per request would cost a commit). The counts do not outlive the process: a restart starts every
key's window afresh, which can serve up to one extra window's worth once.
"""

from __future__ import annotations

import threading

from ragline.rate_limits import Window

# Every this many acquisitions, counters of windows that have ended are dropped (keys gone quiet).
SWEEP_EVERY = 4096


class InMemoryRateLimiter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, tuple[int, int]] = {}  # key id -> (window start, count)
        self._since_sweep = 0

    def acquire(self, key_id: str, window: Window, limit: int) -> int | None:
        with self._lock:
            start, count = self._counters.get(key_id, (window.start, 0))
            if start < window.start:  # a later window: the old count no longer matters
                count = 0
            elif start > window.start:  # a caller whose clock is behind the window already counted
                return None if count >= limit else self._count(key_id, start, count)
            if count >= limit:
                return None
            self._sweep(window)
            return self._count(key_id, window.start, count)

    def _count(self, key_id: str, start: int, count: int) -> int:
        self._counters[key_id] = (start, count + 1)
        return count + 1

    def _sweep(self, window: Window) -> None:
        self._since_sweep += 1
        if self._since_sweep < SWEEP_EVERY:
            return
        self._since_sweep = 0
        # Windows last window.seconds from their start: any that started that long before this one is over.
        ended = window.start - window.seconds
        self._counters = {key: value for key, value in self._counters.items() if value[0] > ended}
