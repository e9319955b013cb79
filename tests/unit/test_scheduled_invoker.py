"""ScheduledInvoker: `ragline serve --backend aws` runs the events-redelivery function on a schedule,
as EventBridge does when deployed: an empty input and a Lambda context, every interval, until stopped."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from ragline_emulator.event_sources import ScheduledInvoker


def test_invokes_the_handler_every_interval_until_stopped() -> None:
    calls: list[tuple[dict[str, Any], Any]] = []
    third = threading.Event()

    def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
        calls.append((event, context))
        if len(calls) >= 3:
            third.set()
        return {"redelivered": 0}

    invoker = ScheduledInvoker(handler, 0.01, name="events_redelivery")
    invoker.start()
    assert third.wait(5)
    invoker.stop()
    stopped_at = len(calls)
    assert threading.Event().wait(0.05) is False and len(calls) == stopped_at  # no call after stop
    event, context = calls[0]
    assert event == {}
    assert context.function_name == "events_redelivery" and context.get_remaining_time_in_millis() > 0


def test_nothing_runs_before_the_first_interval() -> None:
    calls: list[int] = []
    invoker = ScheduledInvoker(lambda event, context: calls.append(1), 60, name="events_redelivery")
    invoker.start()
    invoker.stop()
    assert calls == []


def test_a_failing_run_is_logged_and_the_schedule_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    second = threading.Event()

    def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("SNS answered 500")
        second.set()
        return {"redelivered": 0}

    invoker = ScheduledInvoker(handler, 0.01, name="events_redelivery")
    with caplog.at_level(logging.ERROR, logger="ragline_emulator.event_sources"):
        invoker.start()
        assert second.wait(5), "the schedule stopped after a failed run"
        invoker.stop()
    (failure,) = [record for record in caplog.records if record.exc_info]
    assert "events_redelivery" in failure.getMessage()
    assert failure.exc_info[0] is RuntimeError  # the traceback is in the log
