"""The drop-folder rule (DropFolder.apply) through both of its event sources: the local inbox
(InboxSync: "this path may have changed") and the S3 inbox (IngestMessageHandler: "created" or
"removed" notifications, at least once and in any order). The same story ends the same way on both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from ragline.adapters.local.filesystem import FilesystemBlobStore
from ragline.inbox import InboxSync
from tests.integration.local_world import World, open_world

BUCKET = "documents"
V1 = b"Sea otters hold hands while they sleep so that they do not drift apart."
V2 = b"Suspension bridges carry their deck on vertical hangers from two main cables."
EXE = b"MZ\x90\x00\x03" + bytes(range(256))


class LocalInbox:
    """Files in a directory; an event is the watcher handing a path to InboxSync."""

    def __init__(self, world: World, root: Path) -> None:
        self.root = root
        self.queued = 0
        self.sync = InboxSync(root, world.ingest, world.store, self._on_queued)

    def _on_queued(self) -> None:
        self.queued += 1

    def put(self, relative: str, data: bytes) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def remove(self, relative: str) -> None:
        (self.root / relative).unlink()

    def event(self, relative: str, created: bool) -> None:
        self.sync.sync(self.root / relative)


class S3Inbox:
    """Objects under inbox/ (a filesystem blob store stands in for S3); an event is an SQS message."""

    def __init__(self, world: World, root: Path) -> None:
        self.objects = FilesystemBlobStore(root)
        settings = world.settings.model_copy(update={"documents_bucket": BUCKET})
        self.handler = world.handler(inbox=self.objects)
        self.handler.settings = settings

    def put(self, relative: str, data: bytes) -> None:
        self.objects.put(relative, data)

    def remove(self, relative: str) -> None:
        self.objects.delete(relative)

    def event(self, relative: str, created: bool) -> None:
        name = "ObjectCreated:Put" if created else "ObjectRemoved:Delete"
        record = {
            "eventName": name,
            "s3": {"bucket": {"name": BUCKET}, "object": {"key": quote_plus(f"inbox/{relative}")}},
        }
        self.handler.handle(json.dumps({"Records": [record]}))


A = "t1/notes/a b.txt"
# (story: file operations and events as they arrive; the document's versions as uploaded, whether
# it exists at the end, and the files reported as rejected)
STORIES: list[tuple[str, list[tuple[Any, ...]], dict[str, Any]]] = [
    ("new file", [("put", A, V1), ("event", A, True)], {"uploaded": [1], "exists": True}),
    (
        "overwritten",
        [("put", A, V1), ("event", A, True), ("put", A, V2), ("event", A, True)],
        {"uploaded": [1, 2], "exists": True},
    ),
    (
        "same bytes again, and an event delivered twice",
        [("put", A, V1), ("event", A, True), ("event", A, True), ("put", A, V1), ("event", A, True)],
        {"uploaded": [1], "exists": True},
    ),
    (
        "removed",
        [("put", A, V1), ("event", A, True), ("remove", A), ("event", A, False)],
        {"uploaded": [1], "exists": False},
    ),
    (
        "created and removed before either event arrived, removal first",
        [("put", A, V1), ("remove", A), ("event", A, False), ("event", A, True)],
        {"uploaded": [], "exists": False},
    ),
    (
        "a stale removal arriving after the file was put back",
        [("put", A, V1), ("event", A, True), ("remove", A), ("put", A, V2), ("event", A, True), ("event", A, False)],
        {"uploaded": [1, 2], "exists": True},
    ),
    (
        "a stale creation arriving after the file was removed",
        [("put", A, V1), ("event", A, True), ("remove", A), ("event", A, False), ("event", A, True)],
        {"uploaded": [1], "exists": False},
    ),
    (
        "an unsupported file is reported, not ingested",
        [("put", "t1/tool.exe", EXE), ("event", "t1/tool.exe", True)],
        {"uploaded": [], "exists": False, "rejected": [("inbox/t1/tool.exe", 415)]},
    ),
    (
        "temporary files and folders that are no tenant are ignored",
        [("put", "t1/.~lock.txt", V1), ("event", "t1/.~lock.txt", True), ("put", "no tenant!/x.txt", V2)]
        + [("event", "no tenant!/x.txt", True)],
        {"uploaded": [], "exists": False},
    ),
]


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    opened = open_world(tmp_path / "data")
    yield opened
    opened.close()


@pytest.mark.parametrize("source", [LocalInbox, S3Inbox])
@pytest.mark.parametrize(("story", "steps", "expected"), STORIES, ids=[story for story, _, _ in STORIES])
def test_the_drop_folder_rule(world: World, tmp_path: Path, source, story, steps, expected) -> None:
    inbox = source(world, tmp_path / "inbox")
    for kind, relative, *rest in steps:
        if kind == "put":
            inbox.put(relative, rest[0])
        elif kind == "remove":
            inbox.remove(relative)
        else:
            inbox.event(relative, rest[0])
    document = world.store.find_document("t1", external_id=f"inbox:{A}")
    rejected = [(e["data"]["key"], e["data"]["code"]) for e in world.published("error.ingestion")]
    assert {
        "uploaded": [e["data"]["version"] for e in world.published("document.uploaded")],
        "exists": document is not None,
        "rejected": rejected,
    } == {"rejected": [], **expected}
    if document is not None:
        assert (document.source, document.filename) == ("inbox", "a b.txt")
    if source is LocalInbox:
        assert inbox.queued == len(expected["uploaded"])  # the worker is woken for each queued job
