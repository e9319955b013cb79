"""What the insight features cost and give, in process on the local backend (SQLite):

1. recording: a whole chat (extractive answer) with recording and without, interleaved in the same
   run over the same questions (the answer cache off in both, so every chat retrieves and answers);
   and ``InsightService.record`` alone;
2. the answer cache: a hit (same normalised question, nothing changed) against a miss;
3. ``GET /v1/analytics/popular`` over 100k recorded queries (5,000 distinct questions, Zipf-like,
   spread over 30 days, 200 documents): the service call in process, and the route over HTTP.

    python -m ragline_bench.insight [--chats 300] [--queries 100000] [--out path.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ragline_bench.common import RaglineServer, bench_settings, create_api_key, ingest_now, latency_summary

TOPICS = [
    "invoices are due within 30 days of the invoice date and late payments accrue a fee",
    "api keys must be rotated every 90 days and production access requires two-factor authentication",
    "tomatoes need at least six hours of direct sunlight and deep watering twice a week",
    "refunds go back to the original payment method within ten business days",
    "the support desk answers tickets within one business day on weekdays",
    "backups are taken every night and kept for thirty five days in another region",
]
QUESTIONS = [
    "When are invoices due?",
    "How often must API keys be rotated?",
    "How much sun do tomatoes need?",
    "How long do refunds take?",
    "When does support answer tickets?",
    "How long are backups kept?",
    "What fee applies to late payments?",
    "What does production access require?",
]


def chats(rounds: int) -> dict[str, Any]:
    from ragline.chat.service import ChatService
    from ragline.container import Container
    from ragline.insight.models import QueryRecord
    from ragline.models import ChatRequest

    with tempfile.TemporaryDirectory() as tmp:
        container = Container(bench_settings(Path(tmp), anthropic_api_key=None))
        for n, text in enumerate(TOPICS * 3):
            ingest_now(container, "bench", f"{text}. Section {n}.".encode(), filename=f"doc{n}.txt")
        base = container.chat

        def service(insight: Any, cache: Any) -> ChatService:
            return ChatService(
                base.search,
                base.answerer,
                base.events,
                base.bounds,
                default_limit=base.default_limit,
                answer_floor=base.answer_floor,
                insight=insight,
                cache=cache,
            )

        from ragline.insight.service import AnswerCache

        variants = {
            "without recording": service(None, None),
            "with recording": service(container.insight, None),
        }
        for chat in variants.values():  # warm up: the model's shapes, the query-vector cache, SQLite files
            for question in QUESTIONS * 3:
                chat.answer("bench", ChatRequest(query=question))
        seconds: dict[str, list[float]] = {kind: [] for kind in variants}
        for n in range(rounds):
            request = ChatRequest(query=QUESTIONS[n % len(QUESTIONS)])
            for kind, chat in variants.items():  # interleaved: drift hits both alike
                started = time.perf_counter()
                chat.answer("bench", request)
                seconds[kind].append(time.perf_counter() - started)
        results: dict[str, Any] = {kind: latency_summary(values) for kind, values in seconds.items()}
        results["added_p50_ms"] = round(results["with recording"]["p50_ms"] - results["without recording"]["p50_ms"], 3)

        # InsightService.record alone (the record and its counters, one SQLite transaction).
        record_seconds = []
        for n in range(rounds):
            record = QueryRecord(
                query_id=f"qry_bench{n:08d}",
                tenant_id="bench-record",
                question=QUESTIONS[n % len(QUESTIONS)],
                question_key=QUESTIONS[n % len(QUESTIONS)].lower(),
                answer="an answer [1]",
                sources=[{"document_id": f"doc_{n % 5}", "page": 1, "score": 0.8, "title": "T"} for _ in range(5)],
                model="extractive",
                confidence=0.6,
                answered=True,
                query_time_ms=30.0,
                timestamp=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            )
            started = time.perf_counter()
            container.insight.record(record)
            record_seconds.append(time.perf_counter() - started)
        results["record_alone"] = latency_summary(record_seconds)

        # The answer cache: a hit against a miss (recording on in both, as served).
        cached = service(container.insight, AnswerCache(1024))
        hit_seconds, miss_seconds = [], []
        for n in range(rounds):
            miss = ChatRequest(query=f"{QUESTIONS[n % len(QUESTIONS)]} (variant {n})")
            started = time.perf_counter()
            first = cached.answer("bench", miss)
            miss_seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            again = cached.answer("bench", miss)
            hit_seconds.append(time.perf_counter() - started)
            if first.cached or not again.cached:
                raise SystemExit("the cache did not behave: first answer cached or the second not")
        results["cache"] = {"miss": latency_summary(miss_seconds), "hit": latency_summary(hit_seconds)}
        container.close()
    return results


def _fill(store: Any, queries: int, seed: int = 7) -> None:
    from ragline.insight.models import QueryRecord, SourceRef
    from ragline.insight.text import normalise_question

    rng = random.Random(seed)
    distinct = [f"question number {n} about topic {n % 97}?" for n in range(5000)]
    weights = [1.0 / (rank + 1) for rank in range(len(distinct))]  # Zipf-like: a few asked very often
    chosen = rng.choices(distinct, weights=weights, k=queries)
    now = datetime.now(UTC)
    for n, question in enumerate(chosen):
        at = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        documents = rng.sample(range(200), 3)
        store.add_query(
            QueryRecord(
                query_id=f"qry_{n:012d}",
                tenant_id="bench",
                question=question,
                question_key=normalise_question(question),
                answer="answer [1]",
                sources=[SourceRef(document_id=f"doc_{d}", page=1, score=0.5, title=f"Doc {d}") for d in documents],
                model="extractive",
                confidence=0.5,
                answered=True,
                query_time_ms=rng.uniform(5, 200),
                timestamp=at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            ),
            delete_after=int(time.time()) + 90 * 86400,
        )


def popular(queries: int, calls: int = 50) -> dict[str, Any]:
    import httpx

    from ragline.adapters.local.sqlite_history import SqliteHistoryStore
    from ragline.insight.service import InsightService

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        store = SqliteHistoryStore(data_dir / "history.db")
        started = time.perf_counter()
        _fill(store, queries)
        fill_seconds = time.perf_counter() - started
        insight = InsightService(store)
        results: dict[str, Any] = {"queries": queries, "fill_seconds": round(fill_seconds, 1)}
        for period in (7, 30, 90):
            insight.popular("bench", period_days=period, limit=10)  # warm: the page cache
            seconds = []
            for _ in range(calls):
                t0 = time.perf_counter()
                insight.popular("bench", period_days=period, limit=10)
                seconds.append(time.perf_counter() - t0)
            results[f"in_process_period_{period}"] = latency_summary(seconds)
        key = create_api_key(data_dir, "bench")
        with (
            RaglineServer(data_dir, Path(tmp) / "server.log", env={"RAGLINE_LOG_LEVEL": "WARNING"}) as server,
            httpx.Client(base_url=server.url, headers={"x-api-key": key}, trust_env=False, timeout=30) as client,
        ):
            answer = client.get("/v1/analytics/popular", params={"period_days": 30, "limit": 10})
            if answer.status_code != 200 or not answer.json()["top_questions"]:
                raise SystemExit(f"popular: {answer.status_code} {answer.text[:200]}")
            seconds = []
            for _ in range(calls):
                t0 = time.perf_counter()
                client.get("/v1/analytics/popular", params={"period_days": 30, "limit": 10})
                seconds.append(time.perf_counter() - t0)
            results["http_period_30"] = latency_summary(seconds)
            results["top_question"] = answer.json()["top_questions"][0]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=300, help="chats of each kind")
    parser.add_argument("--queries", type=int, default=100_000, help="recorded queries for the popular benchmark")
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args(argv)
    results = {"chat": chats(args.chats), "popular": popular(args.queries)}
    results["targets"] = {
        "recording added p50 <= 2 ms": results["chat"]["added_p50_ms"] <= 2.0,
        "cache hit p50 <= 10 ms": results["chat"]["cache"]["hit"]["p50_ms"] <= 10.0,
        "popular (30 days, in process) p50 <= 50 ms": results["popular"]["in_process_period_30"]["p50_ms"] <= 50.0,
        "popular (30 days, HTTP) p50 <= 50 ms": results["popular"]["http_period_30"]["p50_ms"] <= 50.0,
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
