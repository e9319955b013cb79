"""The drop folder, one rule for the local inbox (a watched directory) and the S3 one (``inbox/``).

A file at ``<tenant>/<path>`` belongs to that tenant; its external id is ``inbox:<tenant>/<path>``,
so overwriting it makes a new version and removing it deletes the document, wherever it lives.
A file at ``<tenant>/<kb>/<path>``, where ``<kb>`` is the id of one of the tenant's knowledge bases
(not being deleted), goes to that knowledge base; under any other folder (or directly under
``<tenant>/``) to the ``default`` one, keeping its whole path as before.
``DropFolder.apply`` makes that so for one path; the local watcher and the S3 event handler only
tell it which path may have changed and how to read it.

Changes come in bursts (a folder copied in, a sync tool's run). What one burst changed is
announced by one ``sync.completed`` event per tenant (docs/events.md): the caller says where a
burst begins and ends (``DropFolder.burst``) — the local watcher, from the first settled change
until nothing is pending; the S3 inbox, one batch of notifications handled by one invocation.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum

from ragline.errors import Conflict, DependencyUnavailable, NotFound
from ragline.ingest.service import IngestService
from ragline.models import TENANT_ID_PATTERN, utcnow
from ragline.ports import EventBus

log = logging.getLogger(__name__)

INBOX_SOURCE = "inbox"
INBOX_PREFIX = "inbox/"  # where the drop folder lives in the documents bucket; events name files by it
EXTERNAL_ID_PREFIX = "inbox:"
# Editors' and downloaders' temporary files: ingesting them would index half-written bytes.
IGNORED_SUFFIXES = ("~", ".tmp", ".part", ".swp", ".crdownload")


def external_id_for(relative: str) -> str:
    return f"{EXTERNAL_ID_PREFIX}{relative}"


def is_ignored_name(name: str) -> bool:
    return name.startswith((".", "~")) or name.endswith(IGNORED_SUFFIXES)


def drop_target(relative: str) -> str | None:
    """The tenant a drop-folder path (``<tenant>/<path>``, '/'-separated) belongs to, or None to ignore it."""
    parts = relative.split("/")
    if len(parts) < 2 or not parts[-1] or is_ignored_name(parts[-1]):
        return None
    if any(part in ("", ".", "..") for part in parts):  # "inbox/a/../b/x" must not reach tenant b's folder
        log.warning("drop folder: ignoring %s: empty, '.' or '..' path segments", relative)
        return None
    tenant = parts[0]
    if not re.fullmatch(TENANT_ID_PATTERN, tenant):
        log.warning("drop folder: %r is not a valid tenant folder name; ignoring %s", tenant, relative)
        return None
    return tenant


class Change(StrEnum):
    """What applying one drop-folder path did."""

    ADDED = "added"  # a new document, queued
    UPDATED = "updated"  # a new version of the path's document, queued
    DELETED = "deleted"  # the path's document is deleted
    FAILED = "failed"  # the file was refused (unsupported, too large, unreadable): error.ingestion says why
    UNCHANGED = "unchanged"  # identical bytes, or a removed file that had no document
    IGNORED = "ignored"  # not a drop-folder file (temporary name, no tenant), or a stale event

    @property
    def queued(self) -> bool:
        return self in (Change.ADDED, Change.UPDATED)


# The counts every sync.completed carries, zero or not.
SYNC_COUNTS = (Change.ADDED, Change.UPDATED, Change.DELETED, Change.FAILED, Change.UNCHANGED)


class DropBurst:
    """What one burst of drop-folder changes did, per tenant. ``finish`` publishes one
    ``sync.completed`` per tenant the burst changed something for (a burst of identical bytes,
    temporary files and stale events alone says nothing)."""

    def __init__(self, events: EventBus, inbox: str) -> None:
        self.events = events
        self.inbox = inbox  # "local" or "s3"
        self.started_at = utcnow()
        self.counts: dict[str, Counter[Change]] = {}

    def record(self, tenant: str, change: Change) -> None:
        if change != Change.IGNORED:
            self.counts.setdefault(tenant, Counter())[change] += 1

    def finish(self) -> None:
        finished_at = utcnow()
        for tenant, counts in sorted(self.counts.items()):
            if counts.total() == counts[Change.UNCHANGED]:
                continue
            data = {
                "source": INBOX_SOURCE,
                "inbox": self.inbox,
                **{change.value: counts[change] for change in SYNC_COUNTS},
                "started_at": self.started_at,
                "finished_at": finished_at,
            }
            try:
                self.events.publish("sync.completed", tenant, data)
            except DependencyUnavailable as exc:
                # The bus and its outbox both down. Every change was applied and its own events
                # went out (or failed) with it: failing the burst for its summary would only
                # make the S3 batch come back, to find nothing left to do.
                log.error("drop folder: sync.completed for %s lost: %s", tenant, exc.message)
        self.counts.clear()


class DropFolder:
    def __init__(self, ingest: IngestService, *, inbox: str) -> None:
        self.ingest = ingest
        self.inbox = inbox  # "local" or "s3": where sync.completed says the burst happened
        self._current = threading.local()  # each thread's open burst

    @contextmanager
    def burst(self) -> Iterator[DropBurst]:
        """Every path applied inside belongs to one burst, announced when the block ends (also when
        it ends by an exception: what was applied was applied). Inside an open burst, part of it."""
        open_burst: DropBurst | None = getattr(self._current, "burst", None)
        if open_burst is not None:
            yield open_burst
            return
        burst = self._current.burst = DropBurst(self.ingest.events, self.inbox)
        try:
            yield burst
        finally:
            self._current.burst = None
            burst.finish()

    def apply(self, relative: str, read: Callable[[], bytes | None], *, expected: bool | None = None) -> Change:
        """Make the document of ``<tenant>/<path>`` follow the file there now; says what that did.

        ``read`` returns the file's bytes, or None when no file is there. A file is ingested: a new
        document, or a new version of the one with its external id (identical bytes change
        nothing). No file deletes that document. ``expected`` is what an event said (True:
        created or overwritten, False: removed); when the file's current state contradicts it,
        the event is stale (events arrive out of order) and is ignored: the event that made the
        current state is applied as well. A file no retry can help (wrong type, too large,
        unreadable: OSError from ``read``) is reported by ``error.ingestion``; DependencyUnavailable
        means try again later (and the path counts in no burst until then). Outside a ``burst``
        block the path is a burst of its own.
        """
        tenant = drop_target(relative)
        if tenant is None:
            return Change.IGNORED
        with self.burst() as burst:
            change = self._apply(tenant, relative, read, expected)
            burst.record(tenant, change)
        return change

    def _apply(self, tenant: str, relative: str, read: Callable[[], bytes | None], expected: bool | None) -> Change:
        try:
            data = read()
        except OSError as exc:
            # Not the server's path in the event: only why (permission denied, I/O error).
            reason = exc.strerror or type(exc).__name__
            self.ingest.report_refused(
                tenant, {"key": INBOX_PREFIX + relative}, f"the file could not be read: {reason}"
            )
            return Change.FAILED
        if expected is not None and expected != (data is not None):
            log.info(
                "drop folder: %s was %s since that event; ignoring it", relative, "removed" if expected else "put back"
            )
            return Change.IGNORED
        if data is None:
            return self._delete(tenant, relative)
        return self._ingest(tenant, relative, data)

    def _knowledge_base(self, tenant: str, relative: str) -> str | None:
        """The KB a file's first sub-folder names, if it is one of the tenant's (else None: the document's
        own, or ``default`` for a new one)."""
        parts = relative.split("/")
        if len(parts) < 3 or self.ingest.knowledge_bases is None or not re.fullmatch(TENANT_ID_PATTERN, parts[1]):
            return None
        try:
            return self.ingest.knowledge_bases.for_upload(tenant, parts[1]).id
        except (NotFound, Conflict):
            return None  # an ordinary folder (or a KB being deleted)

    def _ingest(self, tenant: str, relative: str, data: bytes) -> Change:
        accepted = self.ingest.accept_or_report(
            tenant,
            {"key": INBOX_PREFIX + relative},
            data,
            filename=relative.rsplit("/", 1)[-1],
            external_id=external_id_for(relative),
            source=INBOX_SOURCE,
            kb_id=self._knowledge_base(tenant, relative),
        )
        if accepted is None:
            return Change.FAILED
        if accepted.duplicate:
            return Change.UNCHANGED
        log.info("drop folder: %s queued as %s (job %s)", relative, accepted.document.id, accepted.job_id)
        return Change.ADDED if accepted.document.version == 1 else Change.UPDATED

    def _delete(self, tenant: str, relative: str) -> Change:
        document = self.ingest.store.find_document(tenant, external_id=external_id_for(relative))
        if document is None:
            return Change.UNCHANGED
        try:
            self.ingest.delete(tenant, document.id)
        except NotFound:
            return Change.UNCHANGED  # deleted meanwhile by someone else
        log.info("drop folder: %s removed; deleted %s", relative, document.id)
        return Change.DELETED
