"""The per-tenant admission policy (ragline.api.admission), as tables: which routes take a slot, the default
limit from the CPU count, and what each request, release and give-up does to each tenant's slots and queue."""

from __future__ import annotations

import pytest

from ragline.api.admission import AdmissionLimits, Decision, TenantSlots, default_max_concurrent, is_limited
from ragline.config import Settings

ADMIT, WAIT, REFUSE = Decision.ADMIT, Decision.WAIT, Decision.REFUSE


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


@pytest.mark.parametrize(("cpus", "limit"), [(1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (64, 32)])
def test_the_default_limit_is_half_the_cores_and_at_least_one(cpus: int, limit: int) -> None:
    assert default_max_concurrent(cpus) == limit


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"tenant_max_concurrent": 3}, AdmissionLimits(3, 64, 1.0, 1)),
        ({"tenant_max_concurrent": 3, "tenant_max_queued": 0}, AdmissionLimits(3, 0, 1.0, 1)),
        ({"tenant_max_concurrent": 0}, AdmissionLimits(0, 64, 1.0, 1)),
        ({"tenant_max_concurrent": 2, "tenant_queue_seconds": 2.5}, AdmissionLimits(2, 64, 2.5, 3)),
        ({"tenant_max_concurrent": 2, "tenant_queue_seconds": 0}, AdmissionLimits(2, 64, 0.0, 1)),
        ({}, AdmissionLimits(default_max_concurrent(), 64, 1.0, 1)),
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
