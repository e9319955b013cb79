"""The one DynamoDB table of the AWS backend: its layout, item keys, (de)serialising, and the
calls every port module makes on it (reads, queries, transactions, conditional updates).

The ports live beside this module: ``documents``, ``jobs``, ``keys`` (API keys) and ``outbox``
(held events); ``store.DynamoMetadataStore`` is all of them over one ``Table``. ``webhooks``
(endpoints and their delivery log) is a store of its own on the same table.

Single-table design (``pk``/``sk`` strings, on-demand billing). Items:

| item              | pk                 | sk                  | index attributes                         |
|-------------------|--------------------|---------------------|------------------------------------------|
| document          | ``TENANT#<t>``     | ``DOC#<id>``        | sha_key, status_key, source_key (+ id)   |
| external-id claim | ``TENANT#<t>``     | ``EXTID#<ext id>``  | (holds ``document_id``)                  |
| knowledge base    | ``TENANT#<t>``     | ``KB#<id>``         | status_key while deleting (knowledge_bases.py) |
| KB name claim     | ``TENANT#<t>``     | ``KBNAME#<name>``   | (holds ``kb_id``)                        |
| content claim     | ``TENANT#<t>``     | ``SHA256#<sha>``    | (holds ``document_id``)                  |
| job               | ``JOB#<id>``       | ``JOB``             | job_document_key, job_state_key (+ id)   |
| API key           | ``KEY#<hash>``     | ``KEY``             |                                          |
| key-id claim      | ``KEYID#<id>``     | ``KEY``             | (holds ``key_hash``)                     |
| tenant's key      | ``TENANT#<t>``     | ``APIKEY#<id>``     | (holds ``key_hash``)                     |
| key counter       | ``COUNTER``        | ``KEYS``            | (holds ``count``)                        |
| key usage, a day  | ``USAGE#<key id>`` | ``DAY#<yyyy-mm-dd>``| (counters, ``route:…`` counters, ``ips``)|
| audit entry       | ``AUDIT#<t>``      | ``<entry id>``      | (the entry, as JSON)                     |
| held event        | ``OUTBOX``         | ``<time>#<evt id>`` | (the envelope, as JSON)                  |
| idempotency record| ``IDEM#<scope>``   | ``KEY#<key>``       | (idempotency.py), ``delete_after``, the TTL |
| rate-limit counter| ``RATE#<key id>``  | ``W#<window start>``| (rate_limits.py), ``n``, ``delete_after``  |
| webhook endpoint  | ``TENANT#<t>``     | ``WEBHOOK#<id>``    | (webhooks.py)                            |
| webhook delivery  | ``DELIVERIES#<t>#<webhook id>`` | ``<delivery id>`` | ``delete_after``, the TTL  |
| WebSocket connection | ``WSCONN#<conn id>`` | ``CONN``   | (connections.py), ``delete_after``, the TTL |

Access patterns (all five indexes are KEYS_ONLY and range on ``id``, so their order is id
order, i.e. creation order; whole items are then read from the table with consistent reads,
which also filters out index entries that lag behind the table):

- document by tenant + id: GetItem ``TENANT#<t>`` / ``DOC#<id>``.
- document by (tenant, content_sha256): Query index ``by_sha`` (``SHA#<t>#<sha>``), first id.
- document by (tenant, external_id): GetItem of the claim item, then of the document: strongly
  consistent, and the claim (written with ``attribute_not_exists`` in the same transaction as the
  document) is what keeps an external id unique under races.
- one live document per (tenant, content_sha256) among those without an external id: the content
  claim, written with ``attribute_not_exists`` beside the document and deleted with it. Only
  ``enqueue`` and deletes move it (the service changes neither bytes nor external id otherwise).
- documents of a tenant by id, with a cursor and optional status/kb filters: Query
  ``pk = TENANT#<t> AND sk BETWEEN DOC#<cursor> AND DOC$`` (``$`` sorts right after ``#``),
  filters as a FilterExpression, pages read until ``limit`` + 1 matches are found.
- documents with a status, across tenants: Query index ``by_status`` (``STATUS#<status>``).
- documents from a source, across tenants: Query index ``by_source`` (``SOURCE#<source>``).
- job by id (claim, finish, release take no tenant): GetItem/UpdateItem ``JOB#<id>``.
- jobs of a document (latest job, delete with the document): Query index ``by_document``
  (``DOC#<t>#<doc>``), newest first.
- queued / processing jobs (claim the oldest, count, recover): Query the sparse index
  ``by_job_state`` (``JOBS#queued`` / ``JOBS#processing``; finished jobs drop out of it).
- API key by hash: GetItem ``KEY#<hash>``; key count: the counter item, incremented in the same
  transaction as the key. By id: the claim, then the key. A tenant's keys: Query ``TENANT#<t>``,
  ``sk BETWEEN APIKEY#<cursor> AND APIKEY$``, then BatchGet the keys.
- a key's usage: one UpdateItem (ADD) per key and day per flush; read by Query ``USAGE#<key id>``.
- a tenant's audit log: Query ``AUDIT#<t>`` newest first (ids are time-ordered); entries are only
  ever put (``attribute_not_exists``), never updated or deleted by the code.

The ``by_status`` and ``by_source`` partitions hold every document with that status or source:
fine for a knowledge base's write rates (an index partition takes ~1000 writes/s), to be sharded
(``STATUS#indexed#<n>``) if one ever holds the writes of a very large fleet.

Metadata dicts are stored as JSON strings: they round-trip exactly like SQLite's JSON column
(ints stay ints, floats stay floats, no Decimal), at the price of not being filterable inside
DynamoDB (nothing here filters on them). An item is at most 400 KB, metadata included.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from ragline.adapters.aws import clients
from ragline.errors import Conflict, DependencyUnavailable, RaglineError

DEFAULT_TABLE_NAME = "ragline-metadata"
# The table's TTL attribute (epoch seconds): DynamoDB deletes an item some time after it. Webhook
# deliveries (their retention), Idempotency-Key records (their 24 h) and rate-limit counters carry it; template.yaml's
# TimeToLiveSpecification names it.
TTL_ATTRIBUTE = "delete_after"

DOC_PREFIX = "DOC#"
KEY_COUNTER = {"pk": "COUNTER", "sk": "KEYS"}

BY_SHA = "by_sha"
BY_STATUS = "by_status"
BY_SOURCE = "by_source"
BY_DOCUMENT = "by_document"
BY_JOB_STATE = "by_job_state"
INDEX_KEYS = {
    BY_SHA: "sha_key",
    BY_STATUS: "status_key",
    BY_SOURCE: "source_key",
    BY_DOCUMENT: "job_document_key",
    BY_JOB_STATE: "job_state_key",
}

BATCH_GET_MAX = 100
BATCH_WRITE_MAX = 25
UNPROCESSED_RETRIES = 8

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def table_definitions(table_name: str = DEFAULT_TABLE_NAME) -> list[dict[str, Any]]:
    """CreateTable parameters for the store's table (the SAM template mirrors them)."""
    range_on_id = {"AttributeName": "id", "KeyType": "RANGE"}
    indexes = [
        {
            "IndexName": index_name,
            "KeySchema": [{"AttributeName": attribute, "KeyType": "HASH"}, range_on_id],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
        for index_name, attribute in INDEX_KEYS.items()
    ]
    key_attributes = ["pk", "sk", "id", *INDEX_KEYS.values()]
    return [
        {
            "TableName": table_name,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": name, "AttributeType": "S"} for name in key_attributes],
            "GlobalSecondaryIndexes": indexes,
            "BillingMode": "PAY_PER_REQUEST",
        }
    ]


def time_to_live() -> dict[str, Any]:
    """The table's TimeToLiveSpecification (UpdateTimeToLive; the SAM template mirrors it)."""
    return {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}


# ---- item keys shared by more than one port -------------------------------------------------------
def tenant_pk(tenant_id: str) -> str:
    return f"TENANT#{tenant_id}"


def document_key(tenant_id: str, document_id: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": DOC_PREFIX + document_id}


def jobs_of_document(tenant_id: str, document_id: str) -> str:
    """The ``by_document`` index value of a document's jobs."""
    return f"DOC#{tenant_id}#{document_id}"


# ---- (de)serialising ------------------------------------------------------------------------------
def serialize(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in values.items()}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _plain(_deserializer.deserialize(value)) for name, value in item.items()}


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; every number this store writes is an int."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---- expressions ----------------------------------------------------------------------------------
class Expression:
    """Collects ``#name`` / ``:value`` placeholders, so no attribute name clashes with a reserved word."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, attribute: str) -> str:
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = _serializer.serialize(value)
        return placeholder

    def update(
        self, sets: Mapping[str, Any], removes: Iterable[str] = (), adds: Mapping[str, int] | None = None
    ) -> str:
        clauses = []
        if sets:
            clauses.append("SET " + ", ".join(f"{self.name(k)} = {self.value(v)}" for k, v in sets.items()))
        if removes:
            clauses.append("REMOVE " + ", ".join(self.name(attribute) for attribute in removes))
        if adds:
            clauses.append("ADD " + ", ".join(f"{self.name(k)} {self.value(v)}" for k, v in adds.items()))
        return " ".join(clauses)

    def exists_with(self, required: Mapping[str, Any]) -> str:
        """A condition: the item exists and has these attribute values."""
        clauses = [f"attribute_exists({self.name('pk')})"]
        clauses += [f"{self.name(k)} = {self.value(v)}" for k, v in required.items()]
        return " AND ".join(clauses)

    def arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        if self.names:
            arguments["ExpressionAttributeNames"] = self.names
        if self.values:
            arguments["ExpressionAttributeValues"] = self.values
        return arguments


def split_nones(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Attributes to SET and attributes to REMOVE (absent is how None is stored)."""
    return {k: v for k, v in values.items() if v is not None}, [k for k, v in values.items() if v is None]


def cancellation_codes(exc: ClientError) -> list[str]:
    return [str(reason.get("Code", "None")) for reason in exc.response.get("CancellationReasons", [])]


class Table:
    """The table, and the calls the port modules make on it."""

    def __init__(
        self,
        name: str = DEFAULT_TABLE_NAME,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        self.name = name
        self._client = clients.ServiceClient("dynamodb", region=region, endpoint_url=endpoint_url, given=client)

    @property
    def db(self) -> Any:
        return self._client()

    def down(self) -> AbstractContextManager[None]:
        """Around every call: unreachable, 5xx or throttled after retries is DependencyUnavailable."""
        return clients.unavailable_when_down(f"DynamoDB table {self.name}")

    def ping(self) -> None:
        with self.down():
            try:
                self.db.get_item(TableName=self.name, Key=serialize(KEY_COUNTER), ProjectionExpression="pk")
            except ClientError as exc:
                if clients.error_code(exc) != "ResourceNotFoundException":
                    raise
                raise DependencyUnavailable(
                    f"DynamoDB table {self.name} does not exist", error="Dependency unavailable"
                ) from exc

    def get(self, key: Mapping[str, str]) -> dict[str, Any] | None:
        with self.down():
            answer = self.db.get_item(TableName=self.name, Key=serialize(key), ConsistentRead=True)
        item = answer.get("Item")
        return deserialize(item) if item else None

    def _until_processed(
        self, send: Callable[[dict[str, Any]], dict[str, Any]], pending: dict[str, Any], leftovers: str, what: str
    ) -> list[dict[str, Any]]:
        """Send a batch request, then its unprocessed leftovers, backing off while DynamoDB throttles."""
        answers = []
        for attempt in range(UNPROCESSED_RETRIES):
            with self.down():
                answer = send(pending)
            answers.append(answer)
            pending = answer.get(leftovers) or {}
            if not pending:
                return answers
            time.sleep(min(0.05 * 2**attempt, 1.0))  # throttled: back off before the leftovers
        raise DependencyUnavailable(f"DynamoDB table {self.name} kept refusing {what}", error="Dependency unavailable")

    def batch_get(self, keys: list[dict[str, str]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for start in range(0, len(keys), BATCH_GET_MAX):
            request = {
                self.name: {
                    "Keys": [serialize(k) for k in keys[start : start + BATCH_GET_MAX]],
                    "ConsistentRead": True,
                }
            }
            answers = self._until_processed(
                lambda pending: self.db.batch_get_item(RequestItems=pending), request, "UnprocessedKeys", "reads"
            )
            for answer in answers:
                items.extend(deserialize(item) for item in answer["Responses"].get(self.name, []))
        return items

    def query(self, **arguments: Any) -> Iterator[dict[str, Any]]:
        """Every item a Query returns, page after page."""
        arguments = {"TableName": self.name, **arguments}
        while True:
            with self.down():
                answer = self.db.query(**arguments)
            yield from (deserialize(item) for item in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                return
            arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def index_entries(
        self, index_name: str, value: str, *, newest_first: bool = False, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Keys (pk, sk, id) of the items an index holds under one value, in id order, read lazily."""
        expression = Expression()
        arguments: dict[str, Any] = {
            "IndexName": index_name,
            "KeyConditionExpression": f"{expression.name(INDEX_KEYS[index_name])} = {expression.value(value)}",
            "ScanIndexForward": not newest_first,
            **expression.arguments(),
        }
        if page_size is not None:
            arguments["Limit"] = page_size
        return self.query(**arguments)

    def index_count(self, index_name: str, value: str) -> int:
        expression = Expression()
        arguments: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": index_name,
            "KeyConditionExpression": f"{expression.name(INDEX_KEYS[index_name])} = {expression.value(value)}",
            "Select": "COUNT",
            **expression.arguments(),
        }
        count = 0
        while True:
            with self.down():
                answer = self.db.query(**arguments)
            count += int(answer.get("Count", 0))
            if "LastEvaluatedKey" not in answer:
                return count
            arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def transact(
        self,
        actions: list[dict[str, Any]],
        conflict_message: str,
        *,
        failed_at: Mapping[int, RaglineError] | None = None,
    ) -> None:
        """Write all or nothing; a failed condition is a Conflict (or, for an action at a position
        of ``failed_at``, that error), any other cancellation a 503."""
        with self.down():
            try:
                self.db.transact_write_items(TransactItems=actions)
            except ClientError as exc:
                if clients.error_code(exc) != "TransactionCanceledException":
                    raise
                codes = cancellation_codes(exc)
                for position, error in (failed_at or {}).items():
                    if position < len(codes) and codes[position] == "ConditionalCheckFailed":
                        raise error from exc
                if "ConditionalCheckFailed" in codes:
                    raise Conflict(conflict_message) from exc
                raise DependencyUnavailable(
                    f"DynamoDB cancelled the transaction: {codes}", error="Dependency unavailable"
                ) from exc

    def put_action(self, item: Mapping[str, Any], expression: Expression, condition: str) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.name,
                "Item": serialize(item),
                "ConditionExpression": condition,
                **expression.arguments(),
            }
        }

    def put_new_action(self, item: Mapping[str, Any]) -> dict[str, Any]:
        expression = Expression()
        return self.put_action(item, expression, f"attribute_not_exists({expression.name('pk')})")

    def delete_action(self, key: Mapping[str, str]) -> dict[str, Any]:
        return {"Delete": {"TableName": self.name, "Key": serialize(key)}}

    def batch_delete(self, keys: list[dict[str, str]]) -> None:
        for start in range(0, len(keys), BATCH_WRITE_MAX):
            requests = [{"DeleteRequest": {"Key": serialize(key)}} for key in keys[start : start + BATCH_WRITE_MAX]]
            self._until_processed(
                lambda pending: self.db.batch_write_item(RequestItems=pending),
                {self.name: requests},
                "UnprocessedItems",
                "deletes",
            )

    def write_if(self, operation: str, **arguments: Any) -> dict[str, Any] | None:
        """One conditional write (``put_item``, ``update_item`` or ``delete_item``, its
        ConditionExpression among ``arguments``): DynamoDB's answer, or None when the condition failed."""
        with self.down():
            try:
                answer: dict[str, Any] = getattr(self.db, operation)(TableName=self.name, **arguments)
            except ClientError as exc:
                if clients.error_code(exc) != "ConditionalCheckFailedException":
                    raise
                return None
        return answer

    def update_existing(
        self,
        key: Mapping[str, str],
        values: Mapping[str, Any],
        *,
        required: Mapping[str, Any] | None = None,
        adds: Mapping[str, int] | None = None,
    ) -> dict[str, Any] | None:
        """Update an item only if it exists (and has the ``required`` values): the new item, or None.

        A None value removes the attribute. Without the condition UpdateItem would create the item.
        """
        expression = Expression()
        sets, removes = split_nones(values)
        answer = self.write_if(
            "update_item",
            Key=serialize(key),
            UpdateExpression=expression.update(sets, removes, adds),
            ConditionExpression=expression.exists_with(required or {}),
            ReturnValues="ALL_NEW",
            **expression.arguments(),
        )
        return None if answer is None else deserialize(answer["Attributes"])


class TableAdapter:
    """Base of the adapters over the one table: each is built from the table's name (a region, an
    endpoint or a ready client for the emulator and the tests) and keeps its ``Table``."""

    def __init__(
        self,
        table_name: str = DEFAULT_TABLE_NAME,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        self.table = Table(table_name, region=region, endpoint_url=endpoint_url, client=client)
