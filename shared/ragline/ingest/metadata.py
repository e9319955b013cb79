"""What a document's metadata may be: every chunk carries a copy and every search answer returns it, so
its size, breadth and depth are bounded (settings), and it must be storable text (valid UTF-8)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ragline.config import Settings
from ragline.errors import BadRequest, PayloadTooLarge

# Keys of an upload's metadata that are also first-class filter fields of its chunks: lists of strings.
LIST_FIELDS = ("tag_ids", "tag_names")


@dataclass(frozen=True)
class MetadataLimits:
    max_bytes: int
    max_keys: int
    max_depth: int

    @classmethod
    def from_settings(cls, settings: Settings) -> MetadataLimits:
        return cls(settings.metadata_max_bytes, settings.metadata_max_keys, settings.metadata_max_depth)


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, error="Invalid metadata")


def check_metadata(metadata: Any, limits: MetadataLimits) -> dict[str, Any]:
    """The metadata as stored, or a 400/413 that says which limit it broke. Walks iteratively: a
    1,000-deep object is refused at the depth limit, not by a RecursionError."""
    if not isinstance(metadata, dict):
        raise _invalid("metadata must be a JSON object")
    keys = 0
    pending: list[tuple[Any, int]] = [(metadata, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list) and depth > limits.max_depth:
            raise _invalid(f"metadata may be nested at most {limits.max_depth} levels deep")
        if isinstance(value, dict):
            keys += len(value)
            if keys > limits.max_keys:
                raise _invalid(f"metadata may have at most {limits.max_keys} keys (counted at every level)")
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
    try:
        size = len(json.dumps(metadata, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800": not text any store can keep
        raise _invalid("metadata must be valid Unicode text (it holds a lone surrogate)") from exc
    except ValueError as exc:  # NaN or Infinity
        raise _invalid("metadata numbers must be finite") from exc
    if size > limits.max_bytes:
        raise PayloadTooLarge(
            f"metadata is {size} bytes as JSON; the limit is {limits.max_bytes}", error="Metadata too large"
        )
    for key in LIST_FIELDS:
        if key in metadata and not (isinstance(metadata[key], list) and all(isinstance(v, str) for v in metadata[key])):
            raise _invalid(f"metadata.{key} must be a list of strings")
    return dict(metadata)
