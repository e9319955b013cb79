"""Request bodies for the OpenSearch k-NN adapter: pure functions, no client, no I/O.

Everything the adapter sends is built here, so it can be checked against golden JSON without a
cluster (see tests/golden/opensearch/ and infra/opensearch/README.md).

Chunk documents look like this (index definition: ``index_definition``)::

    chunk_id, tenant_id, document_id   keyword; written by the adapter, never by users
    text                               text, `english` analyzer (BM25)
    embedding                          knn_vector, HNSW on faiss
    filter_terms                       keyword[]: one typed token per filterable value
    filter_fields                      keyword[]: the filterable paths that hold a value
    payload                            object, not indexed: what get_payloads returns

Filters never touch user-shaped mappings. Every filterable value of a payload (the paths and
scalars of ``ragline.chunks.filterable_values``) becomes one keyword token
``<path>\\x1f<kind>:<value>`` (a ``\\x1f`` inside the path doubled, so a token reads back one
way) where kind is ``s`` (string), ``n`` (number, written as 16 hex digits that sort like the
numbers do) or ``b`` (boolean). So one tenant sending ``{"year": 2020}`` and another
``{"year": "2020"}`` can never make a mapping conflict, the index has a fixed number of fields
whatever tenants send, and filters keep the reference semantics of
``ragline.retrieval.filters.matches`` exactly: numbers equal numbers (2020 == 2020.0, compared as
doubles), strings equal strings, booleans only booleans, and ranges compare numbers with numbers
and strings with strings (as UTF-8 byte order, which is code point order, as Python compares them).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ragline.chunks import filterable_values, number_value
from ragline.models import IndexedChunk
from ragline.retrieval.filters import (
    And,
    Exists,
    FilterNode,
    MatchAll,
    Not,
    Or,
    Range,
    Scalar,
    Term,
)

SpaceType = Literal["cosinesimil", "innerproduct"]

CHUNK_ID_FIELD = "chunk_id"
TENANT_FIELD = "tenant_id"
DOCUMENT_FIELD = "document_id"
TEXT_FIELD = "text"
VECTOR_FIELD = "embedding"
FILTER_TERMS_FIELD = "filter_terms"
FILTER_FIELDS_FIELD = "filter_fields"
PAYLOAD_FIELD = "payload"

# Written by the adapter from replace_document's arguments: always one string, own keyword field.
SYSTEM_FIELDS = frozenset({TENANT_FIELD, DOCUMENT_FIELD})
TOKEN_SEPARATOR = "\x1f"
# Lucene refuses terms over 32766 bytes; 8191 characters is the most that always fits in UTF-8.
MAX_TOKEN_CHARS = 8191

# Per-tenant layout: <alias>-t-<slug>-<hash>[-v<N>]. Index names are at most 255 bytes; the tenant
# part takes at most 3 + 48 + 1 + 12 and a version suffix at most 2 + 10, so the alias gets 150.
TENANT_MARKER = "-t-"
TENANT_SLUG_MAX_CHARS = 48
TENANT_HASH_CHARS = 12
MAX_TENANT_ALIAS_PREFIX = 150
META_TENANT = "ragline_tenant_id"


def tenant_term(tenant_id: str) -> dict[str, Any]:
    """The clause every read, count and delete carries (in filter context)."""
    return {"term": {TENANT_FIELD: tenant_id}}


def _sort_by_score_then_id() -> list[dict[str, Any]]:
    """Best score first; equal scores by chunk id, so rankings are deterministic."""
    return [{"_score": {"order": "desc"}}, {CHUNK_ID_FIELD: {"order": "asc"}}]


# ---- index and alias ---------------------------------------------------------------------------
def index_definition(
    dimension: int,
    *,
    m: int = 16,
    ef_construction: int = 100,
    ef_search: int = 256,
    space_type: SpaceType = "cosinesimil",
    shards: int = 1,
    replicas: int = 1,
    routing_required: bool = True,
    alias: str | None = None,
    tenant_id: str | None = None,
) -> dict[str, Any]:
    """Settings and mappings of one chunk index version (PUT /<index>); with `tenant_id`, a
    per-tenant index that records its tenant in ``_meta``.

    `cosinesimil` on faiss needs OpenSearch 2.19+ and scores (1 + cos) / 2, the embedded engine's
    scale; `innerproduct` works on older clusters (vectors must be unit length) and the adapter
    converts its scores (see ``similarity_score``).
    """
    if dimension < 1:
        raise ValueError("dimension must be at least 1")
    mappings: dict[str, Any] = {
        "dynamic": "strict",
        "properties": {
            CHUNK_ID_FIELD: {"type": "keyword"},
            TENANT_FIELD: {"type": "keyword"},
            DOCUMENT_FIELD: {"type": "keyword"},
            TEXT_FIELD: {"type": "text", "analyzer": "english"},
            VECTOR_FIELD: {
                "type": "knn_vector",
                "dimension": dimension,
                "method": {
                    "name": "hnsw",
                    "engine": "faiss",
                    "space_type": space_type,
                    "parameters": {"m": m, "ef_construction": ef_construction, "ef_search": ef_search},
                },
            },
            FILTER_TERMS_FIELD: {"type": "keyword", "ignore_above": MAX_TOKEN_CHARS},
            FILTER_FIELDS_FIELD: {"type": "keyword", "ignore_above": MAX_TOKEN_CHARS},
            PAYLOAD_FIELD: {"type": "object", "enabled": False},
        },
    }
    if tenant_id is not None:
        mappings = {"_meta": {META_TENANT: tenant_id}, **mappings}
    if routing_required:
        mappings = {"_routing": {"required": True}, **mappings}
    definition: dict[str, Any] = {
        "settings": {"index": {"knn": True, "number_of_shards": shards, "number_of_replicas": replicas}},
        "mappings": mappings,
    }
    if alias is not None:  # one index per alias, so it is the write index
        definition["aliases"] = {alias: {"is_write_index": True}}
    return definition


def index_dimension(mapping_response: Mapping[str, Any]) -> int | None:
    """The vector dimension in a GET /<alias>/_mapping answer (None when the field is missing)."""
    for index in mapping_response.values():
        field = index.get("mappings", {}).get("properties", {}).get(VECTOR_FIELD)
        if field is not None:
            return int(field["dimension"])
    return None


def tenant_slug(tenant_id: str) -> str:
    """The readable part of a tenant's index name: ASCII-folded, lowercased, every run of other
    characters one '-', at most 48 characters. Lossy (Acme and acme share it): the hash is not."""
    folded = unicodedata.normalize("NFKD", tenant_id).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:TENANT_SLUG_MAX_CHARS].rstrip("-")


def tenant_alias(alias: str, tenant_id: str) -> str:
    """The alias of one tenant's chunk index in the per-tenant layout: ``<alias>-t-<slug>-<hash>``.

    ``<hash>`` is the first 12 hex digits of SHA-256 over the tenant id's UTF-8 bytes, so ids that
    differ only in case, in characters index names cannot hold, or after the slug's 48 characters
    get different names; the slug only makes the name readable (``_cat/indices``). Two ids would
    share a name only if their hashes collide (48 bits): each index records its tenant in
    ``_meta`` and the adapter refuses to write into another tenant's. The name is lowercase,
    holds only ``[a-z0-9-]`` and starts like ``alias`` (a letter or digit). It must never change:
    it is how a tenant finds its chunks (a new scheme needs a reindex into new names).
    """
    if not tenant_id:
        raise ValueError("a tenant id is required")
    if len(alias) > MAX_TENANT_ALIAS_PREFIX:
        raise ValueError(f"an alias for tenant indices has at most {MAX_TENANT_ALIAS_PREFIX} characters")
    digest = hashlib.sha256(tenant_id.encode("utf-8", "surrogatepass")).hexdigest()[:TENANT_HASH_CHARS]
    slug = tenant_slug(tenant_id)
    return f"{alias}{TENANT_MARKER}{slug}-{digest}" if slug else f"{alias}{TENANT_MARKER}{digest}"


def tenant_alias_pattern(alias: str) -> str:
    """Every tenant alias (and index version) of the per-tenant layout under ``alias``."""
    return f"{alias}{TENANT_MARKER}*"


def index_tenant(mapping_response: Mapping[str, Any]) -> str | None:
    """The tenant a per-tenant index was created for (``_meta``), None for a shared index."""
    for index in mapping_response.values():
        tenant = index.get("mappings", {}).get("_meta", {}).get(META_TENANT)
        if tenant is not None:
            return str(tenant)
    return None


def alias_targets(get_alias_response: Mapping[str, Any]) -> dict[str, str]:
    """alias -> the index it points at, from a GET /_alias/<pattern> answer (write index first)."""
    targets: dict[str, str] = {}
    for index in sorted(get_alias_response):
        for alias, options in get_alias_response[index].get("aliases", {}).items():
            if alias not in targets or options.get("is_write_index"):
                targets[alias] = index
    return targets


def primaries_stats(stats_response: Mapping[str, Any], indices: Iterable[str]) -> dict[str, int]:
    """Chunks, deleted chunks and bytes summed over some indices of a ``_stats?level=indices`` answer."""
    totals = {"chunks": 0, "deleted_chunks": 0, "store_bytes": 0}
    per_index = stats_response.get("indices", {})
    for name in indices:
        primaries = per_index.get(name, {}).get("primaries")
        if primaries is None:
            continue
        totals["chunks"] += int(primaries["docs"]["count"])
        totals["deleted_chunks"] += int(primaries["docs"]["deleted"])
        totals["store_bytes"] += int(primaries["store"]["size_in_bytes"])
    return totals


def versioned_index_name(alias: str, version: int) -> str:
    """Index versions are named ``<alias>-v<N>``; readers and writers only ever name the alias."""
    if version < 1:
        raise ValueError("index versions start at 1")
    return f"{alias}-v{version}"


def index_version(alias: str, index: str) -> int | None:
    """N of an ``<alias>-v<N>`` index name, None for any other name."""
    prefix = f"{alias}-v"
    suffix = index[len(prefix) :]
    if not index.startswith(prefix) or not suffix.isdigit() or suffix.startswith("0"):
        return None
    return int(suffix)


def alias_target(alias: str, get_alias_response: Mapping[str, Any]) -> str:
    """The index an alias points at (GET /_alias/<alias>): its write index, or its only index."""
    indices = sorted(get_alias_response)
    writers = [
        name for name in indices if get_alias_response[name].get("aliases", {}).get(alias, {}).get("is_write_index")
    ]
    if len(writers) == 1:
        return writers[0]
    if len(indices) == 1:
        return indices[0]
    raise ValueError(f"alias {alias} points at {indices} and none is its only write index")


def alias_swap(alias: str, from_index: str | None, to_index: str) -> dict[str, Any]:
    """POST /_aliases body that moves an alias from one index version to the next in one step.

    The actions of one request apply atomically: no reader or writer sees the alias on neither
    or both indices. The new index becomes the alias's write index. Without `from_index` (a
    tenant's first index in the per-tenant layout) the alias is only added.
    """
    add = {"add": {"index": to_index, "alias": alias, "is_write_index": True}}
    if from_index is None:
        return {"actions": [add]}
    return {"actions": [{"remove": {"index": from_index, "alias": alias}}, add]}


def copy_other_tenants(from_index: str, to_index: str, tenant_id: str) -> dict[str, Any]:
    """POST /_reindex body copying every chunk except one tenant's, vectors and routing as they are.

    Used when one tenant is rebuilt into a new index version: the others move unchanged, which
    is only right when the embedding model (and so the dimension) stays the same.
    """
    return {
        "source": {"index": from_index, "query": {"bool": {"must_not": [tenant_term(tenant_id)]}}},
        "dest": {"index": to_index, "op_type": "create"},
        "conflicts": "proceed",
    }


# ---- filter tokens (index side) -----------------------------------------------------------------
def sortable_number(value: int | float) -> str:
    """16 hex digits whose string order is the numeric order (IEEE 754 bits, sign flipped)."""
    bits = struct.unpack(">Q", struct.pack(">d", number_value(value) + 0.0))[0]  # + 0.0: -0.0 becomes 0.0
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | (1 << 63)
    return f"{bits:016x}"


def _kind_and_text(value: Scalar) -> tuple[str, str]:
    if isinstance(value, bool):
        return "b", "true" if value else "false"
    if isinstance(value, (int, float)):
        return "n", sortable_number(value)
    return "s", value


def token_prefix(field: str, kind: str) -> str:
    # A separator inside the path is doubled: the first single one ends the path, so no two
    # (path, value) pairs share a token and a path's tokens share a prefix no other path has.
    escaped = field.replace(TOKEN_SEPARATOR, TOKEN_SEPARATOR * 2)
    return f"{escaped}{TOKEN_SEPARATOR}{kind}:"


def filter_token(field: str, value: Scalar) -> str:
    """The keyword token a (field, value) pair is indexed and looked up as."""
    kind, text = _kind_and_text(value)
    return token_prefix(field, kind) + text


def filter_tokens(payload: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(filter_terms, filter_fields) of a chunk. NaN exists but equals and compares to nothing.

    tenant_id and document_id have keyword fields of their own (written from replace_document's
    arguments), so they get no tokens."""
    terms: list[str] = []
    fields: list[str] = []
    for path, scalars in filterable_values(payload).items():
        if path in SYSTEM_FIELDS:
            continue
        fields.append(path)
        for value in scalars:
            if isinstance(value, float) and math.isnan(value):
                continue
            token = filter_token(path, value)
            if token not in terms:
                terms.append(token)
    return terms, fields


