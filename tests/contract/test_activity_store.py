"""UsageStore + AuditLog contract: SQLite and DynamoDB (under moto) count and list the same."""

from __future__ import annotations

from collections import Counter

import pytest

from ragline.activity import AuditEvent, UsageDelta
from ragline.errors import Conflict


def delta(key_id: str = "key_1", day: str = "2026-05-01", **fields) -> UsageDelta:
    defaults = {
        "requests": 3,
        "errors": 1,
        "routes": Counter({"POST /v1/kb/search": 2, "GET /v1/keys": 1}),
        "ips": {"10.0.0.1", "::1"},
        "input_tokens": 10,
        "output_tokens": 20,
        "last_used_at": f"{day}T10:00:00.000Z",
    }
    return UsageDelta(key_id, "t1", day, **{**defaults, **fields})


def test_usage_adds_up_per_key_and_day(activity_store) -> None:
    activity_store.add_usage([delta(), delta(key_id="key_2")])
    activity_store.add_usage(
        [
            delta(
                requests=2,
                errors=0,
                routes=Counter({"POST /v1/kb/search": 1, "POST /v1/kb/chat": 1}),
                ips={"10.0.0.2", "::1"},
                input_tokens=1,
                output_tokens=2,
                last_used_at="2026-05-01T11:00:00.000Z",
            ),
            delta(day="2026-05-02", routes=Counter({"GET /v1/audit": 3}), ips=set()),
        ]
    )
    (first, second) = activity_store.usage_days("key_1", "2026-05-01")
    assert (first.day, first.requests, first.errors) == ("2026-05-01", 5, 1)
    assert first.routes == {"POST /v1/kb/search": 3, "GET /v1/keys": 1, "POST /v1/kb/chat": 1}
    assert sorted(first.ips) == ["10.0.0.1", "10.0.0.2", "::1"]
    assert (first.input_tokens, first.output_tokens) == (11, 22)
    assert first.last_used_at == "2026-05-01T11:00:00.000Z"
    assert (second.day, second.requests, second.routes, second.ips) == ("2026-05-02", 3, {"GET /v1/audit": 3}, [])
    assert [d.day for d in activity_store.usage_days("key_1", "2026-05-02")] == ["2026-05-02"]
    assert activity_store.usage_days("key_1", "2026-05-03") == []
    assert activity_store.usage_days("key_2", "2026-01-01")[0].requests == 3
    assert activity_store.usage_days("key_none", "2026-01-01") == []


def test_last_used_is_the_latest_day_of_each_key(activity_store) -> None:
    activity_store.add_usage([delta(), delta(day="2026-05-03"), delta(key_id="key_2", day="2026-04-01")])
    assert activity_store.last_used(["key_1", "key_2", "key_none"]) == {
        "key_1": "2026-05-03T10:00:00.000Z",
        "key_2": "2026-04-01T10:00:00.000Z",
    }
    assert activity_store.last_used([]) == {}


def event(number: int, tenant_id: str = "t1", **fields) -> AuditEvent:
    defaults = {
        "at": f"2026-05-01T10:00:{number:02d}.000Z",
        "key_id": "key_1",
        "action": "revoke_key",
        "method": "DELETE",
        "path": f"/v1/keys/key_{number}",
        "target": f"key_{number}",
        "ip": "127.0.0.1",
        "outcome": 204,
    }
    return AuditEvent(id=f"aud_{number:04d}", tenant_id=tenant_id, **{**defaults, **fields})


def test_audit_lists_a_tenants_entries_newest_first_with_a_cursor(activity_store) -> None:
    for number in (3, 1, 2, 4, 5):
        activity_store.append_audit(event(number))
    activity_store.append_audit(event(6, tenant_id="t2", target=None, ip=None, outcome=500))
    page, cursor = activity_store.list_audit("t1", limit=2, cursor=None)
    assert [e.id for e in page] == ["aud_0005", "aud_0004"] and cursor == "aud_0004"
    page, cursor = activity_store.list_audit("t1", limit=2, cursor=cursor)
    assert [e.id for e in page] == ["aud_0003", "aud_0002"] and cursor == "aud_0002"
    page, cursor = activity_store.list_audit("t1", limit=2, cursor=cursor)
    assert [e.id for e in page] == ["aud_0001"] and cursor is None
    assert activity_store.list_audit("t1", limit=5, cursor=None)[1] is None
    (other,), _ = activity_store.list_audit("t2", limit=10, cursor=None)
    assert other == event(6, tenant_id="t2", target=None, ip=None, outcome=500)
    assert activity_store.list_audit("t1", limit=10, cursor=None)[0][-1] == event(1)


def test_an_audit_entry_is_written_once(activity_store) -> None:
    activity_store.append_audit(event(1))
    with pytest.raises(Conflict):
        activity_store.append_audit(event(1, outcome=500))
    assert activity_store.list_audit("t1", limit=10, cursor=None)[0] == [event(1)]
