"""The insight features' pure parts, table-style, and the service's settings over a SQLite store."""

from __future__ import annotations

import pytest

from ragline.adapters.local.sqlite_history import SqliteHistoryStore
from ragline.chat.service import sources_used
from ragline.insight.models import QueryRecord
from ragline.insight.service import AnswerCache, InsightService, processing_time_ms, since_day
from ragline.insight.text import (
    bucket_upper_ms,
    cache_key,
    latency_bucket,
    normalise_question,
    percentile_from_buckets,
)
from ragline.models import Document, Source


@pytest.mark.parametrize(
    ("question", "normalised"),
    [
        ("What is X?", "what is x"),
        ("  what   is\tX  ", "what is x"),
        ("WHAT IS X!!!", "what is x"),
        ("what's the fee (in %)?", "what s the fee in"),
        ("Ünïcödé CASE", "ünïcödé case"),
        ("Straße", "strasse"),  # casefold, not lower
        ("ｗｈａｔ", "what"),  # NFKC: full-width letters
        ("snake_case-words", "snake case words"),
        ("2% per month", "2 per month"),
        ("?!", ""),
    ],
)
def test_normalise_question(question: str, normalised: str) -> None:
    assert normalise_question(question) == normalised


BASE = ("t1", "what is x", {"kb_id": "default"}, {"limit": 5, "model": "m"}, 3)


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({}, True),
        ({2: {"kb_id": "default"}}, True),  # an equal dict
        ({0: "t2"}, False),  # another tenant
        ({1: "what is y"}, False),
        ({2: {"kb_id": "other"}}, False),
        ({2: {}}, False),
        ({3: {"limit": 6, "model": "m"}}, False),
        ({3: {"limit": 5, "model": "n"}}, False),
        ({4: 4}, False),  # the corpus changed
    ],
)
def test_cache_key_changes_with_every_part_of_its_scope(change: dict, same: bool) -> None:
    parts = list(BASE)
    for position, value in change.items():
        parts[position] = value
    assert (cache_key(*parts) == cache_key(*BASE)) is same


@pytest.mark.parametrize(
    ("ms", "bucket"), [(0.0, 0), (1.0, 0), (1.01, 1), (1.25, 1), (1.26, 2), (100.0, 21), (10**12, 80)]
)
def test_latency_bucket(ms: float, bucket: int) -> None:
    assert latency_bucket(ms) == bucket
    if bucket < 80:
        assert ms <= bucket_upper_ms(bucket) + 1e-9


@pytest.mark.parametrize(
    ("buckets", "fraction", "expected"),
    [
        ({}, 0.5, None),
        ({0: 1}, 0.5, 1.0),
        ({5: 50, 10: 50}, 0.5, bucket_upper_ms(5)),
        ({5: 50, 10: 51}, 0.5, bucket_upper_ms(10)),
        ({5: 94, 10: 6}, 0.95, bucket_upper_ms(10)),
        ({5: 95, 10: 5}, 0.95, bucket_upper_ms(5)),
    ],
)
def test_percentile_from_buckets(buckets: dict, fraction: float, expected: float | None) -> None:
    assert percentile_from_buckets(buckets, fraction) == expected


def test_a_bucketed_percentile_is_at_most_a_quarter_above_the_true_one() -> None:
    for ms in (1.5, 3.3, 47.0, 812.0, 15_000.0):
        upper = bucket_upper_ms(latency_bucket(ms))
        assert ms <= upper <= ms * 1.25 + 0.01


def source(n: int, filename: str | None, title: str | None = None) -> Source:
    return Source(id=f"c{n}", score=1.0, document_id=f"d{n}", title=title, filename=filename, page=None, text="t")


@pytest.mark.parametrize(
    ("sources", "names"),
    [
        ([], []),
        ([source(1, "a.pdf"), source(2, "b.pdf"), source(3, "a.pdf")], ["a.pdf", "b.pdf"]),
        ([source(1, None, "Policy"), source(2, None, None)], ["Policy"]),
    ],
)
def test_sources_used(sources: list[Source], names: list[str]) -> None:
    assert sources_used(sources) == names