# ---- filter translation (query side) ------------------------------------------------------------
_RANGE_BOUND = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}


def _term_clause(field: str, values: Sequence[str]) -> dict[str, Any]:
    if not values:
        return {"match_none": {}}
    if len(values) == 1:
        return {"term": {field: values[0]}}
    return {"terms": {field: list(values)}}


def _translate_term(node: Term) -> dict[str, Any]:
    if node.field in SYSTEM_FIELDS:  # always a string there: other kinds can never be equal
        return _term_clause(node.field, [v for v in node.values if isinstance(v, str)])
    tokens: list[str] = []
    for value in node.values:
        token = filter_token(node.field, value)
        if token not in tokens:
            tokens.append(token)
    return _term_clause(FILTER_TERMS_FIELD, tokens)


def _translate_range(node: Range) -> dict[str, Any]:
    bound = _RANGE_BOUND[node.op]
    if node.field in SYSTEM_FIELDS:
        if not isinstance(node.value, str):
            return {"match_none": {}}
        return {"range": {node.field: {bound: node.value}}}
    kind, text = _kind_and_text(node.value)
    start = token_prefix(node.field, kind)
    end = start[:-1] + ";"  # ';' follows ':' so every token of this field and kind sorts below it
    if bound in ("gt", "gte"):
        limits = {bound: start + text, "lt": end}
    else:
        limits = {"gte": start, bound: start + text}
    return {"range": {FILTER_TERMS_FIELD: limits}}


