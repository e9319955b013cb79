"""The local drop folder: files under <inbox>/<tenant_id>/… are ingested for that tenant.

What a file's state means (new, overwritten, removed) is the drop-folder rule of
``ragline.ingest.dropfolder``, shared with the S3 inbox; this module only finds the paths that
changed. Events are debounced until a file stops changing; on start the folder is reconciled
with what is stored, so changes made while the server was down are not lost.

A burst (one ``sync.completed`` per tenant it changed) runs from the first change that settled
until no change is pending any more, i.e. until the folder has been quiet for the settle time,
and lasts at most ``max_burst_seconds`` so a folder that never goes quiet still reports. The
reconciliation on start is one burst too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_ATTRIB,
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from ragline.errors import DependencyUnavailable
from ragline.ingest.dropfolder import EXTERNAL_ID_PREFIX, INBOX_SOURCE, Change, DropBurst, DropFolder
from ragline.ingest.service import IngestService
from ragline.ports import MetadataStore

log = logging.getLogger(__name__)


class InboxSync:
    """Applies the state of one inbox path (the drop-folder rule: ``DropFolder.apply``)."""

    def __init__(self, inbox: Path, ingest: IngestService, store: MetadataStore, on_queued: Callable[[], None]) -> None:
        self.inbox = inbox
        self.root = inbox.resolve()
        self.drop_folder = DropFolder(ingest, inbox="local")
        self.store = store
        self.on_queued = on_queued

    def burst(self) -> AbstractContextManager[DropBurst]:
        """Paths synced inside make one burst: one sync.completed per tenant when it ends."""
        return self.drop_folder.burst()

    def sync(self, path: Path) -> Change:
        try:
            relative = path.relative_to(self.inbox).as_posix()
        except ValueError:
            return Change.IGNORED
        if self._escapes_its_tenant(path, relative):
            return Change.IGNORED
        try:
            change = self.drop_folder.apply(relative, lambda: _read_no_follow(path) if path.is_file() else None)
        except DependencyUnavailable as exc:
            log.warning("inbox: %s not applied: %s", relative, exc.message)
            return Change.IGNORED
        except OSError as exc:  # reading it is reported by apply: this is storing it (a full disk)
            log.warning("inbox: %s could not be applied: %s", relative, exc)
            return Change.IGNORED
        if change.queued:
            self.on_queued()
        return change

    def _escapes_its_tenant(self, path: Path, relative: str) -> bool:
        """A symlink, or a path that resolves outside ``<inbox>/<tenant>/``: ingesting it would hand the
        tenant a file from elsewhere on the machine, or from another tenant's folder."""
        tenant_dir = (self.inbox / relative.split("/", 1)[0]).resolve()
        if path.is_symlink() or not path.resolve().is_relative_to(tenant_dir) or tenant_dir.parent != self.root:
            log.warning("inbox: ignoring %s: a symlink or a path outside its tenant's folder", relative)
            return True
        return False

    def reconcile(self) -> None:
        self.inbox.mkdir(parents=True, exist_ok=True)
        with self.burst():
            for path in sorted(p for p in self.inbox.rglob("*") if p.is_file()):
                self.sync(path)
            for doc in self.store.documents_from_source(INBOX_SOURCE):
                if doc.external_id and doc.external_id.startswith(EXTERNAL_ID_PREFIX):
                    path = self.inbox / doc.external_id[len(EXTERNAL_ID_PREFIX) :]
                    if not path.exists():
                        self.sync(path)


def _read_no_follow(path: Path) -> bytes | None:
    """The file's bytes, None when it is gone; O_NOFOLLOW: a symlink swapped in after the check is refused."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(descriptor, "rb") as file:
        return file.read()


# What changes a file's bytes, presence or readability. Not "opened" or "closed without write":
# reading a file (as sync does) makes those, and taking them for changes re-read every file forever.
CHANGE_EVENTS = frozenset(
    {
        EVENT_TYPE_CREATED,
        EVENT_TYPE_MODIFIED,
        EVENT_TYPE_CLOSED,  # closed after writing
        EVENT_TYPE_MOVED,
        EVENT_TYPE_DELETED,
        EVENT_TYPE_ATTRIB,  # e.g. made readable
    }
)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: InboxWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in CHANGE_EVENTS:
            return
        if event.is_directory and event.event_type != EVENT_TYPE_DELETED:
            return
        paths = [event.src_path]
        dest = getattr(event, "dest_path", "")
        if dest:
            paths.append(dest)
        for raw in paths:
            self.watcher.touch(Path(raw if isinstance(raw, str) else raw.decode()))


class InboxWatcher:
    def __init__(self, sync: InboxSync, *, settle_seconds: float = 0.5, max_burst_seconds: float = 60.0) -> None:
        self.sync = sync
        self.settle_seconds = settle_seconds
        self.max_burst_seconds = max_burst_seconds
        self._pending: dict[Path, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observer = Observer()
        self._thread = threading.Thread(target=self._drain_loop, name="inbox", daemon=True)

    def touch(self, path: Path) -> None:
        with self._lock:
            self._pending[path] = time.monotonic()

    def start(self) -> None:
        self.sync.reconcile()
        self._observer.schedule(_Handler(self), str(self.sync.inbox), recursive=True)
        self._observer.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._observer.stop()
        self._observer.join(timeout=5)
        self._thread.join(timeout=5)

    def _drain_loop(self) -> None:
        while not self._stop.wait(0.1):
            ready = self._take_settled()
            if not ready:
                continue
            # A burst: this change and every one still pending, until nothing is (or it runs too long).
            started = time.monotonic()
            with self.sync.burst():
                self._apply(ready)
                while self._has_pending() and time.monotonic() - started < self.max_burst_seconds:
                    if self._stop.wait(0.1):
                        break
                    self._apply(self._take_settled())

    def _take_settled(self) -> list[Path]:
        """The paths left alone for the settle time, taken off the pending ones."""
        now = time.monotonic()
        with self._lock:
            ready = [p for p, t in self._pending.items() if now - t >= self.settle_seconds]
            for path in ready:
                del self._pending[path]
        return ready

    def _has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def _apply(self, paths: Iterable[Path]) -> None:
        for path in paths:
            if path.is_dir():
                for child in path.rglob("*"):
                    if child.is_file():
                        self.sync.sync(child)
            else:
                self.sync.sync(path)
