"""Embedded vector engine with the semantics of OpenSearch k-NN, for one machine.

SQLite holds the truth (chunks, payloads, vectors) and a change log; memory holds what makes
search fast: a faiss HNSW graph (the library behind OpenSearch's faiss engine), per-field
posting lists for filters, and BM25 postings. Every write is a SQLite transaction; memory
applies the change log after commit, whole transactions at a time under one lock, so readers
see a document's chunks all old or all new. Another process writing the same files (the CLI
beside a server) is picked up the same way. Snapshots of memory make restarts fast; a crash
between snapshots replays the log from the last one.

Scores follow OpenSearch: cosine similarity s is reported as (1 + s) / 2; keyword scores are
Lucene BM25 (k1 = 1.2, b = 0.75) with statistics (document frequency, chunk count, average
length) over the caller's tenant only, as if each tenant had its own index: index-wide statistics
would let one tenant infer how many of another's chunks hold a word. Filters are applied inside the search (a bitmap handed to
faiss), and a filter that leaves few candidates is answered exactly, as OpenSearch's efficient
filtering does.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import sqlite3
import threading
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ragline.adapters.local.sqlite_errors import unavailable_when_locked
from ragline.chunks import filterable_values, number_value
from ragline.models import IndexedChunk
from ragline.retrieval.analysis import analyze
from ragline.retrieval.filters import (
    And,
    Exists,
    FilterNode,
    MatchAll,
    Not,
    Or,
    Range,
    Term,
    compare,
)

log = logging.getLogger(__name__)

BM25_K1 = 1.2
BM25_B = 0.75
# Filtered HNSW loses recall when few nodes pass the filter (bench: 0.99 at 70% of chunks, 0.62 at
# 1%), so by default a filter matching less than this share of the index is searched exactly.
HNSW_MIN_FILTER_SHARE = 0.1
# Exact search copies the matching rows when they are few, and scores the whole matrix in place when many.
EXACT_GATHER_MAX_SHARE = 0.3
SNAPSHOT_VERSION = 2  # 2: no index-wide live_length (BM25 statistics are per tenant)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(document_id);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL CHECK (op IN ('add', 'del')),
    row INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS engine_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

FieldKey = tuple[str, Any]


def field_key(value: Any) -> FieldKey:
    """Posting-list key: booleans, numbers and strings never collide (True is not 1 here)."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", number_value(value))
    return ("s", str(value))


