"""HistoryStore contract: SQLite and DynamoDB (under moto) record, page, rate, delete and count the same."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from ragline.insight.models import QueryRecord, SourceRef
from ragline.insight.text import latency_bucket, normalise_question

NOW = int(time.time())
TODAY = datetime.now(UTC).date().isoformat()
YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
LATER = NOW + 3600


def record(n: int, question: str = "What is X?", *, tenant: str = "t1", day: str = TODAY, **fields) -> QueryRecord:
    values = {
        "query_id": f"qry_{n:06d}",
        "tenant_id": tenant,
        "key_id": "key_1",
        "question": question,
        "question_key": normalise_question(question),
        "answer": f"answer {n} [1]",
        "sources": [
            SourceRef(document_id="doc_a", page=1, score=0.9, title="A"),
            SourceRef(document_id="doc_a", page=2, score=0.8, title="A"),
        ],
        "model": "extractive",
        "confidence": 0.7,
        "answered": True,
        "query_time_ms": 12.0,
        "timestamp": f"{day}T10:00:{n % 60:02d}.000Z",
    }
    return QueryRecord(**{**values, **fields})


def test_records_read_back_newest_first_with_a_total(history_store) -> None:
    for n in range(5):
        history_store.add_query(record(n), delete_after=LATER)
    history_store.add_query(record(9, tenant="t2"), delete_after=LATER)
    page, total = history_store.list_queries("t1", limit=2, offset=0, now=NOW)
    assert total == 5
    assert [r.query_id for r in page] == ["qry_000004", "qry_000003"]
    page, total = history_store.list_queries("t1", limit=10, offset=3, now=NOW)
    assert [r.query_id for r in page] == ["qry_000001", "qry_000000"]
    assert history_store.list_queries("t1", limit=10, offset=5, now=NOW) == ([], 5)
    assert history_store.get_query("t1", "qry_000002", now=NOW) == record(2)
    assert history_store.get_query("t2", "qry_000002", now=NOW) is None  # another tenant's id: absent


def test_expired_records_are_gone_for_every_read(history_store) -> None:
    history_store.add_query(record(1), delete_after=NOW - 1)
    history_store.add_query(record(2), delete_after=LATER)
    assert history_store.get_query("t1", "qry_000001", now=NOW) is None
    page, total = history_store.list_queries("t1", limit=10, offset=0, now=NOW)
    assert ([r.query_id for r in page], total) == (["qry_000002"], 1)
    assert history_store.rate_query("t1", "qry_000001", 5, None, now=NOW) is None


def test_ratings_replace_each_other_in_the_day_average(history_store) -> None:
    history_store.add_query(record(1), delete_after=LATER)
    history_store.add_query(record(2), delete_after=LATER)
    assert history_store.rate_query("t1", "qry_000001", 2, "meh", now=NOW).rating == 2
    history_store.rate_query("t1", "qry_000001", 4, None, now=NOW)
    history_store.rate_query("t1", "qry_000002", 5, None, now=NOW)
    assert history_store.get_query("t1", "qry_000001", now=NOW).rating == 4
    (day,) = history_store.day_stats("t1", TODAY)
    assert (day.rating_sum, day.rating_count) == (9, 2)
    assert history_store.rate_query("t2", "qry_000001", 5, None, now=NOW) is None
    assert history_store.rate_query("t1", "qry_nope", 5, None, now=NOW) is None


def test_day_counters_count_questions_unanswered_cached_and_latency(history_store) -> None:
    history_store.add_query(record(1, query_time_ms=3.0), delete_after=LATER)
    history_store.add_query(record(2, answered=False, sources=[], query_time_ms=2.9), delete_after=LATER)
    history_store.add_query(record(3, cached=True, query_time_ms=900.0), delete_after=LATER)
    history_store.add_query(record(4, day=YESTERDAY), delete_after=LATER)
    yesterday, today = history_store.day_stats("t1", YESTERDAY)
    assert (yesterday.day, yesterday.questions) == (YESTERDAY, 1)
    assert (today.day, today.questions, today.unanswered, today.cached) == (TODAY, 3, 1, 1)
    assert today.latency_buckets == {latency_bucket(3.0): 2, latency_bucket(900.0): 1}
    assert [d.day for d in history_store.day_stats("t1", TODAY)] == [TODAY]
    assert history_store.day_stats("t2", YESTERDAY) == []


def test_popular_questions_group_normalised_text_and_deletes_uncount(history_store) -> None:
    for n, q in enumerate(["What is X?", "what is   x", "WHAT IS X!", "Who is Y?", "who is y"]):
        history_store.add_query(record(n, q), delete_after=LATER)
    history_store.add_query(record(7, "Why Z", day=YESTERDAY), delete_after=LATER)
    history_store.add_query(record(8, "what is x", tenant="t2"), delete_after=LATER)
    assert history_store.question_counts("t1", YESTERDAY, 10) == [("what is x", 3), ("who is y", 2), ("why z", 1)]
    assert history_store.question_counts("t1", TODAY, 1) == [("what is x", 3)]
    assert history_store.delete_query("t1", "qry_000003") is True
    assert history_store.delete_query("t1", "qry_000003") is False
    assert history_store.delete_query("t2", "qry_000004") is False  # another tenant's query
    assert history_store.question_counts("t1", TODAY, 10) == [("what is x", 3), ("who is y", 1)]
    history_store.delete_query("t1", "qry_000004")
    assert history_store.question_counts("t1", TODAY, 10) == [("what is x", 3)]


def test_cited_documents_count_once_per_answer(history_store) -> None:
    two = [
        SourceRef(document_id="doc_a", page=1, score=0.9, title="A"),
        SourceRef(document_id="doc_b", page=None, score=0.5),
    ]
    history_store.add_query(record(1), delete_after=LATER)  # doc_a twice: one reference
    history_store.add_query(record(2, sources=two, timestamp=f"{TODAY}T11:00:00.000Z"), delete_after=LATER)
    history_store.add_query(record(3, sources=[], answered=False), delete_after=LATER)
    assert history_store.document_counts("t1", TODAY, 10) == [("doc_a", "A", 2), ("doc_b", None, 1)]
    assert history_store.document_references("t1", "doc_a") == (2, f"{TODAY}T11:00:00.000Z")
    assert history_store.document_references("t1", "doc_b") == (1, f"{TODAY}T11:00:00.000Z")
    assert history_store.document_references("t2", "doc_a") == (0, None)


def test_corpus_versions_are_per_tenant_and_knowledge_base_and_only_grow(history_store) -> None:
    assert history_store.corpus_version("t1") == 0
    history_store.bump_corpus("t1", "default")
    history_store.bump_corpus("t1", "manuals")
    # The tenant's version moves with any base; a base's only with its own.
    assert history_store.corpus_version("t1") == 2
    assert history_store.corpus_version("t1", "default") == 1
    assert history_store.corpus_version("t1", "manuals") == 1
    assert history_store.corpus_version("t1", "other") == 0
    assert history_store.corpus_version("t2") == 0
    assert history_store.corpus_version("t2", "manuals") == 0


def test_popular_ties_are_ordered_by_text_even_at_the_limit(history_store) -> None:
    for n, q in enumerate(["zeta", "zeta", "beta", "alpha", "gamma"]):
        history_store.add_query(record(n, q), delete_after=LATER)
    assert history_store.question_counts("t1", TODAY, 2) == [("zeta", 2), ("alpha", 1)]
    assert history_store.question_counts("t1", TODAY, 3) == [("zeta", 2), ("alpha", 1), ("beta", 1)]
