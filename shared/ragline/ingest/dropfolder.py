"""Drop-folder rules shared by the local inbox (a watched directory) and the S3 one (``inbox/``).

A file at ``<tenant>/<path>`` belongs to that tenant; its external id is ``inbox:<tenant>/<path>``,
so overwriting it makes a new version and removing it deletes the document, wherever it lives.
"""

from __future__ import annotations

import logging
import re

from ragline.models import TENANT_ID_PATTERN

log = logging.getLogger(__name__)

INBOX_SOURCE = "inbox"
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
    tenant = parts[0]
    if not re.fullmatch(TENANT_ID_PATTERN, tenant):
        log.warning("drop folder: %r is not a valid tenant folder name; ignoring %s", tenant, relative)
        return None
    return tenant