def _translate_exists(node: Exists) -> dict[str, Any]:
    if node.field in SYSTEM_FIELDS:
        return {"match_all": {}}
    return {"term": {FILTER_FIELDS_FIELD: node.field}}


def _translate_not(node: Not) -> dict[str, Any]:
    return {"bool": {"must_not": [to_dsl(node.child)]}}


def _translate_and(node: And) -> dict[str, Any]:
    return {"bool": {"filter": [to_dsl(child) for child in node.children]}}


def _translate_or(node: Or) -> dict[str, Any]:
    return {"bool": {"should": [to_dsl(child) for child in node.children], "minimum_should_match": 1}}


def _translate_match_all(node: MatchAll) -> dict[str, Any]:
    return {"match_all": {}}


_TRANSLATORS: dict[type, Callable[[Any], dict[str, Any]]] = {
    Term: _translate_term,
    Range: _translate_range,
    Exists: _translate_exists,
    Not: _translate_not,
    And: _translate_and,
    Or: _translate_or,
    MatchAll: _translate_match_all,
}


def to_dsl(node: FilterNode) -> dict[str, Any]:
    """The OpenSearch query (filter context) that matches what `matches(node, payload)` accepts."""
    translate = _TRANSLATORS.get(type(node))
    if translate is None:
        raise TypeError(f"unknown filter node {node!r}")
    return translate(node)


