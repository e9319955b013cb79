"""The drop folder, one rule for the local inbox (a watched directory) and the S3 one (``inbox/``).

A file at ``<tenant>/<path>`` belongs to that tenant; its external id is ``inbox:<tenant>/<path>``,
so overwriting it makes a new version and removing it deletes the document, wherever it lives.
``DropFolder.apply`` makes that so for one path; the local watcher and the S3 event handler only
tell it which path may have changed and how to read it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from ragline.errors import NotFound
from ragline.ingest.service import IngestService
from ragline.models import TENANT_ID_PATTERN

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


class DropFolder:
    def __init__(self, ingest: IngestService) -> None:
        self.ingest = ingest

    def apply(self, relative: str, read: Callable[[], bytes | None], *, expected: bool | None = None) -> bool:
        """Make the document of ``<tenant>/<path>`` follow the file there now; True when a job was queued.

        ``read`` returns the file's bytes, or None when no file is there. A file is ingested: a new
        document, or a new version of the one with its external id (identical bytes change
        nothing). No file deletes that document. ``expected`` is what an event said (True:
        created or overwritten, False: removed); when the file's current state contradicts it,
        the event is stale (events arrive out of order) and is ignored: the event that made the
        current state is applied as well. A file no retry can help (wrong type, too large) is
        reported by ``error.ingestion``; DependencyUnavailable means try again later.
        """
        tenant = drop_target(relative)
        if tenant is None:
            return False
        data = read()
        if expected is not None and expected != (data is not None):
            log.info(
                "drop folder: %s was %s since that event; ignoring it", relative, "removed" if expected else "put back"
            )
            return False
        if data is None:
            self._delete(tenant, relative)
            return False
        return self._ingest(tenant, relative, data)

    def _ingest(self, tenant: str, relative: str, data: bytes) -> bool:
        accepted = self.ingest.accept_or_report(
            tenant,
            {"key": INBOX_PREFIX + relative},
            data,
            filename=relative.rsplit("/", 1)[-1],
            external_id=external_id_for(relative),
            source=INBOX_SOURCE,
        )
        if accepted is None or accepted.duplicate:
            return False
        log.info("drop folder: %s queued as %s (job %s)", relative, accepted.document.id, accepted.job_id)
        return True

    def _delete(self, tenant: str, relative: str) -> None:
        document = self.ingest.store.find_document(tenant, external_id=external_id_for(relative))
        if document is None:
            return
        try:
            self.ingest.delete(tenant, document.id)
        except NotFound:
            return  # deleted meanwhile by someone else
        log.info("drop folder: %s removed; deleted %s", relative, document.id)