@pytest.mark.parametrize(
    ("created", "indexed", "ms"),
    [
        ("2026-01-01T00:00:00.000Z", None, None),
        ("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.250Z", 1250.0),
        ("2026-01-01T23:59:59.900Z", "2026-01-02T00:00:00.100Z", 200.0),
    ],
)
def test_processing_time(created: str, indexed: str | None, ms: float | None) -> None:
    doc = Document(
        id="d", tenant_id="t", content_type="text/plain", content_sha256="x", blob_key="k", chunk_size=1,
        chunk_overlap=0, created_at=created, indexed_at=indexed,
    )  # fmt: skip
    assert processing_time_ms(doc) == ms


@pytest.mark.parametrize(("period", "day"), [(1, "2026-03-01"), (2, "2026-02-28"), (30, "2026-01-31")])
def test_since_day(period: int, day: str) -> None:
    assert since_day(period, 1772366400.0) == day  # 2026-03-01T12:00:00Z


def test_the_cache_drops_the_least_recently_used() -> None:
    cache = AnswerCache(2)
    cache.put("a", {"n": 1})
    cache.put("b", {"n": 2})
    assert cache.get("a") == {"n": 1}  # a is now the most recent
    cache.put("c", {"n": 3})
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ({"n": 1}, None, {"n": 3})


def _record(query_id: str) -> QueryRecord:
    return QueryRecord(
        query_id=query_id, tenant_id="t1", question="Q?", question_key="q", answer="the answer [1]", model="m",
        confidence=0.5, answered=True, query_time_ms=3.0, timestamp="2026-03-01T12:00:00.000Z",
    )  # fmt: skip


@pytest.mark.parametrize("store_answers", [True, False])
def test_answers_are_kept_only_when_the_setting_says_so(tmp_path, store_answers: bool) -> None:
    insight = InsightService(
        SqliteHistoryStore(tmp_path / "history.db"), store_answers=store_answers, clock=lambda: 1772366400.0
    )
    insight.record(_record("qry_1"))
    detail = insight.query("t1", "qry_1").detail()
    assert ("answer" in detail) is store_answers
    assert detail["question"] == "Q?" and detail["query_time_ms"] == 3.0  # metrics either way
    item = insight.history("t1", limit=10, offset=0, include_answer=True)["queries"][0]
    assert item["answer"] == ("the answer [1]" if store_answers else None)


def test_retention_hides_then_prunes_old_records(tmp_path) -> None:
    now = [1772366400.0]
    store = SqliteHistoryStore(tmp_path / "history.db", retention_days=1)
    insight = InsightService(store, retention_days=1, clock=lambda: now[0])
    insight.record(_record("qry_1"))
    assert insight.history("t1", limit=10, offset=0, include_answer=False)["total"] == 1
    now[0] += 86_400 + 1
    assert insight.history("t1", limit=10, offset=0, include_answer=False)["total"] == 0
    store.prune(int(now[0]))
    with store._connection() as db:  # noqa: SLF001 - what is left on disk
        assert db.execute("SELECT COUNT(*) FROM queries").fetchone()[0] == 0
        # A day's counters stay while the period can still reach that day, and go the day after.
        assert db.execute("SELECT COUNT(*) FROM question_days").fetchone()[0] == 1
        store.prune(int(now[0]) + 86_400)
        assert db.execute("SELECT COUNT(*) FROM question_days").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM question_texts").fetchone()[0] == 0


def test_a_deleted_question_leaves_no_text_behind(tmp_path) -> None:
    store = SqliteHistoryStore(tmp_path / "history.db")
    insight = InsightService(store, clock=lambda: 1772366400.0)
    insight.record(_record("qry_1"))
    insight.delete("t1", "qry_1")
    with store._connection() as db:  # noqa: SLF001 - what is left on disk
        assert db.execute("SELECT COUNT(*) FROM question_texts").fetchone()[0] == 0
