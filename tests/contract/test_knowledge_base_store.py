"""The KnowledgeBaseStore contract, on SQLite and on DynamoDB (moto): one suite, both twins."""

from __future__ import annotations

from typing import Any

import pytest

from ragline.errors import Conflict, NotFound
from ragline.knowledge_bases import KnowledgeBase, KnowledgeBaseStatus
from tests.contract.test_metadata_store import add, make_document, ordered_id


def make_kb(tenant_id: str = "t1", name: str = "Manuals", **fields: Any) -> KnowledgeBase:
    return KnowledgeBase(id=fields.pop("id", None) or ordered_id("kb"), tenant_id=tenant_id, name=name, **fields)


def test_create_get_and_list_in_id_order(metadata_store: Any) -> None:
    first = make_kb(name="Manuals", description="how-tos", chunk_size=128, chunk_overlap=16)
    second = make_kb(name="Contracts")
    metadata_store.create_kb(second)
    metadata_store.create_kb(first)
    assert metadata_store.get_kb("t1", first.id) == first
    assert [kb.id for kb in metadata_store.list_kbs("t1")] == sorted([first.id, second.id])
    assert metadata_store.get_kb("t1", "kb_missing") is None


def test_names_are_unique_per_tenant_whatever_their_case(metadata_store: Any) -> None:
    metadata_store.create_kb(make_kb(name="Manuals"))
    with pytest.raises(Conflict):
        metadata_store.create_kb(make_kb(name="manuals "))
    metadata_store.create_kb(make_kb("t2", name="Manuals"))  # another tenant may use it
    assert [kb.name for kb in metadata_store.list_kbs("t1")] == ["Manuals"]


def test_the_same_id_twice_is_a_conflict(metadata_store: Any) -> None:
    metadata_store.create_kb(make_kb(id="default", name="Default"))
    with pytest.raises(Conflict):
        metadata_store.create_kb(make_kb(id="default", name="Other"))


def test_another_tenants_kb_is_absent(metadata_store: Any) -> None:
    kb = make_kb("t1")
    metadata_store.create_kb(kb)
    assert metadata_store.get_kb("t2", kb.id) is None
    assert metadata_store.list_kbs("t2") == []
    assert metadata_store.mark_kb_deleting("t2", kb.id) is None
    with pytest.raises(NotFound):
        metadata_store.update_kb("t2", kb.id, {"description": "x"})
    metadata_store.delete_kb("t2", kb.id)
    assert metadata_store.get_kb("t1", kb.id) == kb


def test_update_and_rename_move_the_name(metadata_store: Any) -> None:
    kb = make_kb(name="Manuals", chunk_size=100, chunk_overlap=10)
    other = make_kb(name="Contracts")
    metadata_store.create_kb(kb)
    metadata_store.create_kb(other)
    changed = metadata_store.update_kb("t1", kb.id, {"description": "new", "chunk_size": None})
    assert (changed.description, changed.chunk_size, changed.chunk_overlap) == ("new", None, 10)
    with pytest.raises(Conflict):
        metadata_store.update_kb("t1", kb.id, {"name": "CONTRACTS"})
    assert metadata_store.get_kb("t1", kb.id).name == "Manuals"
    renamed = metadata_store.update_kb("t1", kb.id, {"name": "Guides"})
    assert renamed.name == "Guides"
    metadata_store.create_kb(make_kb(name="Manuals"))  # the old name is free again
    with pytest.raises(Conflict):
        metadata_store.create_kb(make_kb(name="guides"))
    assert metadata_store.update_kb("t1", kb.id, {"name": "guides"}).name == "guides"  # its own name, other case


def test_deleting_then_deleted(metadata_store: Any) -> None:
    kb = make_kb(name="Manuals")
    keep = make_kb(name="Keep")
    elsewhere = make_kb("t2", name="Manuals")
    for one in (kb, keep, elsewhere):
        metadata_store.create_kb(one)
    assert metadata_store.deleting_kb_ids("t1") == set()
    marked = metadata_store.mark_kb_deleting("t1", kb.id)
    assert marked is not None and marked.status == KnowledgeBaseStatus.DELETING
    metadata_store.mark_kb_deleting("t2", elsewhere.id)
    assert metadata_store.deleting_kb_ids("t1") == {kb.id}
    assert [(k.tenant_id, k.id) for k in metadata_store.kbs_deleting()] == [("t1", kb.id), ("t2", elsewhere.id)]
    metadata_store.delete_kb("t1", kb.id)
    assert metadata_store.get_kb("t1", kb.id) is None
    assert metadata_store.deleting_kb_ids("t1") == set()
    assert [k.id for k in metadata_store.kbs_deleting()] == [elsewhere.id]
    metadata_store.create_kb(make_kb(name="Manuals"))  # its name is free once it is gone
    metadata_store.delete_kb("t1", kb.id)  # twice: nothing


def test_document_counts_per_kb(metadata_store: Any) -> None:
    add(metadata_store, make_document(kb_id="kb_a", chunk_count=3))
    add(metadata_store, make_document(kb_id="kb_a", chunk_count=4))
    add(metadata_store, make_document(kb_id="default", chunk_count=1))
    add(metadata_store, make_document("t2", kb_id="kb_a", chunk_count=9))
    assert metadata_store.kb_document_counts("t1") == {"kb_a": (2, 7), "default": (1, 1)}
    assert metadata_store.kb_document_counts("t3") == {}