def tenant_filters(tenant_id: str, flt: FilterNode) -> list[dict[str, Any]]:
    """Filter-context clauses of every read: the tenant's term always, then the caller's filter."""
    return [tenant_term(tenant_id)] + ([] if isinstance(flt, MatchAll) else [to_dsl(flt)])


# ---- searches -----------------------------------------------------------------------------------
def vector_values(vector: np.ndarray | Sequence[float]) -> list[float]:
    """float32 values as JSON numbers: 9 significant digits round-trip a float32 exactly."""
    return [float(f"{value:.9g}") for value in np.asarray(vector, dtype=np.float32).ravel().tolist()]


def knn_query(
    tenant_id: str, vector: np.ndarray | Sequence[float], flt: FilterNode, k: int, ef_search: int
) -> dict[str, Any]:
    """Efficient filtering: the filter sits inside the k-NN clause, so k results come back whenever
    k chunks match (a post-filter would return fewer)."""
    knn: dict[str, Any] = {
        "vector": vector_values(vector),
        "k": k,
        "filter": {"bool": {"filter": tenant_filters(tenant_id, flt)}},
        "method_parameters": {"ef_search": max(ef_search, k)},
    }
    return {
        "size": k,
        "query": {"knn": {VECTOR_FIELD: knn}},
        "sort": _sort_by_score_then_id(),
        "track_scores": True,
        "_source": [CHUNK_ID_FIELD],
    }


