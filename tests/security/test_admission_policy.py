"""The per-tenant admission policy (ragline.api.admission), as tables: which routes take a slot, the default
limit from the CPU count, and what each request, release and give-up does to each tenant's slots and queue."""

from __future__ import annotations

import pytest

from ragline.api.admission import (
    AdmissionLimits,
    AdmissionMiddleware,
    ByteRate,
    Decision,
    TenantSlots,
    default_max_concurrent,
    is_limited,
    is_upload,
)
from ragline.config import Settings

ADMIT, WAIT, REFUSE = Decision.ADMIT, Decision.WAIT, Decision.REFUSE
MIB8 = 8 * 1024 * 1024


@pytest.mark.parametrize(
    ("method", "path", "limited"),
    [
        ("POST", "/v1/kb/search", True),
        ("POST", "/v1/kb/search/", True),
        ("POST", "/v1/kb/chat", True),
        ("POST", "/v1/kb/chat/stream", True),
        ("POST", "/v1/kb/documents", True),
        ("PUT", "/v1/kb/uploads/doc_123", True),
        ("GET", "/health", False),
        ("POST", "/health", False),
        ("GET", "/v1/kb/search", False),
        ("GET", "/v1/kb/documents", False),
        ("GET", "/v1/kb/documents/doc_1", False),
        ("DELETE", "/v1/kb/documents/doc_1", False),
        ("POST", "/v1/kb/uploads", False),  # asks for a URL: no file read
        ("PUT", "/v1/kb/uploads/doc_1/extra", False),
        ("POST", "/v1/kb/searches", False),
        ("POST", "/v1/kb/chat/streams", False),
        ("GET", "/v1/jobs/job_1", False),
    ],
)
def test_which_routes_take_a_slot(method: str, path: str, limited: bool) -> None:
    assert is_limited(method, path) is limited


@pytest.mark.parametrize(("cpus", "limit"), [(1, 2), (2, 2), (3, 3), (8, 8), (64, 64)])
def test_the_default_limit_is_one_per_core_and_at_least_two(cpus: int, limit: int) -> None:
    assert default_max_concurrent(cpus) == limit


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"tenant_max_concurrent": 3}, AdmissionLimits(3, 64, 1.0, 1, MIB8)),
        ({"tenant_max_concurrent": 3, "tenant_max_queued": 0}, AdmissionLimits(3, 0, 1.0, 1, MIB8)),
        ({"tenant_max_concurrent": 0}, AdmissionLimits(0, 64, 1.0, 1, MIB8)),
        ({"tenant_max_concurrent": 2, "tenant_queue_seconds": 2.5}, AdmissionLimits(2, 64, 2.5, 3, MIB8)),
        ({"tenant_max_concurrent": 2, "tenant_queue_seconds": 0}, AdmissionLimits(2, 64, 0.0, 1, MIB8)),
        ({"tenant_upload_bytes_per_second": 0}, AdmissionLimits(default_max_concurrent(), 64, 1.0, 1, 0)),
        ({}, AdmissionLimits(default_max_concurrent(), 64, 1.0, 1, MIB8)),
    ],
)
def test_limits_from_settings(tmp_path, settings: dict, expected: AdmissionLimits) -> None:
    assert AdmissionLimits.from_settings(Settings(data_dir=tmp_path, **settings)) == expected


# Each step: (operation, tenant, waiter, expected result, {tenant: (running, waiting)} afterwards).
# request → Decision; release → the waiter granted the slot (or None); abandon → True if it left the queue.
SCENARIOS = {
    "admits up to the limit, queues up to max_queued, then refuses": [
        ("request", "A", "a1", ADMIT, {"A": (1, 0)}),
        ("request", "A", "a2", ADMIT, {"A": (2, 0)}),
        ("request", "A", "a3", WAIT, {"A": (2, 1)}),
        ("request", "A", "a4", WAIT, {"A": (2, 2)}),
        ("request", "A", "a5", REFUSE, {"A": (2, 2)}),
    ],
    "another tenant never waits behind a full tenant": [
        ("request", "A", "a1", ADMIT, {}),
        ("request", "A", "a2", ADMIT, {}),
        ("request", "A", "a3", WAIT, {}),
        ("request", "A", "a4", WAIT, {}),
        ("request", "A", "a5", REFUSE, {}),
        ("request", "B", "b1", ADMIT, {"A": (2, 2), "B": (1, 0)}),
        ("request", "B", "b2", ADMIT, {"A": (2, 2), "B": (2, 0)}),
    ],
    "a release hands the slot to the tenant's first waiter, in order": [
        ("request", "A", "a1", ADMIT, {}),
        ("request", "A", "a2", ADMIT, {}),
        ("request", "A", "a3", WAIT, {}),
        ("request", "A", "a4", WAIT, {}),
        ("release", "A", None, "a3", {"A": (2, 1)}),
        ("release", "A", None, "a4", {"A": (2, 0)}),
        ("release", "A", None, None, {"A": (1, 0)}),
        ("release", "A", None, None, {}),  # idle tenants are forgotten
    ],
    "a newcomer cannot overtake the queue while a slot is being handed over": [
        ("request", "A", "a1", ADMIT, {}),
        ("request", "A", "a2", ADMIT, {}),
        ("request", "A", "a3", WAIT, {}),
        ("release", "A", None, "a3", {"A": (2, 0)}),
        ("request", "A", "a4", WAIT, {"A": (2, 1)}),
    ],
    "a waiter that gives up leaves the queue; the next release skips it": [
        ("request", "A", "a1", ADMIT, {}),
        ("request", "A", "a2", ADMIT, {}),
        ("request", "A", "a3", WAIT, {}),
        ("request", "A", "a4", WAIT, {}),
        ("abandon", "A", "a3", True, {"A": (2, 1)}),
        ("release", "A", None, "a4", {"A": (2, 0)}),
    ],
    "a waiter granted a slot just before it gives up keeps the slot": [
        ("request", "A", "a1", ADMIT, {}),
        ("request", "A", "a2", ADMIT, {}),
        ("request", "A", "a3", WAIT, {}),
        ("release", "A", None, "a3", {"A": (2, 0)}),
        ("abandon", "A", "a3", False, {"A": (2, 0)}),
        ("release", "A", None, None, {"A": (1, 0)}),
    ],
    "one tenant's releases never grant another tenant's waiters": [
        ("request", "A", "a1", ADMIT, {}),
        ("request", "A", "a2", ADMIT, {}),
        ("request", "A", "a3", WAIT, {}),
        ("request", "B", "b1", ADMIT, {}),
        ("release", "B", None, None, {"A": (2, 1)}),
    ],
}


