"""Knowledge bases in-process (SQLite, the embedded engine, the in-process bus): kb.created and
kb.deleted with thin data, a delete hiding the KB from search at once and leaving zero chunks, a purge
resumed after a crash, the drop folder's KB sub-folders, and the ingest queue's purge message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragline.errors import Conflict, NotFound
from ragline.ingest.messages import KbPurgeMessage, kb_purge_message, parse_message
from ragline.knowledge_bases import CreateKnowledgeBaseRequest, KnowledgeBaseService, KnowledgeBaseStatus
from ragline.models import SearchRequest
from ragline.retrieval.filters import Term
from ragline.retrieval.service import SearchService
from tests.integration.local_world import World, open_world
from tests.integration.test_drop_folder_rule import LocalInbox

OTTERS = "Sea otters hold hands while they sleep so that they do not drift apart on the water."
BRIDGES = "Suspension bridges carry their deck on vertical hangers hung from two main cables."
GLACIERS = "Glaciers carve U-shaped valleys as they grind slowly downhill over thousands of years."


class Later:
    """A purge scheduler that runs nothing until told (a server that stops before the purge ran)."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[str, str]] = []

    def schedule(self, tenant_id: str, kb_id: str) -> None:
        self.scheduled.append((tenant_id, kb_id))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    opened = open_world(tmp_path / "data")
    yield opened
    opened.close()


def kb_service(world: World, purges: Later) -> KnowledgeBaseService:
    service = KnowledgeBaseService(
        world.store,
        world.ingest.events,
        world.ingest.check_chunking,
        purges,
        lambda: world.ingest,
        lambda: world.index,
    )
    world.ingest.knowledge_bases = service
    return service


def index_all(world: World) -> None:
    while world.worker().run_once():
        pass


def hits(search: SearchService, tenant: str, query: str) -> list[dict]:
    found = search.search(tenant, SearchRequest(query=query, limit=50, mode="keyword"))
    return [item.payload for item in found.items]


def test_created_and_deleted_events_have_thin_data_and_the_delete_leaves_nothing(world: World) -> None:
    purges = Later()
    kbs = kb_service(world, purges)
    manuals = kbs.create("t1", CreateKnowledgeBaseRequest(name="Manuals"))
    assert [(e["tenant_id"], e["data"]) for e in world.published("kb.created")] == [
        ("t1", {"kb_id": manuals.id, "name": "Manuals"})
    ]
    doomed = [
        world.ingest.accept("t1", text.encode(), filename=f"{n}.txt", kb_id=manuals.id).document.id
        for n, text in enumerate((OTTERS, BRIDGES))
    ]
    kept = world.ingest.accept("t1", GLACIERS.encode(), filename="g.txt").document.id  # default KB
    index_all(world)
    search = SearchService(world.index, world.embedder, hidden=kbs.hidden_from_search)
    assert {p["document_id"] for p in hits(search, "t1", "otters bridges glaciers")} == {*doomed, kept}
    assert kbs.show(kbs.get("t1", manuals.id)).document_count == 2

    deleting = kbs.delete("t1", manuals.id)
    assert deleting.status == KnowledgeBaseStatus.DELETING and purges.scheduled == [("t1", manuals.id)]
    # Hidden at once, before any chunk is removed (they are all still in the index).
    assert world.index.count("t1", Term("kb_id", (manuals.id,))) > 0
    assert {p["document_id"] for p in hits(search, "t1", "otters bridges glaciers")} == {kept}
    with pytest.raises(Conflict):
        world.ingest.accept("t1", b"late upload", filename="late.txt", kb_id=manuals.id)

    assert kbs.purge("t1", manuals.id) is True
    assert world.index.count("t1", Term("kb_id", (manuals.id,))) == 0
    assert all(world.store.get_document("t1", d) is None for d in doomed)
    assert not list((world.settings.blob_dir / "t1").glob(f"{doomed[0]}*"))
    with pytest.raises(NotFound):
        kbs.get("t1", manuals.id)
    [deleted] = world.published("kb.deleted")
    assert (deleted["tenant_id"], deleted["data"]) == (
        "t1",
        {"kb_id": manuals.id, "name": "Manuals", "document_count": 2},
    )
    types = [e["type"] for e in world.events]
    assert types.index("kb.deleted") > max(i for i, t in enumerate(types) if t == "document.deleted")
    assert {p["document_id"] for p in hits(search, "t1", "otters bridges glaciers")} == {kept}
    assert kbs.purge("t1", manuals.id) is False  # idempotent: nothing left to do