def keyword_query(tenant_id: str, text: str, flt: FilterNode, k: int) -> dict[str, Any]:
    """BM25 over `text` (english analyzer), the filter in filter context so it does not score."""
    return {
        "size": k,
        "query": {
            "bool": {"must": [{"match": {TEXT_FIELD: {"query": text}}}], "filter": tenant_filters(tenant_id, flt)}
        },
        "sort": _sort_by_score_then_id(),
        "track_scores": True,
        "_source": [CHUNK_ID_FIELD],
    }


def count_query(tenant_id: str, flt: FilterNode) -> dict[str, Any]:
    return {"query": {"bool": {"filter": tenant_filters(tenant_id, flt)}}}


def payloads_query(tenant_id: str, chunk_ids: Sequence[str]) -> dict[str, Any]:
    """A tenant's chunks by id. Searched rather than fetched (mget): a fetch by _id carries no query,
    so it could not hold the tenant term, and Serverless assigns its own _ids."""
    return {
        "size": len(chunk_ids),
        "query": {"bool": {"filter": [tenant_term(tenant_id), {"terms": {CHUNK_ID_FIELD: list(chunk_ids)}}]}},
        "_source": [CHUNK_ID_FIELD, TEXT_FIELD, PAYLOAD_FIELD],
    }


def delete_by_document_query(tenant_id: str, document_id: str, keep_chunk_ids: Sequence[str] = ()) -> dict[str, Any]:
    """POST /<alias>/_delete_by_query body: a document's chunks, except those being kept."""
    query: dict[str, Any] = {"filter": [tenant_term(tenant_id), {"term": {DOCUMENT_FIELD: document_id}}]}
    if keep_chunk_ids:
        query["must_not"] = [{"terms": {CHUNK_ID_FIELD: list(keep_chunk_ids)}}]
    return {"query": {"bool": query}}


