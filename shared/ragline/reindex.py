"""`ragline reindex`: rebuild chunks into a new OpenSearch index version, then switch the alias.

Readers and writers only ever name the alias ``<alias>``, which points at one index version
``<alias>-v<N>``. A reindex:

1. creates ``<alias>-v<N+1>`` from the adapter's index definition (infra/opensearch/index-v1.json
   for the defaults) with the configured embedder's dimension, not yet behind the alias;
2. rebuilds every indexed document of the tenant (``--tenant``) or of all tenants into it: parse,
   chunk and embed its stored original as ingestion does, or with ``--from-chunks`` re-embed the
   chunk texts stored in the current version. With ``--tenant`` the other tenants' chunks are
   copied unchanged server-side (same model only);
3. refreshes it once and checks each rebuilt tenant's chunk count;
4. switches the alias with one ``POST /_aliases`` (remove old + add new as write index):
   searches hit the old version until that instant and the new one after it;
5. catches up: documents indexed, replaced, failed or deleted while 1–4 ran wrote to the old
   version, so they are re-run (from their originals) or removed in the new one. Documents whose
   processing spans the switch are waited for (``--settle-seconds``) and then re-run.

The old version stays (unaliased) for rollback: ``POST /_aliases`` back, or delete it once happy.
The embedded engine has no index versions: reindex refuses it (see ``run``).

With ``RAGLINE_OPENSEARCH_INDEX_LAYOUT=per_tenant`` every tenant has an alias of its own, and the
steps above run once per tenant (``--tenant``: that one; else every tenant with documents), with
nothing to copy. A tenant without an alias yet gets ``<its alias>-v<index_version>`` and the alias
is added: that is how the chunks of a shared index move into per-tenant indices (from the
originals, or ``--from-chunks`` from the shared alias). See infra/opensearch/README.md,
"Changing the layout".
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragline.config import Settings
from ragline.errors import ConfigurationError, NotFound
from ragline.ingest.prefetch import grouped
from ragline.ingest.service import EMBED_GROUP, document_chunks, extract_passages
from ragline.models import Document, DocumentStatus, IndexedChunk, utcnow
from ragline.ports import BlobStore, Embedder, MetadataStore

if TYPE_CHECKING:  # the adapter (and opensearch-py) load only when a reindex really runs
    from ragline.adapters.aws.opensearch.index import OpenSearchVectorIndex

log = logging.getLogger(__name__)

DocumentKey = tuple[str, str]  # (tenant, document)
LIST_PAGE = 500


# ---- chunks, built as ingestion builds them ------------------------------------------------------
def chunks_from_original(doc: Document, blobs: BlobStore, embedder: Embedder) -> tuple[list[IndexedChunk], np.ndarray]:
    """Parse, chunk and embed a document's stored original into exactly the chunks ingestion writes."""
    passages, vectors, _, title = extract_passages(doc, blobs, embedder)
    return document_chunks(doc, passages, title), vectors


def chunks_from_stored(
    doc: Document, stored: list[IndexedChunk], embedder: Embedder
) -> tuple[list[IndexedChunk], np.ndarray] | None:
    """The stored chunks of the document's current version, re-embedded; None when the index does
    not hold exactly that version (it changed meanwhile: the catch-up re-runs it)."""
    current = [c for c in stored if c.payload.get("version") == doc.version]
    if not current or len(current) != doc.chunk_count:
        return None
    parts = [embedder.embed_documents([c.text for c in group]) for group in grouped(current, EMBED_GROUP)]
    return current, np.concatenate(parts) if len(parts) > 1 else parts[0]


# ---- the reindex -----------------------------------------------------------------------------------
@dataclass
class ReindexReport:
    from_index: str
    to_index: str
    documents: int = 0
    chunks: int = 0
    copied_chunks: int = 0
    caught_up: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)


class ReindexError(ConfigurationError):
    error = "Reindex refused"


