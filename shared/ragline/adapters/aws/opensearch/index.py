"""The VectorIndex port on OpenSearch k-NN (Amazon OpenSearch Service or any OpenSearch 2.19+).

Request bodies come from ``queries`` (pure, golden-tested), the client and its retries from
``client``; this module sends them and reads the answers. Reads and writes go through an alias
(``<alias>`` → ``<alias>-v<version>``) so a reindex can swap index versions in one step.

Tenant isolation has two independent layers, both from the tenant every read is given: each
read carries a ``term`` on ``tenant_id``, and on managed clusters every chunk is routed by its
tenant (``_routing`` required by the mapping), so a read with ``?routing=<tenant>`` only visits
the shard holding that tenant's chunks. Serverless (aoss) has no custom routing: there the term
filter alone isolates tenants.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError, RequestError, TransportError

from ragline.adapters.aws.opensearch import queries as q
from ragline.adapters.aws.opensearch.client import RETRYABLE_STATUSES, Retrying, client_for, opensearch_client
from ragline.adapters.aws.opensearch.settings import OpenSearchConfigError, OpenSearchSettings
from ragline.errors import DependencyUnavailable, RaglineError
from ragline.models import IndexedChunk
from ragline.retrieval.filters import FilterNode, MatchAll, Term

log = logging.getLogger(__name__)

PAYLOAD_BATCH = 1000


# ---- errors -----------------------------------------------------------------------------------------
class OpenSearchBulkError(RaglineError):
    """Chunks OpenSearch refused for good (a mapping error, not a rejection worth retrying)."""

    error = "Index write failed"

    def __init__(self, failures: Sequence[q.BulkItemFailure]) -> None:
        self.failures = list(failures)
        listed = "; ".join(f"{f.chunk_id}: {f.status} {f.error_type}: {f.reason}" for f in self.failures[:10])
        more = f" (and {len(self.failures) - 10} more)" if len(self.failures) > 10 else ""
        super().__init__(f"OpenSearch refused {len(self.failures)} chunk(s): {listed}{more}")


class OpenSearchConsistencyError(DependencyUnavailable):
    """A write reported success but a count afterwards disagrees (a concurrent writer, or lag)."""


# ---- the index --------------------------------------------------------------------------------------
class OpenSearchVectorIndex:
    """VectorIndex on an OpenSearch alias. See infra/opensearch/README.md for the request shapes."""

    def __init__(
        self,
        settings: OpenSearchSettings,
        dimension: int,
        *,
        client: OpenSearch | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.dimension = dimension
        self._client = client
        self._owns_client = client is None
        self._retry = Retrying(settings, sleep=sleep, jitter=jitter)

    @property
    def client(self) -> OpenSearch:
        if self._client is None:
            self._client = client_for(self.settings)
        return self._client

    def drop_connections(self) -> None:
        """After a SnapStart restore: close the process-wide client's sockets (they were opened on
        the snapshot's machine); the next call builds a new client. A given client is left alone."""
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None
            opensearch_client.cache_clear()  # a closed client must not be handed out again

    @property
    def alias(self) -> str:
        return self.settings.index_alias

    # ---- plumbing -------------------------------------------------------------------------
    def _routing(self, tenant_id: str) -> dict[str, str]:
        return {} if self.settings.serverless else {"routing": tenant_id}

    def _require_managed(self, operation: str) -> None:
        if self.settings.serverless:
            raise OpenSearchConfigError(
                f"{operation} is not supported on OpenSearch Serverless: vector collections assign their own "
                "document ids and have no _delete_by_query nor refresh (see infra/opensearch/README.md)"
            )

    def _search(self, what: str, body: dict[str, Any], tenant_id: str, index: str | None = None) -> dict[str, Any]:
        params = self._routing(tenant_id)
        target = index or self.alias
        return self._retry.call(what, lambda: self.client.search(index=target, body=body, params=params))

    def _count(self, tenant_id: str, body: dict[str, Any], index: str | None = None) -> int:
        target = index or self.alias
        answer = self._retry.call(
            "count", lambda: self.client.count(index=target, body=body, params=self._routing(tenant_id))
        )
        return int(answer["count"])

    # ---- set-up ---------------------------------------------------------------------------
    def index_definition(self, *, with_alias: bool = True) -> dict[str, Any]:
        """The body of PUT /<alias>-v<N> (infra/opensearch/index-v1.json for the defaults)."""
        s = self.settings
        return q.index_definition(
            self.dimension,
            m=s.hnsw_m,
            ef_construction=s.hnsw_ef_construction,
            ef_search=s.hnsw_ef_search,
            space_type=s.space_type,
            shards=s.shards,
            replicas=s.replicas,
            routing_required=not s.serverless,
            alias=self.alias if with_alias else None,
        )

    def ensure_index(self) -> None:
        """Make sure the alias points at a chunk index of our dimension.

        First start: ``PUT /<alias>-v<index_version>`` with the alias as its write index. Later
        starts only check: a different vector dimension is an error (reindex into a new version),
        and so is a concrete index that holds the alias's name (an older layout or a hand-made
        index: reads and writes must go through an alias, or reindex could not swap versions).
        """
        self._require_managed("ensure_index")
        if self._alias_exists() or not self._create_index():
            self._check_dimension()

    def _alias_exists(self) -> bool:
        return bool(self._retry.call("alias check", lambda: self.client.indices.exists_alias(name=self.alias)))

    def _create_index(self) -> bool:
        """Create the index version with its alias; False when another process just did."""
        if self._retry.call("index check", lambda: self.client.indices.exists(index=self.alias)):
            raise OpenSearchConfigError(
                f"{self.alias} is an index, not an alias: Ragline reads and writes through the alias "
                f"{self.alias} -> {self.settings.index_name}. Move the data with POST /_reindex into "
                f"{self.settings.index_name}, delete {self.alias}, then add the alias (POST /_aliases), "
                "or set RAGLINE_OPENSEARCH_INDEX_ALIAS to another name (see infra/opensearch/README.md)"
            )
        body = self.index_definition()
        try:
            self._retry.call(
                "index creation", lambda: self.client.indices.create(index=self.settings.index_name, body=body)
            )
            return True
        except RequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise
            if not self._alias_exists():  # the index exists but the alias does not: not ours to fix
                raise OpenSearchConfigError(
                    f"index {self.settings.index_name} exists without the alias {self.alias}: "
                    "add the alias or remove the index"
                ) from exc
            log.info("index %s was created concurrently", self.settings.index_name)
            return False

    def _check_dimension(self) -> None:
        mapping = self._retry.call("mapping read", lambda: self.client.indices.get_mapping(index=self.alias))
        found = q.index_dimension(mapping)
        if found is None:
            raise OpenSearchConfigError(f"{self.alias} has no {q.VECTOR_FIELD} field: it is not a Ragline chunk index")
        if found != self.dimension:
            raise ValueError(
                f"{self.alias} holds {found}-dimensional vectors but the embedder makes {self.dimension}: "
                "reindex into a new index version"
            )

    # ---- index versions (ragline reindex) --------------------------------------------------
    def current_index(self) -> str:
        """The index version the alias points at now."""
        self._require_managed("reindex")
        try:
            answer = self._retry.call("alias read", lambda: self.client.indices.get_alias(name=self.alias))
        except NotFoundError as exc:
            raise OpenSearchConfigError(
                f"alias {self.alias} does not exist: there is nothing to reindex (the first start creates it)"
            ) from exc
        return q.alias_target(self.alias, answer)

    def index_exists(self, index: str) -> bool:
        return bool(self._retry.call("index check", lambda: self.client.indices.exists(index=index)))

    def dimension_of(self, index: str) -> int | None:
        mapping = self._retry.call("mapping read", lambda: self.client.indices.get_mapping(index=index))
        return q.index_dimension(mapping)

    def create_index_version(self, index: str) -> None:
        """PUT /<alias>-v<N>: this adapter's definition and dimension, not yet behind the alias."""
        if q.index_version(self.alias, index) is None:
            raise ValueError(f"{index} is not a version of {self.alias} (<alias>-v<N>)")
        body = self.index_definition(with_alias=False)
        self._retry.call("index creation", lambda: self.client.indices.create(index=index, body=body))

    def delete_index_version(self, index: str) -> None:
        """DELETE /<alias>-v<N>, never the version the alias points at."""
        if q.index_version(self.alias, index) is None or index == self.current_index():
            raise OpenSearchConfigError(f"{index} is not an unused version of {self.alias}: not deleting it")
        self._retry.call("index deletion", lambda: self.client.indices.delete(index=index))

    def write_chunks(self, index: str, chunks: Sequence[IndexedChunk], vectors: np.ndarray) -> None:
        """Bulk chunks into a named index version (no refresh): the rebuild half of a reindex."""
        if not chunks:
            return
        self._check_write(chunks[0].tenant_id, chunks[0].document_id, chunks, vectors)
        actions = q.bulk_actions(index, chunks, vectors, routing=not self.settings.serverless)
        self._bulk(q.bulk_lines(actions), [], require_alias=False)

    def refresh(self, index: str) -> None:
        self._refresh(index)

    def count_in(self, index: str, tenant_id: str) -> int:
        """A tenant's chunks in one index version."""
        return self._count(tenant_id, q.count_query(tenant_id, MatchAll()), index)

    def copy_other_tenants(self, from_index: str, to_index: str, tenant_id: str) -> int:
        """Server-side copy of every other tenant's chunks (POST /_reindex); returns how many."""
        body = q.copy_other_tenants(from_index, to_index, tenant_id)
        params = {
            "wait_for_completion": "true",
            "refresh": "true",
            "request_timeout": self.settings.write_timeout_seconds,
        }
        answer = self._retry.call("copy", lambda: self.client.reindex(body=body, params=params))
        if answer.get("failures"):
            raise OpenSearchConsistencyError(
                f"copying into {to_index} failed: {answer['failures'][:3]}", error="Reindex failed"
            )
        return int(answer.get("created", 0)) + int(answer.get("updated", 0))

    def switch_alias(self, from_index: str, to_index: str) -> None:
        """One POST /_aliases: readers and writers move from one index version to the next at once."""
        body = q.alias_swap(self.alias, from_index, to_index)
        self._retry.call("alias switch", lambda: self.client.indices.update_aliases(body=body))

    def stored_chunks(self, tenant_id: str, document_id: str, index: str | None = None) -> list[IndexedChunk]:
        """A document's chunks as stored (text and payload), from the alias or a named version."""
        found: list[IndexedChunk] = []
        after: str | None = None
        while True:
            body = q.stored_chunks_query(tenant_id, document_id, PAYLOAD_BATCH, after)
            answer = self._search("chunk read", body, tenant_id, index)
            page = q.stored_chunks_from_hits(answer)
            found.extend(page)
            if len(page) < PAYLOAD_BATCH:
                return found
            after = page[-1].id

    # ---- writes ---------------------------------------------------------------------------
    def replace_document(
        self, tenant_id: str, document_id: str, chunks: Sequence[IndexedChunk], vectors: np.ndarray
    ) -> None:
        """Index the new version beside the old one, refresh once, then delete the other versions.

        Chunk ids carry the document version (``<document>-v<version>-<position>``), so the new
        version never overwrites the old one in place. Steps, and what a reader sees after each:

        1. bulk-index the new chunks (``refresh=false``): the old version; a periodic refresh
           (1 s by default) may also expose part of the new one between batches;
        2. one refresh: both versions, complete; ``SearchService`` keeps only the highest version
           of each document within a result (``retrieval.service.newest_versions``);
        3. delete-by-query of the document's chunks not in the new set (``refresh=true``), then a
           count expecting exactly the new set: the new version alone.

        A failure in 1 or 2 removes what this call added (``_discard``), so the previous version
        stays the document's only one. A failure in 3 leaves the new version complete and
        searchable; the ingest retry (or ``_fail``'s delete) removes the old one.
        """
        self._require_managed("replace_document")
        self._check_write(tenant_id, document_id, chunks, vectors)
        keep = [chunk.id for chunk in chunks]
        if chunks:
            created: list[str] = []
            try:
                actions = q.bulk_actions(self.alias, chunks, vectors, routing=True)
                self._bulk(q.bulk_lines(actions), created)
                self._refresh(self.alias)
            except (RaglineError, TransportError):
                self._discard(tenant_id, document_id, keep, created)
                raise
        self._delete_and_verify(tenant_id, document_id, keep)

    def _discard(self, tenant_id: str, document_id: str, new_ids: list[str], created: list[str]) -> None:
        """Best-effort removal of a failed replace's chunks, never of the version readers rely on.

        When another version of the document is present, every new-set chunk goes (including
        chunks whose bulk answer never came back): the other version stays the only one. When
        none is, the new ids may already be the live version (a redelivered message rewriting
        the same chunks), so only the chunks this call's bulk answers report as ``created`` go.
        Whatever a failed discard leaves is removed by the next replace of the document (its
        delete step removes every other version), by ingestion's ``_fail`` or by a delete.
        """
        try:
            others = self._count(tenant_id, q.other_chunks_query(tenant_id, document_id, new_ids))
            doomed = new_ids if others else created
            if doomed:
                body = q.delete_chunks_query(tenant_id, document_id, doomed)
                self._retry.call(
                    "discard",
                    lambda: self.client.delete_by_query(
                        index=self.alias, body=body, params=self._delete_params(tenant_id)
                    ),
                )
        except (RaglineError, TransportError) as exc:  # the original failure is the one to report
            log.error("could not discard the partial new version of %s/%s: %s", tenant_id, document_id, exc)

    def _refresh(self, index: str) -> None:
        self._retry.call("refresh", lambda: self.client.indices.refresh(index=index))

    def delete_document(self, tenant_id: str, document_id: str) -> int:
        """Delete every chunk of a document; returns only once a count sees none left."""
        self._require_managed("delete_document")
        return self._delete_and_verify(tenant_id, document_id, [])

    def _check_write(
        self, tenant_id: str, document_id: str, chunks: Sequence[IndexedChunk], vectors: np.ndarray
    ) -> None:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        if len(chunks) and (vectors.ndim != 2 or vectors.shape[1] != self.dimension):
            raise ValueError(f"vectors have {vectors.shape[-1]} dimensions, the index {self.dimension}")
        if len({c.id for c in chunks}) != len(chunks):
            raise ValueError("chunk ids must be unique within a document")
        strangers = [c.id for c in chunks if c.tenant_id != tenant_id or c.document_id != document_id]
        if strangers:
            raise ValueError(
                f"chunks {strangers[:5]} belong to another tenant or document than {tenant_id}/{document_id}"
            )

    def _delete_and_verify(self, tenant_id: str, document_id: str, keep: list[str]) -> int:
        """Delete the document's chunks not in `keep` until a count shows exactly `keep` remain."""
        body = q.delete_by_document_query(tenant_id, document_id, keep)
        params = self._delete_params(tenant_id)
        deleted = 0
        remaining = -1
        for attempt in range(self.settings.verify_attempts):
            answer = self._retry.call(
                "delete by query", lambda: self.client.delete_by_query(index=self.alias, body=body, params=params)
            )
            deleted += int(answer.get("deleted", 0))
            remaining = self._count(tenant_id, q.count_query(tenant_id, Term(q.DOCUMENT_FIELD, (document_id,))))
            if remaining == len(keep):
                return deleted
            log.warning(
                "%s/%s has %d chunks after delete-by-query, expected %d (attempt %d)",
                tenant_id,
                document_id,
                remaining,
                len(keep),
                attempt + 1,
            )
            if attempt + 1 < self.settings.verify_attempts:
                self._retry.backoff(attempt)
        raise OpenSearchConsistencyError(
            f"document {document_id} still has {remaining} chunks in OpenSearch, expected {len(keep)}",
            error="Search index inconsistent",
        )

    def _delete_params(self, tenant_id: str) -> dict[str, Any]:
        return {
            "conflicts": "proceed",
            "refresh": "true",
            "wait_for_completion": "true",
            "request_timeout": self.settings.write_timeout_seconds,
            **self._routing(tenant_id),
        }

    def _bulk(self, lines: list[q.BulkLine], created: list[str], *, require_alias: bool = True) -> None:
        """Send the lines in bounded batches; `created` collects the ids the answers say were new."""
        for batch in q.bulk_batches(lines, self.settings.bulk_max_actions, self.settings.bulk_max_bytes):
            self._bulk_batch(batch, created, require_alias)

    def _bulk_batch(self, batch: list[q.BulkLine], created: list[str], require_alias: bool) -> None:
        """Send one batch; resend only the items rejected with 429/5xx; raise on any other refusal."""
        pending = batch
        attempts = self.settings.retry_attempts
        for attempt in range(attempts):
            answer = self._send_bulk("".join(line.ndjson for line in pending), require_alias)
            created.extend(q.bulk_created_ids(answer))
            failures = q.bulk_item_failures(answer)
            permanent = [f for f in failures if f.status not in RETRYABLE_STATUSES]
            if permanent:
                raise OpenSearchBulkError(permanent)
            if not failures:
                return
            retry_ids = {f.chunk_id for f in failures}
            pending = [line for line in pending if line.chunk_id in retry_ids]
            log.warning("OpenSearch rejected %d chunks for now (attempt %d of %d)", len(pending), attempt + 1, attempts)
            if attempt + 1 < attempts:
                self._retry.backoff(attempt)
        ids = ", ".join(line.chunk_id for line in pending[:10])
        raise DependencyUnavailable(
            f"OpenSearch kept rejecting {len(pending)} chunks ({ids}) after {attempts} attempts",
            error="Search index unavailable",
        )

    def _send_bulk(self, ndjson: str, require_alias: bool = True) -> dict[str, Any]:
        # require_alias: a missing alias must not auto-create an index with dynamic mappings.
        # Reindex writes name their (just created) index version instead, so they send false.
        params = {
            "refresh": "false",
            "require_alias": "true" if require_alias else "false",
            "request_timeout": self.settings.write_timeout_seconds,
        }
        return self._retry.call("bulk", lambda: self.client.bulk(body=ndjson, params=params))

    # ---- reads ----------------------------------------------------------------------------
    def search_vector(self, tenant_id: str, vector: np.ndarray, flt: FilterNode, k: int) -> list[tuple[str, float]]:
        """k nearest chunks under the filter, scored (1 + cos) / 2 like the embedded engine."""
        if np.asarray(vector).size != self.dimension:
            raise ValueError(f"the query vector has {np.asarray(vector).size} dimensions, the index {self.dimension}")
        if k < 1:
            return []
        body = q.knn_query(tenant_id, vector, flt, k, self.settings.hnsw_ef_search)
        return q.ranked_hits(self._search("k-NN search", body, tenant_id), self.settings.space_type)[:k]

    def search_keyword(self, tenant_id: str, text: str, flt: FilterNode, k: int) -> list[tuple[str, float]]:
        """BM25 (Lucene's, as computed by the shard) under the filter; raw scores."""
        if k < 1:
            return []
        body = q.keyword_query(tenant_id, text, flt, k)
        return q.ranked_hits(self._search("keyword search", body, tenant_id))[:k]

    def get_payloads(self, tenant_id: str, chunk_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        payloads: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(chunk_ids))
        for start in range(0, len(unique), PAYLOAD_BATCH):
            body = q.payloads_query(tenant_id, unique[start : start + PAYLOAD_BATCH])
            payloads.update(q.payloads_from_hits(self._search("payload read", body, tenant_id)))
        return payloads

    def count(self, tenant_id: str, flt: FilterNode) -> int:
        return self._count(tenant_id, q.count_query(tenant_id, flt))

    def stats(self) -> dict[str, int]:
        answer = self._retry.call("stats", lambda: self.client.indices.stats(index=self.alias, metric="docs,store"))
        primaries = answer["_all"]["primaries"]
        return {
            "chunks": int(primaries["docs"]["count"]),
            "deleted_chunks": int(primaries["docs"]["deleted"]),
            "store_bytes": int(primaries["store"]["size_in_bytes"]),
        }

    def close(self) -> None:
        """Nothing to release: the client is shared per process (see opensearch_client)."""
        self._client = None
