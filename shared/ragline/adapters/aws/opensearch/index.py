"""The VectorIndex port on OpenSearch k-NN (Amazon OpenSearch Service or any OpenSearch 2.19+).

Request bodies come from ``queries`` (pure, golden-tested), the client and its retries from
``client``; this module sends them and reads the answers. Reads and writes go through an alias
(``<alias>`` → ``<alias>-v<version>``) so a reindex can swap index versions in one step.

Two layouts (``RAGLINE_OPENSEARCH_INDEX_LAYOUT``):

- ``shared``: one alias for every tenant. Tenant isolation has two independent layers, both from
  the tenant every read is given: each read carries a ``term`` on ``tenant_id``, and on managed
  clusters every chunk is routed by its tenant (``_routing`` required by the mapping), so a read
  with ``?routing=<tenant>`` only visits the shard holding that tenant's chunks. Serverless (aoss)
  has no custom routing: there the term filter alone isolates tenants. BM25 statistics are per
  shard, so shared by the tenants on it (see infra/opensearch/README.md).
- ``per_tenant``: one alias and index per tenant (``queries.tenant_alias``), created on the
  tenant's first write; every read and write of a tenant names only its alias, and still carries
  the tenant term. No custom routing: a tenant's index is its own, so its shards may spread it.
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
from ragline.errors import ConfigurationError, DependencyUnavailable, RaglineError
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


class TenantIndexLimitReached(ConfigurationError):
    """Per-tenant layout: a new tenant index would pass RAGLINE_OPENSEARCH_MAX_TENANT_INDICES.

    The message reaches the tenant (a failed document's error), so it names the setting but not
    how many tenants there are; the log line for the operator does."""

    error = "Tenant index limit reached"


def _index_missing(exc: TransportError) -> bool:
    return isinstance(exc, NotFoundError) and exc.error == "index_not_found_exception"


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
        # Per-tenant layout: tenants whose index this process has made sure of (created or checked).
        self._ready_tenants: set[str] = set()

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
        """The configured alias: the shared layout's only alias, the per-tenant layout's prefix."""
        return self.settings.index_alias

    @property
    def per_tenant(self) -> bool:
        return self.settings.per_tenant

    def alias_for(self, tenant_id: str) -> str:
        """The alias a tenant's reads and writes name."""
        return q.tenant_alias(self.alias, tenant_id) if self.per_tenant else self.alias

    def _scope_alias(self, tenant_id: str | None) -> str:
        """The alias an index-version operation acts on: the shared one, or one tenant's."""
        if not self.per_tenant:
            return self.alias
        if tenant_id is None:
            raise OpenSearchConfigError("the per-tenant layout has an alias per tenant: name the tenant")
        return q.tenant_alias(self.alias, tenant_id)

    # ---- plumbing -------------------------------------------------------------------------
    @property
    def _routes(self) -> bool:
        """Custom routing by tenant: only on a shared index of a managed cluster."""
        return not (self.settings.serverless or self.per_tenant)

    def _routing(self, tenant_id: str) -> dict[str, str]:
        return {"routing": tenant_id} if self._routes else {}

    def _require_managed(self, operation: str) -> None:
        if self.settings.serverless:
            raise OpenSearchConfigError(
                f"{operation} is not supported on OpenSearch Serverless: vector collections assign their own "
                "document ids and have no _delete_by_query nor refresh (see infra/opensearch/README.md)"
            )

    def _search(self, what: str, body: dict[str, Any], tenant_id: str, index: str | None = None) -> dict[str, Any]:
        params = self._routing(tenant_id)
        target = index or self.alias_for(tenant_id)
        try:
            return self._retry.call(what, lambda: self.client.search(index=target, body=body, params=params))
        except TransportError as exc:
            if self.per_tenant and _index_missing(exc):  # a tenant that never wrote has no index
                return {"hits": {"hits": []}}
            raise

    def _count(self, tenant_id: str, body: dict[str, Any], index: str | None = None) -> int:
        target = index or self.alias_for(tenant_id)
        try:
            answer = self._retry.call(
                "count", lambda: self.client.count(index=target, body=body, params=self._routing(tenant_id))
            )
        except TransportError as exc:
            if self.per_tenant and _index_missing(exc):
                return 0
            raise
        return int(answer["count"])

    def _delete_by_query(self, what: str, tenant_id: str, body: dict[str, Any]) -> dict[str, Any]:
        target = self.alias_for(tenant_id)
        params = self._delete_params(tenant_id)
        try:
            return self._retry.call(what, lambda: self.client.delete_by_query(index=target, body=body, params=params))
        except TransportError as exc:
            if self.per_tenant and _index_missing(exc):
                return {"deleted": 0}
            raise

    # ---- set-up ---------------------------------------------------------------------------
    def index_definition(self, *, with_alias: bool = True, tenant_id: str | None = None) -> dict[str, Any]:
        """The body of PUT /<alias>-v<N> (infra/opensearch/index-v1.json for the defaults); in the
        per-tenant layout, of one tenant's index (its alias, its tenant in ``_meta``)."""
        s = self.settings
        alias = self._scope_alias(tenant_id)
        return q.index_definition(
            self.dimension,
            m=s.hnsw_m,
            ef_construction=s.hnsw_ef_construction,
            ef_search=s.hnsw_ef_search,
            space_type=s.space_type,
            shards=s.shards,
            replicas=s.replicas,
            routing_required=self._routes,
            alias=alias if with_alias else None,
            tenant_id=tenant_id if self.per_tenant else None,
        )

    def ensure_index(self) -> None:
        """Make sure the alias points at a chunk index of our dimension.

        First start: ``PUT /<alias>-v<index_version>`` with the alias as its write index. Later
        starts only check: a different vector dimension is an error (reindex into a new version),
        and so is a concrete index that holds the alias's name (an older layout or a hand-made
        index: reads and writes must go through an alias, or reindex could not swap versions).

        Per-tenant layout: tenant indices are made on each tenant's first write (``_ensure_tenant``),
        so a start only looks for the shared alias and warns while it still exists (chunks not
        moved yet, or kept for a rollback: infra/opensearch/README.md, "Changing the layout").
        """
        self._require_managed("ensure_index")
        if self.per_tenant:
            if self._alias_exists(self.alias):
                log.warning(
                    "RAGLINE_OPENSEARCH_INDEX_LAYOUT=per_tenant, but the shared alias %s still exists: tenants read "
                    "only their own indices, so chunks still in it are not searched. Move them with "
                    "`ragline reindex`, then delete it",
                    self.alias,
                )
            return
        if self._alias_exists(self.alias) or not self._create_index(self.alias, self.settings.index_name):
            self._check_index(self.alias)

    def _ensure_tenant(self, tenant_id: str) -> None:
        """Per-tenant layout, before a write: the tenant's index exists, is of our dimension and is
        this tenant's. Checked once per process and tenant (two round trips), created at most once."""
        if tenant_id in self._ready_tenants:
            return
        alias = self.alias_for(tenant_id)
        if self._alias_exists(alias) or not self._create_index(alias, None, tenant_id):
            self._check_index(alias, tenant_id)
        self._ready_tenants.add(tenant_id)

    def _alias_exists(self, alias: str) -> bool:
        return bool(self._retry.call("alias check", lambda: self.client.indices.exists_alias(name=alias)))

    def _create_index(self, alias: str, index: str | None, tenant_id: str | None = None) -> bool:
        """Create the index version with its alias; False when another process just did."""
        index = index or q.versioned_index_name(alias, self.settings.index_version)
        if self._retry.call("index check", lambda: self.client.indices.exists(index=alias)):
            raise OpenSearchConfigError(
                f"{alias} is an index, not an alias: Ragline reads and writes through the alias "
                f"{alias} -> {index}. Move the data with POST /_reindex into "
                f"{index}, delete {alias}, then add the alias (POST /_aliases), "
                "or set RAGLINE_OPENSEARCH_INDEX_ALIAS to another name (see infra/opensearch/README.md)"
            )
        if tenant_id is not None:
            self.check_room(1)
        body = self.index_definition(tenant_id=tenant_id)
        try:
            self._retry.call("index creation", lambda: self.client.indices.create(index=index, body=body))
            return True
        except RequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise
            if not self._alias_exists(alias):  # the index exists but the alias does not: not ours to fix
                raise OpenSearchConfigError(
                    f"index {index} exists without the alias {alias}: add the alias or remove the index"
                ) from exc
            log.info("index %s was created concurrently", index)
            return False

    def _check_index(self, alias: str, tenant_id: str | None = None) -> None:
        """The alias's index holds our dimension and, per tenant, was made for this tenant."""
        mapping = self._retry.call("mapping read", lambda: self.client.indices.get_mapping(index=alias))
        found = q.index_dimension(mapping)
        if found is None:
            raise OpenSearchConfigError(f"{alias} has no {q.VECTOR_FIELD} field: it is not a Ragline chunk index")
        if found != self.dimension:
            raise ValueError(
                f"{alias} holds {found}-dimensional vectors but the embedder makes {self.dimension}: "
                "reindex into a new index version"
            )
        if tenant_id is not None and q.index_tenant(mapping) != tenant_id:
            # Only a 48-bit hash collision (or a hand-made index) gets here: never write into it.
            raise OpenSearchConfigError(
                f"{alias} was not created for this tenant (its _meta.{q.META_TENANT} says otherwise): "
                "not writing into it",
                error="Search index misconfigured",
            )

    # ---- per-tenant indices ----------------------------------------------------------------
    def tenant_indices(self) -> dict[str, str]:
        """Per-tenant layout: every tenant alias -> the index version it points at."""
        pattern = q.tenant_alias_pattern(self.alias)
        try:
            answer = self._retry.call("alias list", lambda: self.client.indices.get_alias(name=pattern))
        except NotFoundError:
            return {}
        return q.alias_targets(answer)

    def check_room(self, new_indices: int) -> None:
        """Refuse to pass RAGLINE_OPENSEARCH_MAX_TENANT_INDICES. A soft cap: processes creating
        tenants at the same instant may each see room, so it can be passed by that many."""
        existing = len(self.tenant_indices())
        cap = self.settings.max_tenant_indices
        if existing + new_indices > cap:
            log.error(
                "%d tenant indices exist under %s and %d more are needed: RAGLINE_OPENSEARCH_MAX_TENANT_INDICES=%d",
                existing,
                self.alias,
                new_indices,
                cap,
            )
            raise TenantIndexLimitReached(
                "no index can be created for this tenant: the deployment's limit of tenant indices "
                "(RAGLINE_OPENSEARCH_MAX_TENANT_INDICES) is reached"
            )

    # ---- index versions (ragline reindex) --------------------------------------------------
    # `tenant_id` picks the alias in the per-tenant layout; the shared layout ignores it.
    def scope_alias(self, tenant_id: str | None = None) -> str:
        return self._scope_alias(tenant_id)

    def current_index(self, tenant_id: str | None = None, *, missing_ok: bool = False) -> str | None:
        """The index version the alias points at now (None when it does not exist and missing_ok)."""
        self._require_managed("reindex")
        alias = self._scope_alias(tenant_id)
        try:
            answer = self._retry.call("alias read", lambda: self.client.indices.get_alias(name=alias))
        except NotFoundError as exc:
            if missing_ok:
                return None
            raise OpenSearchConfigError(
                f"alias {alias} does not exist: there is nothing to reindex (the first start creates it)"
            ) from exc
        return q.alias_target(alias, answer)

    def index_exists(self, index: str) -> bool:
        return bool(self._retry.call("index check", lambda: self.client.indices.exists(index=index)))

    def dimension_of(self, index: str) -> int | None:
        mapping = self._retry.call("mapping read", lambda: self.client.indices.get_mapping(index=index))
        return q.index_dimension(mapping)

    def create_index_version(self, index: str, tenant_id: str | None = None) -> None:
        """PUT /<alias>-v<N>: this adapter's definition and dimension, not yet behind the alias."""
        alias = self._scope_alias(tenant_id)
        if q.index_version(alias, index) is None:
            raise ValueError(f"{index} is not a version of {alias} (<alias>-v<N>)")
        body = self.index_definition(with_alias=False, tenant_id=tenant_id)
        self._retry.call("index creation", lambda: self.client.indices.create(index=index, body=body))

    def delete_index_version(self, index: str, tenant_id: str | None = None) -> None:
        """DELETE /<alias>-v<N>, never the version the alias points at."""
        alias = self._scope_alias(tenant_id)
        if q.index_version(alias, index) is None or index == self.current_index(tenant_id, missing_ok=True):
            raise OpenSearchConfigError(f"{index} is not an unused version of {alias}: not deleting it")
        self._retry.call("index deletion", lambda: self.client.indices.delete(index=index))

    def write_chunks(self, index: str, chunks: Sequence[IndexedChunk], vectors: np.ndarray) -> None:
        """Bulk chunks into a named index version (no refresh): the rebuild half of a reindex."""
        if not chunks:
            return
        self._check_write(chunks[0].tenant_id, chunks[0].document_id, chunks, vectors)
        actions = q.bulk_actions(index, chunks, vectors, routing=self._routes)
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

    def switch_alias(self, from_index: str | None, to_index: str, tenant_id: str | None = None) -> None:
        """One POST /_aliases: readers and writers move from one index version to the next at once
        (without `from_index`, a tenant's first index: the alias is added)."""
        body = q.alias_swap(self._scope_alias(tenant_id), from_index, to_index)
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
            if self.per_tenant:
                self._ensure_tenant(tenant_id)
            alias = self.alias_for(tenant_id)
            created: list[str] = []
            try:
                actions = q.bulk_actions(alias, chunks, vectors, routing=self._routes)
                self._bulk(q.bulk_lines(actions), created)
                self._refresh(alias)
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
                self._delete_by_query("discard", tenant_id, q.delete_chunks_query(tenant_id, document_id, doomed))
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
        deleted = 0
        remaining = -1
        for attempt in range(self.settings.verify_attempts):
            answer = self._delete_by_query("delete by query", tenant_id, body)
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
        """Index-wide numbers for the operator (never a tenant: they describe other tenants too)."""
        if self.per_tenant:
            return self._tenant_stats()
        answer = self._retry.call("stats", lambda: self.client.indices.stats(index=self.alias, metric="docs,store"))
        primaries = answer["_all"]["primaries"]
        return {
            "chunks": int(primaries["docs"]["count"]),
            "deleted_chunks": int(primaries["docs"]["deleted"]),
            "store_bytes": int(primaries["store"]["size_in_bytes"]),
        }

    def _tenant_stats(self) -> dict[str, int]:
        """Summed over the index versions the tenant aliases point at (not old, unaliased ones)."""
        current = self.tenant_indices()
        if not current:
            return {"chunks": 0, "deleted_chunks": 0, "store_bytes": 0, "tenant_indices": 0}
        pattern = q.tenant_alias_pattern(self.alias)
        answer = self._retry.call(
            "stats",
            lambda: self.client.indices.stats(index=pattern, metric="docs,store", params={"level": "indices"}),
        )
        return {**q.primaries_stats(answer, current.values()), "tenant_indices": len(current)}

    def close(self) -> None:
        """Nothing to release: the client is shared per process (see opensearch_client)."""
        self._client = None