@dataclass
class _Memory:
    """Everything search needs in memory; positions are faiss ids, in the order chunks arrived."""

    dimension: int
    hnsw_m: int
    ef_construction: int
    index: Any = None
    chunk_ids: list[str] = field(default_factory=list)
    document_ids: list[str] = field(default_factory=list)
    rowids: array = field(default_factory=lambda: array("q"))
    alive: bytearray = field(default_factory=bytearray)
    doc_len: array = field(default_factory=lambda: array("f"))
    pos_of_row: dict[int, int] = field(default_factory=dict)
    positions_of_doc: dict[str, list[int]] = field(default_factory=dict)
    postings: dict[str, dict[FieldKey, array]] = field(default_factory=dict)
    terms: dict[str, tuple[array, array]] = field(default_factory=dict)
    live_count: int = 0
    last_seq: int = 0

    def __post_init__(self) -> None:
        if self.index is None:
            self.index = faiss.IndexHNSWFlat(self.dimension, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = self.ef_construction

    def add(self, rows: Sequence[tuple[int, str, str, dict[str, Any], np.ndarray]]) -> None:
        if not rows:
            return
        vectors = np.stack([row[4] for row in rows]).astype(np.float32, copy=False)
        self.index.add(vectors)
        for rowid, chunk_id, document_id, payload, _ in rows:
            pos = len(self.chunk_ids)
            self.chunk_ids.append(chunk_id)
            self.document_ids.append(document_id)
            self.rowids.append(rowid)
            self.alive.append(1)
            self.pos_of_row[rowid] = pos
            self.positions_of_doc.setdefault(document_id, []).append(pos)
            for name, values in filterable_values(payload).items():
                for value in values:
                    self.postings.setdefault(name, {}).setdefault(field_key(value), array("i")).append(pos)
            tokens = analyze(str(payload.get("text", "")))
            self.doc_len.append(float(len(tokens)))
            for term, count in Counter(tokens).items():
                positions, freqs = self.terms.setdefault(term, (array("i"), array("f")))
                positions.append(pos)
                freqs.append(float(count))
            self.live_count += 1

    def remove_row(self, rowid: int) -> None:
        pos = self.pos_of_row.pop(rowid, None)
        if pos is None or not self.alive[pos]:
            return
        self.alive[pos] = 0
        self.live_count -= 1
        positions = self.positions_of_doc.get(self.document_ids[pos])
        if positions is not None:
            positions.remove(pos)
            if not positions:
                del self.positions_of_doc[self.document_ids[pos]]

    @property
    def size(self) -> int:
        return len(self.chunk_ids)

    def alive_mask(self) -> np.ndarray:
        return np.frombuffer(self.alive, dtype=np.uint8).astype(bool)

    def mask(self, node: FilterNode) -> np.ndarray:
        n = self.size
        if isinstance(node, MatchAll):
            return np.ones(n, dtype=bool)
        if isinstance(node, Term):
            out = np.zeros(n, dtype=bool)
            by_value = self.postings.get(node.field, {})
            for value in node.values:
                positions = by_value.get(field_key(value))
                if positions:
                    out[np.frombuffer(positions, dtype=np.int32)] = True
            return out
        if isinstance(node, Range):
            out = np.zeros(n, dtype=bool)
            for (_, value), positions in self.postings.get(node.field, {}).items():
                if compare(node.op, value, node.value):
                    out[np.frombuffer(positions, dtype=np.int32)] = True
            return out
        if isinstance(node, Exists):
            out = np.zeros(n, dtype=bool)
            for positions in self.postings.get(node.field, {}).values():
                out[np.frombuffer(positions, dtype=np.int32)] = True
            return out
        if isinstance(node, Not):
            return ~self.mask(node.child)
        if isinstance(node, And):
            out = self.mask(node.children[0])
            for child in node.children[1:]:
                out &= self.mask(child)
            return out
        if isinstance(node, Or):
            out = self.mask(node.children[0])
            for child in node.children[1:]:
                out |= self.mask(child)
            return out
        raise TypeError(f"unknown filter node {node!r}")

    def vectors_view(self) -> np.ndarray:
        storage = faiss.downcast_index(self.index.storage)
        return faiss.rev_swig_ptr(storage.get_xb(), self.size * self.dimension).reshape(self.size, self.dimension)


def _top_k(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Candidate positions with the k best scores, best first; ties go to the earlier chunk."""
    if candidates.size > k:
        part = np.argpartition(-scores[candidates], k - 1)[:k]
        candidates = candidates[part]
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order]


class EmbeddedVectorIndex:
    def __init__(
        self,
        directory: Path,
        dimension: int,
        *,
        hnsw_m: int = 16,
        ef_construction: int = 100,
        ef_search: int = 256,
        exact_search_max_candidates: int = 20_000,
        hnsw_min_filter_share: float = HNSW_MIN_FILTER_SHARE,
        snapshot_interval_seconds: float = 30.0,
    ) -> None:
        self.dimension = dimension
        self.directory = directory
        self.ef_search = ef_search
        self.exact_search_max_candidates = exact_search_max_candidates
        self.hnsw_min_filter_share = hnsw_min_filter_share
        self._hnsw_m = hnsw_m
        self._ef_construction = ef_construction
        directory.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(directory / "chunks.db", check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._check_dimension()
        self._lock = threading.RLock()
        self._closed = False
        self._data_version = -1
        self._snapshot_seq = 0
        self._mem = self._load()
        self._stop = threading.Event()
        self._snapshotter: threading.Thread | None = None
        if snapshot_interval_seconds > 0:
            self._snapshotter = threading.Thread(
                target=self._snapshot_loop, args=(snapshot_interval_seconds,), name="vector-snapshot", daemon=True
            )
            self._snapshotter.start()

    # ---- set-up and persistence -------------------------------------------------------
    def _check_dimension(self) -> None:
        row = self._db.execute("SELECT value FROM engine_meta WHERE key = 'dimension'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO engine_meta VALUES ('dimension', ?)", (str(self.dimension),))
        elif int(row[0]) != self.dimension:
            raise ValueError(
                f"{self.directory} holds {row[0]}-dimensional vectors but the embedder makes {self.dimension}: "
                "reindex into a new data directory"
            )

    @property
    def _snapshot_path(self) -> Path:
        return self.directory / "snapshot.pkl"

    @property
    def _graph_path(self) -> Path:
        return self.directory / "snapshot.faiss"

    def _load(self) -> _Memory:
        mem = self._read_snapshot()
        if mem is None:
            mem = self._rebuild()
        self._snapshot_seq = mem.last_seq
        self._apply_changes(mem)
        return mem

    def _read_snapshot(self) -> _Memory | None:
        if not (self._snapshot_path.exists() and self._graph_path.exists()):
            return None
        try:
            with self._snapshot_path.open("rb") as fh:
                header, state = pickle.load(fh)
            if header != (SNAPSHOT_VERSION, self.dimension, self._hnsw_m):
                return None
            state["index"] = faiss.read_index(str(self._graph_path))
        except (OSError, EOFError, pickle.UnpicklingError, RuntimeError, ValueError, KeyError) as exc:
            log.warning("vector snapshot unreadable, rebuilding from the chunk store: %s", exc)
            return None
        mem = _Memory(dimension=self.dimension, hnsw_m=self._hnsw_m, ef_construction=self._ef_construction, **state)
        if mem.index.ntotal != mem.size:
            return None
        oldest = self._db.execute("SELECT MIN(seq) FROM changes").fetchone()[0]
        if oldest is not None and oldest > mem.last_seq + 1:
            return None  # the log was pruned past this snapshot
        return mem

    def _rebuild(self) -> _Memory:
        mem = _Memory(dimension=self.dimension, hnsw_m=self._hnsw_m, ef_construction=self._ef_construction)
        self._db.execute("BEGIN")
        try:
            mem.last_seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
            cursor = self._db.execute("SELECT rowid, chunk_id, document_id, payload, vector FROM chunks ORDER BY rowid")
            while batch := cursor.fetchmany(4096):
                mem.add([self._decode(row) for row in batch])
        finally:
            self._db.execute("COMMIT")
        return mem

    def _decode(self, row: tuple[int, str, str, str, bytes]) -> tuple[int, str, str, dict[str, Any], np.ndarray]:
        rowid, chunk_id, document_id, payload, vector = row
        return rowid, chunk_id, document_id, json.loads(payload), np.frombuffer(vector, dtype=np.float32)

    def _apply_changes(self, mem: _Memory) -> None:
        """Bring memory up to the committed log: whole transactions, in order."""
        self._db.execute("BEGIN")
        try:
            changes = self._db.execute(
                "SELECT seq, op, row FROM changes WHERE seq > ? ORDER BY seq", (mem.last_seq,)
            ).fetchall()
            added = [row for _, op, row in changes if op == "add"]
            rows: dict[int, tuple[Any, ...]] = {}
            for start in range(0, len(added), 500):
                part = added[start : start + 500]
                marks = ",".join("?" * len(part))
                for row in self._db.execute(
                    f"SELECT rowid, chunk_id, document_id, payload, vector FROM chunks WHERE rowid IN ({marks})", part
                ):
                    rows[row[0]] = row
        finally:
            self._db.execute("COMMIT")
        pending: list[tuple[int, str, str, dict[str, Any], np.ndarray]] = []
        for _, op, row in changes:
            if op == "add":
                if row in rows and row not in mem.pos_of_row:
                    pending.append(self._decode(rows[row]))
            else:
                if pending:
                    mem.add(pending)
                    pending = []
                mem.remove_row(row)
        mem.add(pending)
        if changes:
            mem.last_seq = changes[-1][0]
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]

    def _refresh(self) -> None:
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._apply_changes(self._mem)

    def snapshot(self) -> None:
        """Write memory to disk so the next start need not replay or rebuild."""
        with self._lock:
            self._refresh()
            mem = self._mem
            if mem.last_seq == self._snapshot_seq and self._snapshot_path.exists():
                return
            state = {
                name: getattr(mem, name)
                for name in (
                    "chunk_ids",
                    "document_ids",
                    "rowids",
                    "alive",
                    "doc_len",
                    "pos_of_row",
                    "positions_of_doc",
                    "postings",
                    "terms",
                    "live_count",
                    "last_seq",
                )
            }
            graph_tmp = self._graph_path.with_suffix(".faiss.tmp")
            state_tmp = self._snapshot_path.with_suffix(".pkl.tmp")
            faiss.write_index(mem.index, str(graph_tmp))
            with state_tmp.open("wb") as fh:
                pickle.dump(((SNAPSHOT_VERSION, self.dimension, self._hnsw_m), state), fh, protocol=5)
                fh.flush()
                os.fsync(fh.fileno())
            # The graph goes first: a snapshot whose graph is newer than its state is caught by ntotal.
            os.replace(graph_tmp, self._graph_path)
            os.replace(state_tmp, self._snapshot_path)
            self._snapshot_seq = mem.last_seq

    def _snapshot_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.snapshot()
            except (OSError, sqlite3.Error, RuntimeError) as exc:
                log.warning("vector snapshot failed (will retry): %s", exc)

    def close(self) -> None:
        if self._closed:
            return
        self._stop.set()
        if self._snapshotter is not None:
            self._snapshotter.join(timeout=5)
        self.snapshot()
        with self._lock:
            self._db.close()
            self._closed = True

    # ---- writes -------------------------------------------------------------------------
    # Readers never wait in WAL mode; a writer can find the lock held (another process) past the timeout.
    @unavailable_when_locked("the chunk store")
    def replace_document(
        self, tenant_id: str, document_id: str, chunks: Sequence[IndexedChunk], vectors: np.ndarray
    ) -> None:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        if len(chunks) and vectors.shape[1] != self.dimension:
            raise ValueError(f"vectors have {vectors.shape[1]} dimensions, the index {self.dimension}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._delete_rows(document_id)
                for chunk, vector in zip(chunks, vectors, strict=True):
                    payload = dict(chunk.payload, text=chunk.text, tenant_id=tenant_id, document_id=document_id)
                    cur = self._db.execute(
                        "INSERT INTO chunks (chunk_id, tenant_id, document_id, payload, vector) VALUES (?, ?, ?, ?, ?)",
                        (chunk.id, tenant_id, document_id, json.dumps(payload, ensure_ascii=False), vector.tobytes()),
                    )
                    self._db.execute("INSERT INTO changes (op, row) VALUES ('add', ?)", (cur.lastrowid,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._apply_changes(self._mem)

    def _delete_rows(self, document_id: str) -> int:
        rows = [r for (r,) in self._db.execute("SELECT rowid FROM chunks WHERE document_id = ?", (document_id,))]
        if rows:
            self._db.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
            self._db.executemany("INSERT INTO changes (op, row) VALUES ('del', ?)", [(r,) for r in rows])
        return len(rows)

    @unavailable_when_locked("the chunk store")
    def delete_document(self, tenant_id: str, document_id: str) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                removed = self._delete_rows(document_id)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._apply_changes(self._mem)
            return removed

    # ---- reads --------------------------------------------------------------------------
    def _tenant_chunks(self, tenant_id: str) -> np.ndarray:
        mem = self._mem
        if mem.size == 0:
            return np.zeros(0, dtype=bool)
        return mem.mask(Term("tenant_id", (tenant_id,))) & mem.alive_mask()

    def _candidates(self, tenant_id: str, flt: FilterNode) -> np.ndarray:
        tenant = self._tenant_chunks(tenant_id)
        return tenant & self._mem.mask(flt) if tenant.size else tenant

    def searches_exactly(self, matches: int, k: int) -> bool:
        """Whether a filter matching `matches` chunks is answered by exact search rather than HNSW."""
        narrow = matches < self.hnsw_min_filter_share * self._mem.size
        return matches <= max(k, self.exact_search_max_candidates) or narrow

    def search_vector(self, tenant_id: str, vector: np.ndarray, flt: FilterNode, k: int) -> list[tuple[str, float]]:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        with self._lock:
            self._refresh()
            mem = self._mem
            mask = self._candidates(tenant_id, flt)
            matches = int(mask.sum())
            if matches == 0:
                return []
            k = min(k, matches)
            if self.searches_exactly(matches, k):
                positions = np.flatnonzero(mask)
                if matches < EXACT_GATHER_MAX_SHARE * mem.size:
                    scores = np.zeros(mem.size, dtype=np.float32)
                    scores[positions] = mem.vectors_view()[positions] @ query[0]
                else:
                    scores = mem.vectors_view() @ query[0]  # no row copy: cheaper when most rows match
                best = _top_k(scores, positions, k)
                sims = scores[best]
            else:
                selector = faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.ef_search, k))
                sims_2d, ids = mem.index.search(query, k, params=params)
                keep = ids[0] >= 0
                best, sims = ids[0][keep], sims_2d[0][keep]
            return [(mem.chunk_ids[p], float(min(1.0, max(0.0, (1.0 + s) / 2.0)))) for p, s in zip(best, sims)]

    def search_keyword(self, tenant_id: str, text: str, flt: FilterNode, k: int) -> list[tuple[str, float]]:
        query_terms = Counter(analyze(text))
        if not query_terms:
            return []
        with self._lock:
            self._refresh()
            mem = self._mem
            tenant = self._tenant_chunks(tenant_id)
            chunk_count = int(tenant.sum())
            if chunk_count == 0:
                return []
            mask = tenant & mem.mask(flt)
            doc_len = np.frombuffer(mem.doc_len, dtype=np.float32)
            avg_len = max(float(doc_len[tenant].sum(dtype=np.float64)) / chunk_count, 1e-9)
            scores = np.zeros(mem.size, dtype=np.float32)
            for term, query_count in query_terms.items():
                posting = mem.terms.get(term)
                if posting is None:
                    continue
                positions = np.frombuffer(posting[0], dtype=np.int32)
                df = int(tenant[positions].sum())
                wanted = mask[positions]
                if df == 0 or not wanted.any():
                    continue
                positions = positions[wanted]
                freqs = np.frombuffer(posting[1], dtype=np.float32)[wanted]
                idf = math.log(1.0 + (chunk_count - df + 0.5) / (df + 0.5))
                norm = BM25_K1 * (1.0 - BM25_B + BM25_B * doc_len[positions] / avg_len)
                scores[positions] += query_count * idf * freqs / (freqs + norm)
            candidates = np.flatnonzero(scores > 0)
            if candidates.size == 0:
                return []
            best = _top_k(scores, candidates, min(k, candidates.size))
            return [(mem.chunk_ids[p], float(scores[p])) for p in best]

    def get_payloads(self, tenant_id: str, chunk_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not chunk_ids:
            return {}
        marks = ",".join("?" * len(chunk_ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT chunk_id, payload FROM chunks WHERE tenant_id = ? AND chunk_id IN ({marks})",
                [tenant_id, *chunk_ids],
            ).fetchall()
        return {chunk_id: json.loads(payload) for chunk_id, payload in rows}

    def count(self, tenant_id: str, flt: FilterNode) -> int:
        with self._lock:
            self._refresh()
            return int(self._candidates(tenant_id, flt).sum())

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"chunks": self._mem.live_count, "positions": self._mem.size, "terms": len(self._mem.terms)}
