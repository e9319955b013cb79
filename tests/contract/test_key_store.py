"""The key half of the MetadataStore contract beyond create/find: by id, listing per tenant with a cursor,
revocation (first time kept) and rotation (one write, refused twice) — SQLite and DynamoDB alike."""

from __future__ import annotations

import pytest

from ragline.errors import Conflict
from ragline.models import ApiKey, Scope


def make_key(number: int, tenant_id: str = "t1", **fields) -> ApiKey:
    fields = {"scopes": frozenset({Scope.SEARCH}), **fields}
    return ApiKey(
        id=f"key_{number:04d}", tenant_id=tenant_id, key_hash=f"{number:064d}", prefix=f"rl_{number:04d}", **fields
    )


def test_every_field_round_trips_and_a_key_is_found_by_id(metadata_store) -> None:
    key = make_key(
        1,
        name="dashboard ü",
        scopes=frozenset({Scope.SEARCH, Scope.ADMIN}),
        expires_at="2030-01-01T00:00:00.000Z",
        rate_limit_per_minute=7,
        rotated_from="key_0000",
    )
    metadata_store.create_key(key)
    assert metadata_store.get_key(key.id) == key
    assert metadata_store.find_key(key.key_hash) == key
    assert metadata_store.get_key("key_none") is None


def test_listing_is_per_tenant_in_id_order_with_a_cursor(metadata_store) -> None:
    mine = [make_key(n) for n in (5, 1, 3, 4, 2)]
    for key in [*mine, make_key(9, tenant_id="t2"), make_key(8, tenant_id="t10")]:
        metadata_store.create_key(key)
    first, cursor = metadata_store.list_keys("t1", limit=2, cursor=None)
    assert [k.id for k in first] == ["key_0001", "key_0002"] and cursor == "key_0002"
    second, cursor = metadata_store.list_keys("t1", limit=2, cursor=cursor)
    assert [k.id for k in second] == ["key_0003", "key_0004"] and cursor == "key_0004"
    last, cursor = metadata_store.list_keys("t1", limit=2, cursor=cursor)
    assert [k.id for k in last] == ["key_0005"] and cursor is None
    whole, cursor = metadata_store.list_keys("t1", limit=5, cursor=None)
    assert len(whole) == 5 and cursor is None
    assert [k.id for k in metadata_store.list_keys("t2", limit=10, cursor=None)[0]] == ["key_0009"]
    assert metadata_store.list_keys("nobody", limit=10, cursor=None) == ([], None)


def test_revocation_keeps_its_first_time(metadata_store) -> None:
    metadata_store.create_key(make_key(1))
    revoked = metadata_store.revoke_key("key_0001", "2026-01-01T00:00:00.000Z")
    assert revoked is not None and revoked.revoked_at == "2026-01-01T00:00:00.000Z"
    again = metadata_store.revoke_key("key_0001", "2026-02-02T00:00:00.000Z")
    assert again is not None and again.revoked_at == "2026-01-01T00:00:00.000Z"
    assert metadata_store.find_key(f"{1:064d}").revoked_at == "2026-01-01T00:00:00.000Z"
    assert metadata_store.revoke_key("key_none", "2026-01-01T00:00:00.000Z") is None


def test_rotation_stores_the_successor_and_ends_the_old_key_in_one_write(metadata_store) -> None:
    metadata_store.create_key(make_key(1, name="ci"))
    successor = make_key(2, name="ci", rotated_from="key_0001")
    metadata_store.rotate_key("key_0001", "2026-03-03T00:00:00.000Z", successor)
    old = metadata_store.get_key("key_0001")
    assert old.replaced_by == "key_0002" and old.expires_at == "2026-03-03T00:00:00.000Z"
    assert metadata_store.find_key(successor.key_hash) == successor
    assert metadata_store.count_keys() == 2
    assert [k.id for k in metadata_store.list_keys("t1", limit=10, cursor=None)[0]] == ["key_0001", "key_0002"]


@pytest.mark.parametrize("state", ["rotated", "revoked", "missing"])
def test_a_key_rotates_once_and_never_when_revoked_or_gone(metadata_store, state) -> None:
    metadata_store.create_key(make_key(1))
    if state == "rotated":
        metadata_store.rotate_key("key_0001", "2026-03-03T00:00:00.000Z", make_key(2))
    elif state == "revoked":
        metadata_store.revoke_key("key_0001", "2026-01-01T00:00:00.000Z")
    old_id = "key_0404" if state == "missing" else "key_0001"
    with pytest.raises(Conflict):
        metadata_store.rotate_key(old_id, "2026-04-04T00:00:00.000Z", make_key(3))
    assert metadata_store.get_key("key_0003") is None  # nothing of the refused rotation was written
    assert metadata_store.find_key(f"{3:064d}") is None