def other_chunks_query(tenant_id: str, document_id: str, chunk_ids: Sequence[str]) -> dict[str, Any]:
    """POST /<alias>/_count body: a document's chunks outside a set (its other versions)."""
    return delete_by_document_query(tenant_id, document_id, chunk_ids)


def delete_chunks_query(tenant_id: str, document_id: str, chunk_ids: Sequence[str]) -> dict[str, Any]:
    """POST /<alias>/_delete_by_query body: these chunks of a document, nothing else."""
    if not chunk_ids:
        raise ValueError("name the chunks to delete")
    return {
        "query": {
            "bool": {
                "filter": [
                    tenant_term(tenant_id),
                    {"term": {DOCUMENT_FIELD: document_id}},
                    {"terms": {CHUNK_ID_FIELD: list(chunk_ids)}},
                ]
            }
        }
    }


def stored_chunks_query(tenant_id: str, document_id: str, page_size: int, after: str | None = None) -> dict[str, Any]:
    """One page of a document's stored chunks (text, payload; no vectors), in chunk id order."""
    body: dict[str, Any] = {
        "size": page_size,
        "query": {"bool": {"filter": [tenant_term(tenant_id), {"term": {DOCUMENT_FIELD: document_id}}]}},
        "sort": [{CHUNK_ID_FIELD: {"order": "asc"}}],
        "_source": [CHUNK_ID_FIELD, TENANT_FIELD, DOCUMENT_FIELD, TEXT_FIELD, PAYLOAD_FIELD],
    }
    if after is not None:
        body["search_after"] = [after]
    return body


# ---- writes -------------------------------------------------------------------------------------
def chunk_source(chunk: IndexedChunk, vector: np.ndarray | Sequence[float]) -> dict[str, Any]:
    """The stored document of one chunk. `payload` keeps what the embedded engine keeps."""
    payload = dict(chunk.payload, tenant_id=chunk.tenant_id, document_id=chunk.document_id)
    payload.pop(TEXT_FIELD, None)
    terms, fields = filter_tokens(payload)
    return {
        CHUNK_ID_FIELD: chunk.id,
        TENANT_FIELD: chunk.tenant_id,
        DOCUMENT_FIELD: chunk.document_id,
        TEXT_FIELD: chunk.text,
        VECTOR_FIELD: vector_values(vector),
        FILTER_TERMS_FIELD: terms,
        FILTER_FIELDS_FIELD: fields,
        PAYLOAD_FIELD: payload,
    }


def bulk_actions(
    index: str, chunks: Sequence[IndexedChunk], vectors: np.ndarray, *, routing: bool = True
) -> list[dict[str, Any]]:
    """Action and source lines of a _bulk request, two per chunk, routed by tenant."""
    if len(chunks) != len(vectors):
        raise ValueError("one vector per chunk")
    lines: list[dict[str, Any]] = []
    for chunk, vector in zip(chunks, vectors, strict=True):
        action: dict[str, Any] = {"_index": index, "_id": chunk.id}
        if routing:
            action["routing"] = chunk.tenant_id
        lines.append({"index": action})
        lines.append(chunk_source(chunk, vector))
    return lines


@dataclass(frozen=True)
class BulkLine:
    """One chunk's action and source, serialised once: batches are cut by their size."""

    chunk_id: str
    ndjson: str  # action line + source line, each ending in "\n"

    @property
    def size(self) -> int:
        return len(self.ndjson.encode("utf-8"))


def bulk_lines(actions: Sequence[dict[str, Any]]) -> list[BulkLine]:
    lines = []
    for action, source in zip(actions[0::2], actions[1::2], strict=True):
        text = json.dumps(action, ensure_ascii=False) + "\n" + json.dumps(source, ensure_ascii=False) + "\n"
        lines.append(BulkLine(chunk_id=action["index"]["_id"], ndjson=text))
    return lines