class Reindexer:
    def __init__(
        self,
        index: OpenSearchVectorIndex,
        store: MetadataStore,
        blobs: BlobStore,
        embedder: Embedder,
        *,
        settle_seconds: float = 60.0,
        poll_seconds: float = 1.0,
        clock: Callable[[], str] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        say: Callable[[str], None] = log.info,
    ) -> None:
        self.index = index
        self.store = store
        self.blobs = blobs
        self.embedder = embedder
        self.settle_seconds = settle_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self.say = say

    # ---- plan ------------------------------------------------------------------------------------
    def _next_version(self, tenant: str | None, discard_unfinished: bool) -> tuple[str | None, str]:
        """(the version the alias points at, the one to build). Per tenant, a tenant without an
        alias yet has no old version: its first one is built and the alias added."""
        from ragline.adapters.aws.opensearch import queries as q

        per_tenant = self.index.per_tenant
        if per_tenant and tenant is None:
            raise ReindexError("the per-tenant layout rebuilds one tenant's index at a time: name the tenant")
        alias = self.index.scope_alias(tenant)
        old = self.index.current_index(tenant, missing_ok=per_tenant)
        if old is None:
            new = q.versioned_index_name(alias, self.index.settings.index_version)
        else:
            version = q.index_version(alias, old)
            if version is None:
                raise ReindexError(f"alias {alias} points at {old}, which is not named {alias}-v<N>: rename it first")
            new = q.versioned_index_name(alias, version + 1)
        if self.index.index_exists(new):
            if not discard_unfinished:
                raise ReindexError(
                    f"{new} already exists but {alias} points at {old or 'nothing'}: an earlier reindex stopped "
                    "before its switch. Nobody reads it; run again with --discard-unfinished to delete and rebuild it"
                )
            self.say(f"deleting {new}, left by an unfinished reindex")
            self.index.delete_index_version(new, tenant)
        if old is None:
            self.index.check_room(1)
        elif tenant is not None and not per_tenant and self.index.dimension_of(old) != self.embedder.dimension:
            raise ReindexError(
                f"{old} holds vectors of another dimension than the embedder's {self.embedder.dimension}: "
                "a new model needs every tenant re-embedded, so reindex without --tenant"
            )
        return old, new

    # ---- documents -------------------------------------------------------------------------------
    def _documents(self, tenant: str | None, status: DocumentStatus | None) -> Iterator[Document]:
        if tenant is None:
            statuses = [status] if status is not None else list(DocumentStatus)
            for each in statuses:
                yield from self.store.documents_with_status(each)
            return
        cursor: str | None = None
        while True:
            page, cursor = self.store.list_documents(tenant, status=status, limit=LIST_PAGE, cursor=cursor)
            yield from page
            if cursor is None:
                return

    def _tenants(self) -> list[str]:
        """Every tenant with a document that is or may become searchable."""
        live = (DocumentStatus.QUEUED, DocumentStatus.PROCESSING, DocumentStatus.INDEXED)
        return sorted({doc.tenant_id for status in live for doc in self.store.documents_with_status(status)})

    def _build(
        self, doc: Document, from_chunks: bool, source_index: str
    ) -> tuple[list[IndexedChunk], np.ndarray] | None:
        if from_chunks:
            return chunks_from_stored(doc, self.index.stored_chunks(doc.tenant_id, doc.id, source_index), self.embedder)
        try:
            return chunks_from_original(doc, self.blobs, self.embedder)
        except NotFound:  # a newer version replaced the original meanwhile: the catch-up takes it
            return None

    # ---- run -------------------------------------------------------------------------------------
    def run_all(
        self, tenant: str | None = None, *, from_chunks: bool = False, discard_unfinished: bool = False
    ) -> list[ReindexReport]:
        """``run`` for the scope the layout has: the shared alias, or each tenant's alias in turn."""
        options = {"from_chunks": from_chunks, "discard_unfinished": discard_unfinished}
        if tenant is not None or not self.index.per_tenant:
            return [self.run(tenant, **options)]
        tenants = self._tenants()
        existing = self.index.tenant_indices()
        new = [t for t in tenants if self.index.scope_alias(t) not in existing]
        cap = self.index.settings.max_tenant_indices
        if len(existing) + len(new) > cap:
            raise ReindexError(
                f"{len(new)} tenants need an index beside the {len(existing)} tenant indices there, over "
                f"RAGLINE_OPENSEARCH_MAX_TENANT_INDICES={cap}: raise it (and check the cluster's shard room, "
                "infra/opensearch/README.md) or keep the shared layout"
            )
        return [self.run(each, **options) for each in tenants]

    def run(
        self, tenant: str | None = None, *, from_chunks: bool = False, discard_unfinished: bool = False
    ) -> ReindexReport:
        old, new = self._next_version(tenant, discard_unfinished)
        # A tenant's first index in the per-tenant layout: --from-chunks reads the shared alias.
        source = old or self.index.alias
        report = ReindexReport(from_index=old or "", to_index=new)
        self.say(f"rebuilding {'tenant ' + tenant if tenant else 'all tenants'} from {old or source} into {new}")
        self.index.create_index_version(new, tenant)

        rebuilt: dict[DocumentKey, int] = {}
        expected: Counter[str] = Counter()
        for doc in self._documents(tenant, DocumentStatus.INDEXED):
            built = self._build(doc, from_chunks, source)
            if built is None:
                report.skipped.append(doc.id)
                continue
            chunks, vectors = built
            self.index.write_chunks(new, chunks, vectors)
            rebuilt[(doc.tenant_id, doc.id)] = doc.version
            expected[doc.tenant_id] += len(chunks)
            report.documents += 1
            report.chunks += len(chunks)
        if tenant is not None:
            expected.setdefault(tenant, 0)
            if old is not None and not self.index.per_tenant:
                report.copied_chunks = self.index.copy_other_tenants(old, new, tenant)
        self.index.refresh(new)
        for each, count in sorted(expected.items()):
            found = self.index.count_in(new, each)
            if found != count:
                raise ReindexError(
                    f"{new} holds {found} chunks of tenant {each}, {count} were written: not switching "
                    f"(readers stay on {old or source}; rerun with --discard-unfinished)"
                )

        alias = self.index.scope_alias(tenant)
        if old is None and self.index.current_index(tenant, missing_ok=True) is not None:
            # A process already on the per-tenant layout made the tenant's index meanwhile.
            raise ReindexError(
                f"{alias} appeared while {new} was built: not adding it twice. Run again: the tenant's "
                "index is then rebuilt as a new version (--discard-unfinished removes this one)"
            )
        self.index.switch_alias(old, new, tenant)
        switched = self.clock()
        self.say(f"{alias} now points at {new} ({report.documents} documents, {report.chunks} chunks)")
        self._catch_up(tenant, switched, rebuilt, report)
        return report

    def _catch_up(
        self, tenant: str | None, switched: str, rebuilt: dict[DocumentKey, int], report: ReindexReport
    ) -> None:
        """Bring the new version up to date with what happened to documents during the rebuild:
        every indexed document whose version differs from the one rebuilt is re-run, every rebuilt
        one since deleted or failed is removed, until nothing is processing across the switch."""
        handled = dict(rebuilt)
        deadline = self.monotonic() + self.settle_seconds
        while True:
            current = {(d.tenant_id, d.id): d for d in self._documents(tenant, None)}
            for key in list(handled):
                doc = current.get(key)
                if doc is None or doc.status in (DocumentStatus.DELETING, DocumentStatus.FAILED):
                    # deleted or failed while we rebuilt: that removal reached only the old version
                    self.index.delete_document(*key)
                    del handled[key]
                    report.removed.append(key[1])
            for key, doc in current.items():
                if doc.status == DocumentStatus.INDEXED and handled.get(key) != doc.version:
                    if self._rerun(doc):
                        handled[key] = doc.version
                        report.caught_up.append(doc.id)
            # Processing that began before the switch may have written to the old version only.
            spanning = [
                d for d in current.values() if d.status == DocumentStatus.PROCESSING and d.updated_at < switched
            ]
            if not spanning:
                report.unsettled = []
                return
            report.unsettled = sorted(d.id for d in spanning)
            if self.monotonic() >= deadline:
                self.say(f"still processing across the switch: {', '.join(report.unsettled)}")
                return
            self.sleep(self.poll_seconds)

    def _rerun(self, doc: Document) -> bool:
        try:
            chunks, vectors = chunks_from_original(doc, self.blobs, self.embedder)
        except NotFound:  # replaced again meanwhile: the next pass sees the newer version
            return False
        self.index.replace_document(doc.tenant_id, doc.id, chunks, vectors)
        return True


