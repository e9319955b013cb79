"""The local drop-folder watcher (real watchdog observer, real files) acts on real changes only.

Reading a file makes "opened" and "closed without write" events; a watcher that took those for
changes read every file it had just read again after each settle period, forever.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
)

import ragline.inbox as inbox_module
from ragline.inbox import InboxSync, InboxWatcher, _Handler
from tests.integration.local_world import World, open_world

SETTLE = 0.2
QUIET = 8 * SETTLE  # long enough for several rounds of a feedback loop


class Touched:
    def __init__(self) -> None:
        self.paths: list[str] = []

    def touch(self, path: Path) -> None:
        self.paths.append(path.as_posix())


@pytest.mark.parametrize(
    "event, touched",
    [
        (FileOpenedEvent("/in/t1/a.txt"), []),  # our own read
        (FileClosedNoWriteEvent("/in/t1/a.txt"), []),  # our own read
        (FileCreatedEvent("/in/t1/a.txt"), ["/in/t1/a.txt"]),
        (FileModifiedEvent("/in/t1/a.txt"), ["/in/t1/a.txt"]),
        (FileClosedEvent("/in/t1/a.txt"), ["/in/t1/a.txt"]),
        (FileAttribEvent("/in/t1/a.txt"), ["/in/t1/a.txt"]),
        (FileDeletedEvent("/in/t1/a.txt"), ["/in/t1/a.txt"]),
        (FileMovedEvent("/in/t1/a.txt", "/in/t1/b.txt"), ["/in/t1/a.txt", "/in/t1/b.txt"]),
        (DirCreatedEvent("/in/t1/sub"), []),  # its files have events of their own
        (DirModifiedEvent("/in/t1"), []),
        (DirDeletedEvent("/in/t1/sub"), ["/in/t1/sub"]),
    ],
)
def test_which_events_are_changes(event: FileSystemEvent, touched: list[str]) -> None:
    watcher = Touched()
    _Handler(watcher).on_any_event(event)  # type: ignore[arg-type]
    assert watcher.paths == touched


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    opened = open_world(tmp_path / "data")
    yield opened
    opened.close()


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError("condition never held")


def test_a_file_written_once_is_read_once_and_real_changes_still_act(world: World, tmp_path: Path, monkeypatch) -> None:
    inbox = tmp_path / "inbox"
    reads: Counter[str] = Counter()
    read_file = inbox_module._read_no_follow

    def counted_read(path: Path) -> bytes | None:
        if inbox in path.parents:
            reads[path.relative_to(inbox).as_posix()] += 1
        return read_file(path)

    monkeypatch.setattr(inbox_module, "_read_no_follow", counted_read)
    watcher = InboxWatcher(InboxSync(inbox, world.ingest, world.store, lambda: None), settle_seconds=SETTLE)
    watcher.start()
    try:
        (inbox / "t1").mkdir(parents=True)
        (inbox / "t1" / "a.txt").write_text("Sea otters hold hands while they sleep.")
        eventually(lambda: reads["t1/a.txt"] == 1)
        time.sleep(QUIET)
        assert reads == {"t1/a.txt": 1}  # not re-read after its own read
        first = world.store.find_document("t1", external_id="inbox:t1/a.txt")
        assert first is not None and first.version == 1

        (inbox / "t1" / "a.txt").write_text("Suspension bridges hang their deck from cables.")  # modified
        eventually(lambda: reads["t1/a.txt"] == 2)
        time.sleep(QUIET)
        assert reads == {"t1/a.txt": 2}
        assert world.store.get_document("t1", first.id).version == 2

        (inbox / "t1" / "a.txt").rename(inbox / "t1" / "b.txt")  # moved: one removed, one new
        moved = eventually(lambda: world.store.find_document("t1", external_id="inbox:t1/b.txt"))
        eventually(lambda: world.store.find_document("t1", external_id="inbox:t1/a.txt") is None)
        time.sleep(QUIET)
        assert reads == {"t1/a.txt": 2, "t1/b.txt": 1}

        (inbox / "t1" / "b.txt").unlink()  # deleted
        eventually(lambda: world.store.get_document("t1", moved.id) is None)
        time.sleep(QUIET)
        assert reads == {"t1/a.txt": 2, "t1/b.txt": 1}
        uploaded = [(e["data"]["filename"], e["data"]["version"]) for e in world.published("document.uploaded")]
        assert uploaded == [("a.txt", 1), ("a.txt", 2), ("b.txt", 1)]
    finally:
        watcher.stop()


def test_a_burst_of_changes_is_one_sync_completed_once_the_folder_settles(world: World, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "t1").mkdir(parents=True)
    (inbox / "t1" / "old.txt").write_text("Coral reefs are built by colonies of tiny animals.")
    watcher = InboxWatcher(InboxSync(inbox, world.ingest, world.store, lambda: None), settle_seconds=SETTLE)
    watcher.start()  # reconciling what was there is a burst of its own
    try:
        [reconciled] = world.published("sync.completed")
        assert (reconciled["data"]["added"], reconciled["data"]["inbox"]) == (1, "local")
        world.events.clear()

        # One burst: three files added, one removed, one refused, written one after the other
        # within less than the settle time of each other.
        (inbox / "t1" / "a.txt").write_text("Sea otters hold hands while they sleep.")
        (inbox / "t1" / "b.txt").write_text("Suspension bridges hang their deck from cables.")
        time.sleep(SETTLE / 2)
        (inbox / "t1" / "c.txt").write_text("Glaciers carve U-shaped valleys.")
        (inbox / "t1" / "old.txt").unlink()
        (inbox / "t1" / "tool.exe").write_bytes(b"MZ\x90\x00\x03" + bytes(range(256)))
        [synced] = eventually(lambda: world.published("sync.completed"))
        time.sleep(QUIET)
        assert world.published("sync.completed") == [synced]  # one, not one per file
        assert synced["tenant_id"] == "t1"
        counts = {name: synced["data"][name] for name in ("added", "updated", "deleted", "failed")}
        assert counts == {"added": 3, "updated": 0, "deleted": 1, "failed": 1}
        assert len(world.published("document.uploaded")) == 3
        assert [e["data"]["key"] for e in world.published("error.ingestion")] == ["inbox/t1/tool.exe"]
        # The burst ended once the folder had settled: every change was applied before the event.
        assert [e["type"] for e in world.events][-1] == "sync.completed"

        (inbox / "t1" / "a.txt").write_text("Sea otters sleep floating on their backs.")  # overwritten
        eventually(lambda: len(world.published("sync.completed")) == 2)
        assert world.published("sync.completed")[-1]["data"]["updated"] == 1
    finally:
        watcher.stop()