def bulk_batches(lines: Iterable[BulkLine], max_actions: int, max_bytes: int) -> list[list[BulkLine]]:
    """Cut lines into requests of at most max_actions chunks and max_bytes (a lone larger chunk
    still goes, alone)."""
    batches: list[list[BulkLine]] = []
    current: list[BulkLine] = []
    size = 0
    for line in lines:
        if current and (len(current) >= max_actions or size + line.size > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(line)
        size += line.size
    if current:
        batches.append(current)
    return batches


# ---- answers ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BulkItemFailure:
    chunk_id: str
    status: int
    error_type: str
    reason: str


def bulk_item_failures(response: Mapping[str, Any]) -> list[BulkItemFailure]:
    """The items of a _bulk answer that did not succeed."""
    if not response.get("errors"):
        return []
    failures = []
    for item in response.get("items", []):
        (result,) = item.values()
        status = int(result.get("status", 0))
        if 200 <= status < 300:
            continue
        error = result.get("error") or {}
        if isinstance(error, str):
            error = {"type": "error", "reason": error}
        failures.append(
            BulkItemFailure(
                chunk_id=str(result.get("_id")),
                status=status,
                error_type=str(error.get("type", "unknown")),
                reason=str(error.get("reason", "")),
            )
        )
    return failures


def bulk_created_ids(response: Mapping[str, Any]) -> list[str]:
    """The ids a _bulk answer reports as newly created (not overwritten, not failed)."""
    created = []
    for item in response.get("items", []):
        (result,) = item.values()
        if result.get("result") == "created" or (result.get("status") == 201 and "result" not in result):
            created.append(str(result.get("_id")))
    return created


def stored_chunks_from_hits(response: Mapping[str, Any]) -> list[IndexedChunk]:
    """Chunks as replace_document was given them, from a stored_chunks_query answer."""
    chunks = []
    for hit in response.get("hits", {}).get("hits", []):
        source = hit["_source"]
        chunks.append(
            IndexedChunk(
                id=str(source[CHUNK_ID_FIELD]),
                tenant_id=str(source[TENANT_FIELD]),
                document_id=str(source[DOCUMENT_FIELD]),
                text=str(source.get(TEXT_FIELD, "")),
                payload=dict(source.get(PAYLOAD_FIELD, {})),
            )
        )
    return chunks


def similarity_score(score: float, space_type: SpaceType) -> float:
    """A k-NN hit's score on the embedded engine's scale, (1 + cos) / 2 in [0, 1].

    cosinesimil on faiss (2.19+) already answers (1 + cos) / 2. innerproduct answers
    1 + ip when ip >= 0 and 1 / (1 - ip) below: undone here, then rescaled (vectors are unit length,
    so ip is the cosine).
    """
    if space_type == "innerproduct":
        inner = score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score
        score = (1.0 + inner) / 2.0
    return min(1.0, max(0.0, score))


def ranked_hits(response: Mapping[str, Any], space_type: SpaceType | None = None) -> list[tuple[str, float]]:
    """(chunk_id, score) best first, ties by chunk id; k-NN scores rescaled when space_type is given."""
    ranked = []
    for hit in response.get("hits", {}).get("hits", []):
        score = float(hit["_score"])
        if space_type is not None:
            score = similarity_score(score, space_type)
        ranked.append((str(hit["_source"][CHUNK_ID_FIELD]), score))
    ranked.sort(key=lambda item: (-item[1], item[0]))
    return ranked


def payloads_from_hits(response: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    payloads = {}
    for hit in response.get("hits", {}).get("hits", []):
        source = hit["_source"]
        payloads[str(source[CHUNK_ID_FIELD])] = {
            **source.get(PAYLOAD_FIELD, {}),
            TEXT_FIELD: source.get(TEXT_FIELD, ""),
        }
    return payloads