@pytest.mark.parametrize("steps", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_slots(steps) -> None:
    slots = TenantSlots(limit=2, max_queued=2)
    for operation, tenant, waiter, expected, state in steps:
        if operation == "request":
            result = slots.request(tenant, waiter)
        elif operation == "release":
            result = slots.release(tenant)
        else:
            result = slots.abandon(tenant, waiter)
        assert result == expected, (operation, tenant, waiter)
        for name, (running, waiting) in state.items():
            assert (slots.running(name), slots.waiting(name)) == (running, waiting), name
        if operation == "release" and not state:
            assert slots.tenants() == 0


def test_with_no_queue_the_first_request_over_the_limit_is_refused() -> None:
    slots = TenantSlots(limit=1, max_queued=0)
    assert [slots.request("A", n) for n in range(2)] == [ADMIT, REFUSE]
    assert slots.tenants() == 1


def test_a_release_without_a_running_request_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        TenantSlots(limit=1, max_queued=0).release("A")


@pytest.mark.parametrize(("limit", "queued"), [(0, 1), (-1, 0), (1, -1)])
def test_nonsense_limits_are_refused(limit: int, queued: int) -> None:
    with pytest.raises(ValueError):
        TenantSlots(limit, queued)


@pytest.mark.parametrize(
    ("method", "path", "upload"),
    [
        ("POST", "/v1/kb/documents", True),
        ("PUT", "/v1/kb/uploads/doc_1", True),
        ("POST", "/v1/kb/search", False),
        ("POST", "/v1/kb/chat/stream", False),
        ("POST", "/v1/kb/uploads", False),
    ],
)
def test_which_routes_are_paced_as_uploads(method: str, path: str, upload: bool) -> None:
    assert is_upload(method, path) is upload


# (tenant, bytes, now, expected delay) in turn, at 100 bytes/s with a burst of 100 bytes.
RATE_STEPS = {
    "a burst of one second's worth passes at once, then the rest waits": [
        ("A", 50, 0.0, 0.0),
        ("A", 50, 0.0, 0.0),
        ("A", 100, 0.0, 1.0),
        ("A", 100, 0.0, 2.0),
    ],
    "time pays the debt off": [
        ("A", 300, 0.0, 2.0),
        ("A", 100, 2.0, 1.0),
        ("A", 10, 10.0, 0.0),
    ],
    "another tenant has a bucket of its own": [
        ("A", 500, 0.0, 4.0),
        ("B", 100, 0.0, 0.0),
        ("B", 100, 0.0, 1.0),
    ],
}


@pytest.mark.parametrize("steps", RATE_STEPS.values(), ids=RATE_STEPS.keys())
def test_upload_rate(steps) -> None:
    rate = ByteRate(100, burst=100)
    for tenant, size, now, delay in steps:
        assert rate.delay(tenant, size, now) == pytest.approx(delay), (tenant, size, now)


def test_idle_tenants_are_forgotten_once_there_are_many() -> None:
    rate = ByteRate(100, burst=100)
    for n in range(1025):
        rate.delay(f"t{n}", 10, 0.0)
    rate.delay("late", 10, 1000.0)
    assert rate.tenants() == 1


def test_the_middleware_reads_a_tenants_upload_at_its_rate() -> None:
    """In process: a 3 KB body in 1 KB pieces at 1 KB/s (burst 1 KB) takes about 2 s to read, a search body none."""
    import asyncio
    import time

    async def app(scope, receive, send) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limits = AdmissionLimits(2, 4, 1.0, 1, upload_bytes_per_second=1000)
    middleware = AdmissionMiddleware(app, limits, tenant_of=lambda scope: "A")

    async def send_body(method: str, path: str) -> float:
        pieces = [{"type": "http.request", "body": b"x" * 1000, "more_body": n < 2} for n in range(3)]

        async def receive():
            return pieces.pop(0)

        async def send(message) -> None:
            pass

        started = time.monotonic()
        await middleware({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
        return time.monotonic() - started

    assert 1.8 < asyncio.run(send_body("POST", "/v1/kb/documents")) < 3.0
    assert asyncio.run(send_body("POST", "/v1/kb/search")) < 0.5