def test_the_default_kb_exists_and_cannot_be_deleted(world: World) -> None:
    kbs = kb_service(world, Later())
    listed, _ = kbs.list("t1", limit=10, cursor=None)
    assert [kb.id for kb in listed] == ["default"]
    with pytest.raises(Conflict):
        kbs.delete("t1", "default")
    assert world.published("kb.created") == []  # the default KB is not "created" by anyone


def test_a_purge_cut_short_is_resumed(world: World) -> None:
    kbs = kb_service(world, Later())  # the purge never runs: the server stopped
    manuals = kbs.create("t1", CreateKnowledgeBaseRequest(name="Manuals"))
    world.ingest.accept("t1", OTTERS.encode(), filename="o.txt", kb_id=manuals.id)
    index_all(world)
    kbs.delete("t1", manuals.id)
    # The next start: a new service over the same store.
    assert kb_service(world, Later()).resume_purges() == 1
    assert world.index.count("t1", Term("kb_id", (manuals.id,))) == 0
    assert world.store.get_kb("t1", manuals.id) is None
    assert len(world.published("kb.deleted")) == 1


def test_unknown_kb_is_refused_before_anything_is_stored_and_kb_chunk_defaults_apply(world: World) -> None:
    kbs = kb_service(world, Later())
    with pytest.raises(NotFound):
        world.ingest.accept("t1", OTTERS.encode(), filename="o.txt", kb_id="kb_nope")
    assert world.store.list_documents("t1")[0] == []
    small = kbs.create("t1", CreateKnowledgeBaseRequest(name="Small", chunk_size=40, chunk_overlap=0))
    inherits = world.ingest.accept("t1", b"one two three", filename="a.txt", kb_id=small.id).document
    own = world.ingest.accept("t1", b"four five six", filename="b.txt", kb_id=small.id, chunk_size=64).document
    elsewhere = world.ingest.accept("t1", b"seven eight", filename="c.txt").document
    assert (inherits.chunk_size, inherits.chunk_overlap) == (40, 0)
    assert (own.chunk_size, own.chunk_overlap) == (64, 0)
    assert (elsewhere.chunk_size, elsewhere.chunk_overlap) == (32, 4)  # the world's server settings
    with pytest.raises(NotFound):
        world.ingest.accept("t2", b"other tenant", filename="d.txt", kb_id=small.id)


def test_drop_folder_sub_folders_that_name_a_kb_go_to_it(world: World, tmp_path: Path) -> None:
    kbs = kb_service(world, Later())
    manuals = kbs.create("t1", CreateKnowledgeBaseRequest(name="Manuals"))
    inbox = LocalInbox(world, tmp_path / "inbox")
    paths = {
        f"t1/{manuals.id}/guide.txt": OTTERS,  # a KB of t1: goes to it
        f"t1/{manuals.id}/deeper/more.txt": BRIDGES,  # anywhere below it
        "t1/reports/q1.txt": GLACIERS,  # an ordinary folder: default
        "t1/top.txt": "Top level file about rivers.",  # directly under the tenant: default
    }
    for path, text in paths.items():
        inbox.put(path, text.encode())
        inbox.event(path, True)
    kb_of = {path: world.store.find_document("t1", external_id=f"inbox:{path}").kb_id for path in paths}
    assert kb_of == {
        f"t1/{manuals.id}/guide.txt": manuals.id,
        f"t1/{manuals.id}/deeper/more.txt": manuals.id,
        "t1/reports/q1.txt": "default",
        "t1/top.txt": "default",
    }
    # Another tenant's folder of the same name is an ordinary folder for it.
    inbox.put(f"t2/{manuals.id}/x.txt", b"tenant two's file")
    inbox.event(f"t2/{manuals.id}/x.txt", True)
    assert world.store.find_document("t2", external_id=f"inbox:t2/{manuals.id}/x.txt").kb_id == "default"


def test_the_ingest_queue_carries_purges(world: World) -> None:
    body = json.dumps(kb_purge_message("t1", "kb_1"))
    assert parse_message(body) == [KbPurgeMessage("t1", "kb_1")]
    purged: list[tuple[str, str]] = []
    handler = world.handler()
    handler.purge_kb = lambda tenant, kb: purged.append((tenant, kb))
    handler.handle(body)
    assert purged == [("t1", "kb_1")]
