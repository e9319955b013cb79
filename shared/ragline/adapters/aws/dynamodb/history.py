"""The query history, its analytics counters and the corpus versions (the HistoryStore port of the
AWS backend), on the Table. DynamoDB has no GROUP BY: every counter analytics reads is kept up to
date on write, in the same transaction as the record, and read back by key (no scans).

| item                    | pk                     | sk                | attributes                              |
|-------------------------|------------------------|-------------------|-----------------------------------------|
| query record            | ``HIST#<t>``           | ``<query id>``    | ``doc`` (JSON), ``delete_after`` (TTL)  |
| a day's counters        | ``HSTAT#<t>``          | ``DAY#<day>``     | questions, unanswered, cached, rating_sum, rating_count, ``lat:<bucket>``; TTL |
| a question on a day     | ``HQ#<t>#<day>``       | ``<question hash>``| ``question``, ``count``; TTL           |
| a document on a day     | ``HD#<t>#<day>``       | ``<document id>`` | ``title``, ``count``; TTL                |
| a document's references | ``TENANT#<t>``         | ``DOCREF#<id>``   | ``count``, ``last_referenced_at``        |
| corpus version          | ``TENANT#<t>``         | ``CORPUS``        | ``version``                              |

Query ids are time-ordered, so the history is a Query of ``HIST#<t>`` newest first; ``offset``
skips items of that Query (cost grows with the offset; the history is read a page at a time).
Popular questions and documents read one partition per day of the period.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ragline.adapters.aws.dynamodb.table import TTL_ATTRIBUTE, Expression, TableAdapter, serialize, tenant_pk
from ragline.insight.models import DayStats, QueryRecord
from ragline.insight.text import latency_bucket, question_hash

TRANSACT_MAX = 100
LATENCY_PREFIX = "lat:"
DAY_PREFIX = "DAY#"


def history_pk(tenant_id: str) -> str:
    return f"HIST#{tenant_id}"


def stats_pk(tenant_id: str) -> str:
    return f"HSTAT#{tenant_id}"


def questions_pk(tenant_id: str, day: str) -> str:
    return f"HQ#{tenant_id}#{day}"


def documents_pk(tenant_id: str, day: str) -> str:
    return f"HD#{tenant_id}#{day}"


def _days(since_day: str, today: str) -> list[str]:
    first, last = datetime.fromisoformat(since_day).date(), datetime.fromisoformat(today).date()
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


class DynamoHistoryStore(TableAdapter):
    def __init__(self, table_name: str, *, retention_days: int = 90, client: Any = None) -> None:
        super().__init__(table_name, client=client)
        self.retention_days = retention_days

    # ---- writes -----------------------------------------------------------------------------------
    def _update(self, key: dict[str, str], adds: dict[str, int], sets: dict[str, Any] | None = None) -> dict[str, Any]:
        expression = Expression()
        clauses = []
        if sets:
            clauses.append("SET " + ", ".join(f"{expression.name(k)} = {expression.value(v)}" for k, v in sets.items()))
        clauses.append("ADD " + ", ".join(f"{expression.name(k)} {expression.value(v)}" for k, v in adds.items()))
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": serialize(key),
                "UpdateExpression": " ".join(clauses),
                **expression.arguments(),
            }
        }

    def _counters_expire(self, day: str) -> int:
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        return int((start + timedelta(days=self.retention_days + 1)).timestamp())

    def add_query(self, record: QueryRecord, *, delete_after: int) -> None:
        t, day = record.tenant_id, record.day
        expires = {TTL_ATTRIBUTE: self._counters_expire(day)}
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table.name,
                    "Item": serialize(
                        {
                            "pk": history_pk(t),
                            "sk": record.query_id,
                            "doc": record.model_dump_json(),
                            TTL_ATTRIBUTE: delete_after,
                        }
                    ),
                }
            },
            self._update(
                {"pk": stats_pk(t), "sk": DAY_PREFIX + day},
                {
                    "questions": 1,
                    "unanswered": int(not record.answered),
                    "cached": int(record.cached),
                    LATENCY_PREFIX + str(latency_bucket(record.query_time_ms)): 1,
                },
                expires,
            ),
            self._update(
                {"pk": questions_pk(t, day), "sk": question_hash(record.question_key)},
                {"count": 1},
                {"question": record.question_key, **expires},
            ),
        ]
        for document_id, title in record.cited_documents().items():
            actions.append(
                self._update(
                    {"pk": documents_pk(t, day), "sk": document_id},
                    {"count": 1},
                    {**({"title": title} if title else {}), **expires},
                )
            )
            actions.append(
                self._update(
                    {"pk": tenant_pk(t), "sk": "DOCREF#" + document_id},
                    {"count": 1},
                    {"last_referenced_at": record.timestamp},
                )
            )
        # One round trip for the record and its counters (several past 100 actions: > 49 documents cited).
        for start in range(0, len(actions), TRANSACT_MAX):
            self.table.transact(actions[start : start + TRANSACT_MAX], f"query {record.query_id} exists already")

    # ---- history ----------------------------------------------------------------------------------
    @staticmethod
    def _live(item: dict[str, Any] | None, now: int) -> QueryRecord | None:
        # TTL deletes an item up to days after it expired: an expired one is treated as gone.
        if item is None or int(item.get(TTL_ATTRIBUTE, now)) < now:
            return None
        return QueryRecord.model_validate_json(item["doc"])

    def get_query(self, tenant_id: str, query_id: str, *, now: int) -> QueryRecord | None:
        return self._live(self.table.get({"pk": history_pk(tenant_id), "sk": query_id}), now)

    def list_queries(self, tenant_id: str, *, limit: int, offset: int, now: int) -> tuple[list[QueryRecord], int]:
        expression = Expression()
        arguments = {
            "KeyConditionExpression": f"{expression.name('pk')} = {expression.value(history_pk(tenant_id))}",
            "FilterExpression": f"{expression.name(TTL_ATTRIBUTE)} >= {expression.value(now)}",
            "ScanIndexForward": False,
            "ConsistentRead": True,
            **expression.arguments(),
        }
        total = 0
        with self.table.down():
            count_arguments: dict[str, Any] = {"TableName": self.table.name, "Select": "COUNT", **arguments}
            while True:
                answer = self.table.db.query(**count_arguments)
                total += int(answer.get("Count", 0))
                if "LastEvaluatedKey" not in answer:
                    break
                count_arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        records: list[QueryRecord] = []
        if offset < total:
            for position, item in enumerate(self.table.query(**arguments)):
                if position < offset:
                    continue
                records.append(QueryRecord.model_validate_json(item["doc"]))
                if len(records) == limit:
                    break
        return records, total

    def delete_query(self, tenant_id: str, query_id: str) -> bool:
        with self.table.down():
            answer = self.table.db.delete_item(
                TableName=self.table.name,
                Key=serialize({"pk": history_pk(tenant_id), "sk": query_id}),
                ReturnValues="ALL_OLD",
            )
        old = answer.get("Attributes")
        if not old:
            return False
        record = QueryRecord.model_validate_json(old["doc"]["S"])
        # The deleted question must not live on among the popular ones.
        self.table.transact(
            [
                self._update(
                    {"pk": questions_pk(tenant_id, record.day), "sk": question_hash(record.question_key)}, {"count": -1}
                )
            ],
            "unreachable",
        )
        return True

    def rate_query(
        self, tenant_id: str, query_id: str, rating: int, comment: str | None, *, now: int
    ) -> QueryRecord | None:
        key = {"pk": history_pk(tenant_id), "sk": query_id}
        record = self._live(self.table.get(key), now)
        if record is None:
            return None
        previous = record.rating
        rated = record.model_copy(update={"rating": rating, "comment": comment})
        expression = Expression()
        condition = f"attribute_exists({expression.name('pk')}) AND {expression.name('doc')} = {expression.value(record.model_dump_json())}"
        update = self._update(
            {"pk": stats_pk(tenant_id), "sk": DAY_PREFIX + record.day},
            {"rating_sum": rating - (previous or 0), "rating_count": 0 if previous is not None else 1},
        )
        # The record and its day's average change together; a concurrent rating makes this one a 409.
        self.table.transact(
            [
                {
                    "Update": {
                        "TableName": self.table.name,
                        "Key": serialize(key),
                        "UpdateExpression": f"SET {expression.name('doc')} = {expression.value(rated.model_dump_json())}",
                        "ConditionExpression": condition,
                        **expression.arguments(),
                    }
                },
                update,
            ],
            f"query {query_id} was rated concurrently; try again",
        )
        return rated

    # ---- analytics --------------------------------------------------------------------------------
    def day_stats(self, tenant_id: str, since_day: str) -> list[DayStats]:
        expression = Expression()
        days = []
        for item in self.table.query(
            KeyConditionExpression=f"{expression.name('pk')} = {expression.value(stats_pk(tenant_id))} AND "
            f"{expression.name('sk')} BETWEEN {expression.value(DAY_PREFIX + since_day)} AND {expression.value('DAY$')}",
            ConsistentRead=True,
            **expression.arguments(),
        ):
            days.append(
                DayStats(
                    day=str(item["sk"]).removeprefix(DAY_PREFIX),
                    questions=int(item.get("questions", 0)),
                    unanswered=int(item.get("unanswered", 0)),
                    cached=int(item.get("cached", 0)),
                    rating_sum=int(item.get("rating_sum", 0)),
                    rating_count=int(item.get("rating_count", 0)),
                    latency_buckets={
                        int(name.removeprefix(LATENCY_PREFIX)): int(v)
                        for name, v in item.items()
                        if name.startswith(LATENCY_PREFIX) and int(v)
                    },
                )
            )
        return days

    def _partition(self, pk: str) -> list[dict[str, Any]]:
        expression = Expression()
        return list(
            self.table.query(
                KeyConditionExpression=f"{expression.name('pk')} = {expression.value(pk)}", **expression.arguments()
            )
        )

    @staticmethod
    def _today() -> str:
        return datetime.now(UTC).date().isoformat()

    def question_counts(self, tenant_id: str, since_day: str, limit: int) -> list[tuple[str, int]]:
        totals: dict[str, list[Any]] = {}
        for day in _days(since_day, self._today()):
            for item in self._partition(questions_pk(tenant_id, day)):
                entry = totals.setdefault(item["sk"], [item.get("question", ""), 0])
                entry[1] += int(item.get("count", 0))
        ranked = sorted((v for v in totals.values() if v[1] > 0), key=lambda v: (-v[1], v[0]))
        return [(q, n) for q, n in ranked[:limit]]

    def document_counts(self, tenant_id: str, since_day: str, limit: int) -> list[tuple[str, str | None, int]]:
        totals: dict[str, list[Any]] = {}
        for day in _days(since_day, self._today()):
            for item in self._partition(documents_pk(tenant_id, day)):
                entry = totals.setdefault(item["sk"], [item["sk"], item.get("title"), 0])
                entry[1] = entry[1] or item.get("title")
                entry[2] += int(item.get("count", 0))
        ranked = sorted(totals.values(), key=lambda v: (-v[2], v[0]))
        return [(d, title, n) for d, title, n in ranked[:limit]]

    def document_references(self, tenant_id: str, document_id: str) -> tuple[int, str | None]:
        item = self.table.get({"pk": tenant_pk(tenant_id), "sk": "DOCREF#" + document_id})
        return (int(item.get("count", 0)), item.get("last_referenced_at")) if item else (0, None)

    # ---- corpus version ---------------------------------------------------------------------------
    def corpus_version(self, tenant_id: str, kb_id: str | None = None) -> int:
        item = self.table.get({"pk": tenant_pk(tenant_id), "sk": corpus_sk(kb_id)})
        return int(item.get("version", 0)) if item else 0

    def bump_corpus(self, tenant_id: str, kb_id: str) -> None:
        self.table.transact(
            [
                self._update({"pk": tenant_pk(tenant_id), "sk": corpus_sk(scope)}, {"version": 1})
                for scope in (None, kb_id)
            ],
            "unreachable",
        )


def corpus_sk(kb_id: str | None) -> str:
    """The tenant's corpus version item, or one knowledge base's."""
    return "CORPUS" if kb_id is None else "CORPUS#" + kb_id