# ---- CLI -----------------------------------------------------------------------------------------
def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reindex",
        help="rebuild chunks into a new OpenSearch index version, then switch the alias",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--tenant",
        default=None,
        help="rebuild only this tenant; the others are copied as they are (same embedding model only)",
    )
    parser.add_argument(
        "--from-chunks", action="store_true", help="re-embed the stored chunk texts instead of re-parsing the originals"
    )
    parser.add_argument(
        "--discard-unfinished", action="store_true", help="delete a next index version left by an interrupted reindex"
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=60.0,
        help="how long to wait for documents whose processing spans the switch (default 60)",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="where Ragline keeps its data (default ./.ragline)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    settings = Settings(**overrides)
    if not settings.opensearch_url:
        # The embedded engine keeps one vector store per data dir with no versions or alias to
        # switch, so there is nothing to rebuild beside it while searches go on.
        raise ReindexError(
            "ragline reindex rebuilds OpenSearch index versions behind an alias and needs OPENSEARCH_URL. "
            f"The embedded engine ({settings.vector_dir}) has no index versions to switch between: for "
            "another embedding model, ingest the documents again into a new --data-dir"
        )
    from ragline.adapters.aws.opensearch.index import OpenSearchVectorIndex
    from ragline.adapters.aws.opensearch.settings import OpenSearchSettings
    from ragline.container import Container

    # The container's store, blobs and embedder, but not its index: ensure_index would refuse the
    # current version when the new embedder has another dimension, which is what reindex is for.
    container = Container(settings, snapshot_interval_seconds=0)
    index = OpenSearchVectorIndex(OpenSearchSettings.from_settings(settings), container.embedder.dimension)
    reindexer = Reindexer(
        index, container.store, container.blobs, container.embedder, settle_seconds=args.settle_seconds, say=print
    )
    reports = reindexer.run_all(args.tenant, from_chunks=args.from_chunks, discard_unfinished=args.discard_unfinished)
    unsettled: list[str] = []
    for report in reports:
        print(
            f"reindexed {report.documents} documents ({report.chunks} chunks) from {report.from_index or '(none)'} "
            f"into {report.to_index}; copied {report.copied_chunks} chunks of other tenants; caught up "
            f"{len(report.caught_up)}, removed {len(report.removed)}, skipped {len(report.skipped)}"
        )
        unsettled.extend(report.unsettled)
    if unsettled:
        print(f"still processing across the switch, re-run them if they end indexed: {', '.join(unsettled)}")
        return 1
    return 0
