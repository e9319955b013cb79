"""What a chunk carries beside its text and vector, and what a filter can match in it.

The rules ingestion, search and both vector engines share, each written once:
- the chunk id ``<document id>-v<version>-<position>``: written by ingestion, read back by search;
- the payload every chunk carries: its document's fields, the promoted metadata, and its own
  page, section, position and version;
- the filterable values of a payload: every path a filter can name (README.md, "Filters") with
  the scalars it holds. The reference semantics (``retrieval.filters.matches``), the embedded
  engine's posting lists and OpenSearch's filter tokens all read them from ``filterable_values``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ragline.models import Document

Scalar = str | int | float | bool
DocumentVersion = tuple[str, int]

# Payload fields a filter may name, beside any "metadata.<key>" path.
KEYWORD_FIELDS = frozenset(
    {
        "tenant_id",
        "kb_id",
        "document_id",
        "user_id",
        "tag_ids",
        "tag_names",
        "source",
        "type_name",
        "category_name",
        "content_type",
        "filename",
        "title",
        "external_id",
    }
)
NUMERIC_FIELDS = frozenset({"page"})
METADATA_PREFIX = "metadata."
# Keys of an upload's metadata that are also first-class filter fields of its chunks.
PROMOTED_METADATA = ("user_id", "tag_ids", "tag_names", "source", "type_name", "category_name")

# Anchored at the end, so whatever a document id contains, the suffix reads back unambiguously.
_CHUNK_ID = re.compile(r"^(?P<document>.+)-v(?P<version>[0-9]+)-[0-9]{5,}$")


# ---- chunk ids --------------------------------------------------------------------------------------
def chunk_id(document_id: str, version: int, position: int) -> str:
    """Ids carry the version, so a new version never overwrites the old one's chunks in place
    (OpenSearch swaps them only after a refresh); a redelivered job rewrites the same ids."""
    return f"{document_id}-v{version}-{position:05d}"


def chunk_version(chunk_id: str) -> DocumentVersion | None:
    """(document id, version) of a chunk id written by ``chunk_id``; None for any other id."""
    found = _CHUNK_ID.match(chunk_id)
    return (found["document"], int(found["version"])) if found else None


def next_chunk_id(chunk_id_: str) -> str | None:
    """The id of the chunk after this one in its document (whether it exists or not); None for other ids."""
    found = _CHUNK_ID.match(chunk_id_)
    if found is None:
        return None
    position = int(chunk_id_.rsplit("-", 1)[1])
    return chunk_id(found["document"], int(found["version"]), position + 1)


# ---- payloads -----------------------------------------------------------------------------------------
def document_payload(doc: Document) -> dict[str, Any]:
    """Fields every chunk of a document carries (and what delete-by-filter matches documents on)."""
    payload: dict[str, Any] = {
        "tenant_id": doc.tenant_id,
        "document_id": doc.id,
        "kb_id": doc.kb_id,
        "title": doc.title,
        "filename": doc.filename,
        "content_type": doc.content_type,
        "external_id": doc.external_id,
        "source": doc.source,
        "metadata": doc.metadata,
    }
    for key in PROMOTED_METADATA:
        if key in doc.metadata:
            payload[key] = doc.metadata[key]
    return payload


def chunk_payload(
    document: Mapping[str, Any], *, version: int, position: int, page: int | None, section: str | None
) -> dict[str, Any]:
    """One chunk's payload: its document's (``document_payload``) and where the chunk sits."""
    return {**document, "page": page, "section": section, "chunk_index": position, "version": version}


def payload_version(payload: Mapping[str, Any]) -> DocumentVersion | None:
    """(document id, version) from a stored payload (``chunk_payload`` writes both)."""
    document, version = payload.get("document_id"), payload.get("version")
    if isinstance(document, str) and isinstance(version, int) and not isinstance(version, bool):
        return document, version
    return None


# ---- filterable values ------------------------------------------------------------------------------
def is_addressable_key(key: Any) -> bool:
    """Whether a filter path can name this metadata key: paths split on '.', and a part may be
    neither empty nor start with '$' (an operator)."""
    return isinstance(key, str) and key != "" and "." not in key and not key.startswith("$")


def number_value(value: int | float) -> float:
    """Numbers match and compare as doubles, as in OpenSearch (2020 == 2020.0); an int beyond
    their range counts as an infinity rather than failing."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _scalars(value: Any) -> list[Scalar]:
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, (str, int, float, bool))]


def _metadata_values(prefix: str, obj: Mapping[str, Any], into: dict[str, list[Scalar]]) -> None:
    for key, value in obj.items():
        if not is_addressable_key(key):
            continue
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            _metadata_values(path + ".", value, into)
        elif scalars := _scalars(value):
            into[path] = scalars


def filterable_values(payload: Mapping[str, Any]) -> dict[str, list[Scalar]]:
    """Every path a filter can name in a payload, with the scalars it holds.

    A list holds each of its scalar elements; None, objects and lists without scalars hold
    nothing, and paths that hold nothing are left out. Fields come first, sorted, then the
    metadata leaves in their order.
    """
    values: dict[str, list[Scalar]] = {}
    for name in sorted(KEYWORD_FIELDS | NUMERIC_FIELDS):
        if scalars := _scalars(payload.get(name)):
            values[name] = scalars
    metadata = payload.get("metadata")
    if isinstance(metadata, dict):
        _metadata_values(METADATA_PREFIX, metadata, values)
    return values
