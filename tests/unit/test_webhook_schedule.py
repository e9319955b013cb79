"""When webhook deliveries are retried (ragline.webhooks.schedule): the schedule, jitter, Retry-After, the settings."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from ragline.config import Settings
from ragline.webhooks.schedule import (
    DEFAULT_RETRY_SECONDS,
    next_delay,
    parse_retry_schedule,
    retry_after_seconds,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def test_the_default_is_the_standard_webhooks_schedule() -> None:
    minutes, hours = 60, 3600
    assert DEFAULT_RETRY_SECONDS == (
        0,
        5,
        5 * minutes,
        30 * minutes,
        2 * hours,
        5 * hours,
        10 * hours,
        14 * hours,
        20 * hours,
        24 * hours,
    )


@pytest.mark.parametrize(
    "text, schedule",
    [
        ("0", (0.0,)),
        ("0,5,300", (0.0, 5.0, 300.0)),
        (" 0 , 0.5 ,1.25 ", (0.0, 0.5, 1.25)),
        ("0,5,300,1800,7200,18000,36000,50400,72000,86400", DEFAULT_RETRY_SECONDS),
        ("10,1", (10.0, 1.0)),  # not required to grow
        ("1e2", (100.0,)),
    ],
)
def test_parse_retry_schedule(text: str, schedule: tuple[float, ...]) -> None:
    assert parse_retry_schedule(text) == schedule


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "at least one delay"),
        ("   ", "at least one delay"),
        ("0,,5", r"delay #2 \(''\) is not a number"),
        ("0,5,", r"delay #3 \(''\) is not a number"),
        ("0;5", r"delay #1 \('0;5'\) is not a number"),
        ("five", "is not a number of seconds"),
        ("0,-1", r"delay #2 \('-1'\) must be a finite number >= 0"),
        ("nan", "must be a finite number"),
        ("inf", "must be a finite number"),
        ("0,1s", "is not a number"),
    ],
)
def test_parse_retry_schedule_refuses_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_retry_schedule(text)


@pytest.mark.parametrize(
    "attempts_made, base",
    [(0, 0), (1, 5), (2, 300), (3, 1800), (4, 7200), (9, 86400)],
)
def test_next_delay_follows_the_schedule_within_the_jitter(attempts_made: int, base: float) -> None:
    rng = random.Random(7)
    delays = [next_delay(DEFAULT_RETRY_SECONDS, attempts_made, rng) for _ in range(500)]
    assert all(delay is not None and base * 0.8 <= delay <= base * 1.2 for delay in delays)
    if base:
        assert len(set(delays)) > 100  # spread, not one value
        assert min(delays) < base * 0.9 and max(delays) > base * 1.1  # across the whole ±20 %


@pytest.mark.parametrize("attempts_made", [10, 11, 100])
def test_next_delay_is_none_once_the_schedule_is_exhausted(attempts_made: int) -> None:
    assert next_delay(DEFAULT_RETRY_SECONDS, attempts_made, random.Random(0)) is None


@pytest.mark.parametrize(
    "schedule, attempts_made, jitter, expected",
    [
        ((0.0, 5.0), 0, 0.2, 0.0),  # "at once" stays at once
        ((0.0, 5.0), 1, 0.0, 5.0),  # no jitter: the schedule exactly
        ((2.0,), 0, 1.0, None),  # full jitter: anywhere in [0, 4], never negative
        ((2.0,), 1, 0.2, None),  # a single-step schedule is exhausted after one attempt
    ],
)
def test_next_delay_edges(
    schedule: tuple[float, ...], attempts_made: int, jitter: float, expected: float | None
) -> None:
    rng = random.Random(3)
    delays = [next_delay(schedule, attempts_made, rng, jitter) for _ in range(200)]
    if attempts_made >= len(schedule):
        assert set(delays) == {None}
    elif expected is not None:
        assert set(delays) == {expected}
    else:
        assert all(delay is not None and 0 <= delay <= 2 * schedule[attempts_made] for delay in delays)


def test_next_delay_is_reproducible_with_a_seeded_rng() -> None:
    first = [next_delay(DEFAULT_RETRY_SECONDS, n, random.Random(42)) for n in range(10)]
    again = [next_delay(DEFAULT_RETRY_SECONDS, n, random.Random(42)) for n in range(10)]
    assert first == again


@pytest.mark.parametrize(
    "attempts_made, jitter, message",
    [(-1, 0.2, "attempts_made"), (0, -0.1, "jitter"), (0, 1.5, "jitter")],
)
def test_next_delay_refuses_nonsense(attempts_made: int, jitter: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        next_delay(DEFAULT_RETRY_SECONDS, attempts_made, random.Random(0), jitter)


@pytest.mark.parametrize(
    "value, seconds",
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        ("120", 120.0),
        (" 30 ", 30.0),
        ("86400", 86400.0),
        ("86401", 86400.0),  # capped at a day
        ("99999999999999999999999", 86400.0),
        ("-5", None),
        ("1.5", None),  # delta-seconds is whole digits
        ("soon", None),
        ("120s", None),
        ("Sun, 01 Mar 2026 12:02:00 GMT", 120.0),  # an HTTP-date two minutes ahead
        ("Sunday, 01-Mar-26 12:00:30 GMT", 30.0),  # the obsolete RFC 850 form
        ("Sun Mar  1 12:00:10 2026", 10.0),  # asctime form, read as GMT
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("Sun, 08 Mar 2026 12:00:00 GMT", 86400.0),  # a week ahead: capped
        ("Sun, 99 Mar 2026 12:00:00 GMT", None),
        ("Sun, 01 Mar 99999 12:00:00 GMT", None),
    ],
)
def test_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, NOW) == seconds


def test_retry_after_seconds_reads_a_naive_now_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert retry_after_seconds("Sun, 01 Mar 2026 12:01:00 GMT", naive) == 60.0
    assert retry_after_seconds("Sun, 01 Mar 2026 12:01:00 GMT", NOW + timedelta(seconds=30)) == 30.0


def test_the_settings_default_to_the_standard_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "RAGLINE_WEBHOOK_RETRY_SECONDS",
        "RAGLINE_WEBHOOK_TIMEOUT_SECONDS",
        "RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS",
        "RAGLINE_WEBHOOK_DISABLE_AFTER_FAILED_EVENTS",
        "RAGLINE_WEBHOOK_DELIVERY_RETENTION_DAYS",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.webhook_retry_seconds == DEFAULT_RETRY_SECONDS
    assert settings.webhook_timeout_seconds == 15.0
    assert settings.webhooks_allow_private_targets is False
    assert settings.webhook_disable_after_failed_events == 5
    assert settings.webhook_delivery_retention_days == 30


def test_the_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGLINE_WEBHOOK_RETRY_SECONDS", "0, 0.5,2")
    monkeypatch.setenv("RAGLINE_WEBHOOK_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")
    monkeypatch.setenv("RAGLINE_WEBHOOK_DISABLE_AFTER_FAILED_EVENTS", "3")
    monkeypatch.setenv("RAGLINE_WEBHOOK_DELIVERY_RETENTION_DAYS", "7")
    settings = Settings()
    assert settings.webhook_retry_seconds == (0.0, 0.5, 2.0)
    assert settings.webhook_timeout_seconds == 2.5
    assert settings.webhooks_allow_private_targets is True
    assert settings.webhook_disable_after_failed_events == 3
    assert settings.webhook_delivery_retention_days == 7


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("RAGLINE_WEBHOOK_RETRY_SECONDS", "", "at least one delay"),
        ("RAGLINE_WEBHOOK_RETRY_SECONDS", "0,-5", "must be a finite number >= 0"),
        ("RAGLINE_WEBHOOK_RETRY_SECONDS", "[0, 5]", "is not a number of seconds"),
        ("RAGLINE_WEBHOOK_TIMEOUT_SECONDS", "0", "greater than 0"),
        ("RAGLINE_WEBHOOK_DISABLE_AFTER_FAILED_EVENTS", "0", "greater than or equal to 1"),
        ("RAGLINE_WEBHOOK_DELIVERY_RETENTION_DAYS", "0", "greater than or equal to 1"),
        ("RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "perhaps", "valid boolean"),
    ],
)
def test_the_settings_refuse_bad_values(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_a_schedule_given_in_code_is_checked_too() -> None:
    assert Settings(webhook_retry_seconds=(1, 2)).webhook_retry_seconds == (1.0, 2.0)
    with pytest.raises(ValidationError, match="at least one delay"):
        Settings(webhook_retry_seconds=())
    with pytest.raises(ValidationError, match="finite number >= 0"):
        Settings(webhook_retry_seconds=(5, -1))
