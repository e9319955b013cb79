"""The rate-limit policy (ragline.rate_limits): windows, limits, decisions and headers, table by table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ragline.rate_limits import WINDOW_SECONDS, Decision, Window, decide, headers, limit_for, phase, window_at

T0 = 1_800_000_000  # a multiple of 60: windows of phase 0 start here


def _key_with_phase(wanted: int) -> str:
    return next(f"key_{n}" for n in range(10_000) if phase(f"key_{n}") == wanted)


KEY0 = _key_with_phase(0)
KEY17 = _key_with_phase(17)


@pytest.mark.parametrize(
    ("key", "now", "start"),
    [
        (KEY0, T0, T0),  # the first instant of a window is in it
        (KEY0, T0 + 0.001, T0),
        (KEY0, T0 + 59.999, T0),  # the last instant too
        (KEY0, T0 + 60, T0 + 60),  # and the end is the next one's start
        (KEY0, T0 - 0.001, T0 - 60),
        (KEY17, T0 + 17, T0 + 17),  # a key of phase 17 starts its windows at second 17
        (KEY17, T0 + 16.999, T0 - 43),
        (KEY17, T0 + 76.5, T0 + 17),
        (KEY17, T0 + 77, T0 + 77),
        (KEY17, T0, T0 - 43),
    ],
)
def test_the_window_that_holds_an_instant(key: str, now: float, start: int) -> None:
    window = window_at(now, key)
    assert (window.start, window.end) == (start, start + WINDOW_SECONDS)
    assert window.start <= now < window.end


def test_phases_spread_keys_over_the_minute_and_stay_in_it() -> None:
    phases = {phase(f"key_{n}") for n in range(2000)}
    assert phases <= set(range(WINDOW_SECONDS)) and len(phases) == WINDOW_SECONDS


def test_a_phase_is_the_same_in_another_process() -> None:
    """Every Lambda container must count a key in the same window (hash() is salted per process)."""
    code = "from ragline.rate_limits import phase; print(phase('key_abc'), phase('key_xyz'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert [int(p) for p in other] == [phase("key_abc"), phase("key_xyz")]


@pytest.mark.parametrize(
    ("key_limit", "default", "limit"),
    [(None, 120, 120), (5, 120, 5), (500, 120, 500), (None, 7, 7), (1, 1, 1)],
)
def test_the_keys_own_limit_wins_over_the_setting(key_limit: int | None, default: int, limit: int) -> None:
    assert limit_for(key_limit, default) == limit


W = Window(T0)


@pytest.mark.parametrize(
    ("count", "limit", "now", "expected"),
    [
        (1, 5, T0, Decision(True, 5, 4, 60)),  # the window's first request, at its first instant
        (5, 5, T0 + 30, Decision(True, 5, 0, 30)),  # the last one served: nothing remains
        (None, 5, T0 + 30, Decision(False, 5, 0, 30)),  # full: refused
        (3, 5, T0 + 59.2, Decision(True, 5, 2, 1)),  # reset rounds up: waiting that long reaches the next window
        (None, 5, T0 + 59.999, Decision(False, 5, 0, 1)),
        (None, 5, T0 + 0.5, Decision(False, 5, 0, 60)),
        (9, 5, T0 + 10, Decision(True, 5, 0, 50)),  # counted under a higher limit before it was lowered
        (1, 1, T0 + 10, Decision(True, 1, 0, 50)),
    ],
)
def test_decisions(count: int | None, limit: int, now: float, expected: Decision) -> None:
    assert decide(count, limit, W, now) == expected


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        (
            Decision(True, 120, 119, 60),
            {
                "RateLimit-Limit": "120",
                "RateLimit-Remaining": "119",
                "RateLimit-Reset": "60",
                "RateLimit-Policy": "120;w=60",
            },
        ),
        (
            Decision(False, 5, 0, 12),
            {
                "RateLimit-Limit": "5",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": "12",
                "RateLimit-Policy": "5;w=60",
                "Retry-After": "12",
            },
        ),
    ],
)
def test_headers(decision: Decision, expected: dict[str, str]) -> None:
    assert headers(decision) == expected
    assert decision.retry_after == (None if decision.allowed else decision.reset)
