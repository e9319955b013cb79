"""Documents, jobs, API keys and held events in one DynamoDB table: the AWS twin of
SqliteMetadataStore, and the EventOutbox of the AWS backend.

Single-table design (``pk``/``sk`` strings, on-demand billing). Items:

| item              | pk                 | sk                  | index attributes                         |
|-------------------|--------------------|---------------------|------------------------------------------|
| document          | ``TENANT#<t>``     | ``DOC#<id>``        | sha_key, status_key, source_key (+ id)   |
| external-id claim | ``TENANT#<t>``     | ``EXTID#<ext id>``  | (holds ``document_id``)                  |
| job               | ``JOB#<id>``       | ``JOB``             | job_document_key, job_state_key (+ id)   |
| API key           | ``KEY#<hash>``     | ``KEY``             |                                          |
| key-id claim      | ``KEYID#<id>``     | ``KEY``             | (holds ``key_hash``)                     |
| key counter       | ``COUNTER``        | ``KEYS``            | (holds ``count``)                        |
| held event        | ``OUTBOX``         | ``<time>#<evt id>`` | (the envelope, as JSON)                  |

Access patterns (all five indexes are KEYS_ONLY and range on ``id``, so their order is id
order, i.e. creation order; whole items are then read from the table with consistent reads,
which also filters out index entries that lag behind the table):

- document by tenant + id: GetItem ``TENANT#<t>`` / ``DOC#<id>``.
- document by (tenant, content_sha256): Query index ``by_sha`` (``SHA#<t>#<sha>``), first id.
- document by (tenant, external_id): GetItem of the claim item, then of the document: strongly
  consistent, and the claim (written with ``attribute_not_exists`` in the same transaction as the
  document) is what keeps an external id unique under races.
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
  transaction as the key.

The ``by_status`` and ``by_source`` partitions hold every document with that status or source:
fine for a knowledge base's write rates (an index partition takes ~1000 writes/s), to be sharded
(``STATUS#indexed#<n>``) if one ever holds the writes of a very large fleet.

Metadata dicts are stored as JSON strings: they round-trip exactly like SQLite's JSON column
(ints stay ints, floats stay floats, no Decimal), at the price of not being filterable inside
DynamoDB (nothing here filters on them). An item is at most 400 KB, metadata included.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from decimal import Decimal
from functools import cache
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import TypeAdapter

from ragline.adapters.aws import clients
from ragline.errors import Conflict, DependencyUnavailable, NotFound
from ragline.models import ApiKey, Document, DocumentStatus, Job, JobStatus, Scope, utcnow

DEFAULT_TABLE_NAME = "ragline-metadata"

DOC_PREFIX = "DOC#"
DOC_RANGE_END = "DOC$"  # the first string after every "DOC#..." key
JOB_SK = "JOB"
KEY_SK = "KEY"
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
# A job is in the by_job_state index only while it is waiting or running.
ACTIVE_JOB_STATES = (JobStatus.QUEUED, JobStatus.PROCESSING)

BATCH_GET_MAX = 100
BATCH_WRITE_MAX = 25
UNPROCESSED_RETRIES = 8
FILTERED_PAGE_SIZE = 200  # items read per round trip while a status/kb filter skips some

DOCUMENT_FIELDS = frozenset(Document.model_fields)
JOB_FIELDS = frozenset(Job.model_fields)
KEY_FIELDS = frozenset(ApiKey.model_fields)
IMMUTABLE_DOCUMENT_FIELDS = frozenset({"id", "tenant_id"})  # they are the item's key

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


# ---- item keys ------------------------------------------------------------------------------------
def tenant_pk(tenant_id: str) -> str:
    return f"TENANT#{tenant_id}"


def document_key(tenant_id: str, document_id: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": DOC_PREFIX + document_id}


def external_id_key(tenant_id: str, external_id: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": f"EXTID#{external_id}"}


OUTBOX_PK = "OUTBOX"


def outbox_key(event: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {"pk": {"S": OUTBOX_PK}, "sk": {"S": f"{event['created_at']}#{event['id']}"}}


def job_key(job_id: str) -> dict[str, str]:
    return {"pk": f"JOB#{job_id}", "sk": JOB_SK}


def api_key_key(key_hash: str) -> dict[str, str]:
    return {"pk": f"KEY#{key_hash}", "sk": KEY_SK}


def key_id_key(key_id: str) -> dict[str, str]:
    return {"pk": f"KEYID#{key_id}", "sk": KEY_SK}


def jobs_of_document(tenant_id: str, document_id: str) -> str:
    return f"DOC#{tenant_id}#{document_id}"


def job_state(status: JobStatus) -> str:
    return f"JOBS#{status.value}"


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


def document_index_attributes(tenant_id: str, fields: Mapping[str, Any]) -> dict[str, str]:
    """The index attributes that follow from these (JSON-mode) document fields."""
    attributes: dict[str, str] = {}
    if "content_sha256" in fields:
        attributes["sha_key"] = f"SHA#{tenant_id}#{fields['content_sha256']}"
    if "status" in fields:
        attributes["status_key"] = f"STATUS#{fields['status']}"
    if "source" in fields:
        attributes["source_key"] = f"SOURCE#{fields['source']}"
    return attributes


def document_item(document: Document) -> dict[str, Any]:
    fields = document.model_dump(mode="json", exclude_none=True)
    fields["metadata"] = json.dumps(fields["metadata"], ensure_ascii=False)
    return {
        **fields,
        **document_key(document.tenant_id, document.id),
        **document_index_attributes(document.tenant_id, fields),
    }


def document_from_item(item: Mapping[str, Any]) -> Document:
    fields = {name: value for name, value in item.items() if name in DOCUMENT_FIELDS}
    fields["metadata"] = json.loads(fields["metadata"])
    return Document.model_validate(fields)


def job_item(job: Job) -> dict[str, Any]:
    fields = job.model_dump(mode="json", exclude_none=True)
    item = {**fields, **job_key(job.id), "job_document_key": jobs_of_document(job.tenant_id, job.document_id)}
    if job.status in ACTIVE_JOB_STATES:
        item["job_state_key"] = job_state(job.status)
    return item


def job_from_item(item: Mapping[str, Any]) -> Job:
    return Job.model_validate({name: value for name, value in item.items() if name in JOB_FIELDS})


def api_key_item(key: ApiKey) -> dict[str, Any]:
    fields = key.model_dump(mode="json", exclude_none=True)
    fields["scopes"] = sorted(scope.value for scope in key.scopes)
    return {**fields, **api_key_key(key.key_hash)}


def api_key_from_item(item: Mapping[str, Any]) -> ApiKey:
    fields = {name: value for name, value in item.items() if name in KEY_FIELDS}
    fields["scopes"] = frozenset(Scope(scope) for scope in fields["scopes"])
    return ApiKey.model_validate(fields)


@cache
def _field_adapter(name: str) -> TypeAdapter[Any]:
    return TypeAdapter(Document.model_fields[name].annotation)


def document_field_value(name: str, value: Any) -> Any:
    """A document field's value as stored: validated against the model, then in JSON mode."""
    adapter = _field_adapter(name)
    stored = adapter.dump_python(adapter.validate_python(value), mode="json")
    return json.dumps(stored, ensure_ascii=False) if name == "metadata" else stored


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


class DynamoMetadataStore:
    """MetadataStore and the persistence side of JobQueue over one DynamoDB table.

    Deployed, SQS carries the jobs; the job items still hold status, attempts and errors, and a
    claim is what makes a redelivered message harmless. ``claim()`` without an id takes the
    oldest queued job (as the local worker does), through the sparse ``by_job_state`` index.
    """

    def __init__(
        self,
        table_name: str = DEFAULT_TABLE_NAME,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        self.table_name = table_name
        self._client = clients.ServiceClient("dynamodb", region=region, endpoint_url=endpoint_url, given=client)

    @property
    def _db(self) -> Any:
        return self._client()

    def _down(self) -> AbstractContextManager[None]:
        """Around every call: unreachable, 5xx or throttled after retries is DependencyUnavailable."""
        return clients.unavailable_when_down(f"DynamoDB table {self.table_name}")

    def ping(self) -> None:
        with self._down():
            try:
                self._db.get_item(TableName=self.table_name, Key=serialize(KEY_COUNTER), ProjectionExpression="pk")
            except ClientError as exc:
                if clients.error_code(exc) != "ResourceNotFoundException":
                    raise
                raise DependencyUnavailable(
                    f"DynamoDB table {self.table_name} does not exist", error="Dependency unavailable"
                ) from exc

    # ---- low-level helpers ------------------------------------------------------------------------
    def _get(self, key: Mapping[str, str]) -> dict[str, Any] | None:
        with self._down():
            answer = self._db.get_item(TableName=self.table_name, Key=serialize(key), ConsistentRead=True)
        item = answer.get("Item")
        return deserialize(item) if item else None

    def _until_processed(
        self, send: Callable[[dict[str, Any]], dict[str, Any]], pending: dict[str, Any], leftovers: str, what: str
    ) -> list[dict[str, Any]]:
        """Send a batch request, then its unprocessed leftovers, backing off while DynamoDB throttles."""
        answers = []
        for attempt in range(UNPROCESSED_RETRIES):
            with self._down():
                answer = send(pending)
            answers.append(answer)
            pending = answer.get(leftovers) or {}
            if not pending:
                return answers
            time.sleep(min(0.05 * 2**attempt, 1.0))  # throttled: back off before the leftovers
        raise DependencyUnavailable(
            f"DynamoDB table {self.table_name} kept refusing {what}", error="Dependency unavailable"
        )

    def _batch_get(self, keys: list[dict[str, str]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for start in range(0, len(keys), BATCH_GET_MAX):
            request = {
                self.table_name: {
                    "Keys": [serialize(k) for k in keys[start : start + BATCH_GET_MAX]],
                    "ConsistentRead": True,
                }
            }
            answers = self._until_processed(
                lambda pending: self._db.batch_get_item(RequestItems=pending), request, "UnprocessedKeys", "reads"
            )
            for answer in answers:
                items.extend(deserialize(item) for item in answer["Responses"].get(self.table_name, []))
        return items

    def _query(self, **arguments: Any) -> Iterator[dict[str, Any]]:
        """Every item a Query returns, page after page."""
        arguments = {"TableName": self.table_name, **arguments}
        while True:
            with self._down():
                answer = self._db.query(**arguments)
            yield from (deserialize(item) for item in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                return
            arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def _index_entries(
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
        return self._query(**arguments)

    def _index_count(self, index_name: str, value: str) -> int:
        expression = Expression()
        arguments: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index_name,
            "KeyConditionExpression": f"{expression.name(INDEX_KEYS[index_name])} = {expression.value(value)}",
            "Select": "COUNT",
            **expression.arguments(),
        }
        count = 0
        while True:
            with self._down():
                answer = self._db.query(**arguments)
            count += int(answer.get("Count", 0))
            if "LastEvaluatedKey" not in answer:
                return count
            arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def _indexed_documents(self, index_name: str, value: str, still_matches: Mapping[str, str]) -> list[Document]:
        """Documents an index lists under a value, read from the table, skipping stale index entries."""
        keys = [{"pk": entry["pk"], "sk": entry["sk"]} for entry in self._index_entries(index_name, value)]
        items = self._batch_get(keys)
        current = [item for item in items if all(item.get(k) == v for k, v in still_matches.items())]
        return sorted((document_from_item(item) for item in current), key=lambda document: document.id)

    def _transact(self, actions: list[dict[str, Any]], conflict_message: str) -> None:
        """Write all or nothing; a failed condition is a Conflict, any other cancellation a 503."""
        with self._down():
            try:
                self._db.transact_write_items(TransactItems=actions)
            except ClientError as exc:
                if clients.error_code(exc) != "TransactionCanceledException":
                    raise
                codes = cancellation_codes(exc)
                if "ConditionalCheckFailed" in codes:
                    raise Conflict(conflict_message) from exc
                raise DependencyUnavailable(
                    f"DynamoDB cancelled the transaction: {codes}", error="Dependency unavailable"
                ) from exc

    def _put_action(self, item: Mapping[str, Any], expression: Expression, condition: str) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.table_name,
                "Item": serialize(item),
                "ConditionExpression": condition,
                **expression.arguments(),
            }
        }

    def _put_new_action(self, item: Mapping[str, Any]) -> dict[str, Any]:
        expression = Expression()
        return self._put_action(item, expression, f"attribute_not_exists({expression.name('pk')})")

    def _delete_action(self, key: Mapping[str, str]) -> dict[str, Any]:
        return {"Delete": {"TableName": self.table_name, "Key": serialize(key)}}

    def _batch_delete(self, keys: list[dict[str, str]]) -> None:
        for start in range(0, len(keys), BATCH_WRITE_MAX):
            requests = [{"DeleteRequest": {"Key": serialize(key)}} for key in keys[start : start + BATCH_WRITE_MAX]]
            self._until_processed(
                lambda pending: self._db.batch_write_item(RequestItems=pending),
                {self.table_name: requests},
                "UnprocessedItems",
                "deletes",
            )

    def _update_existing(
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
        with self._down():
            try:
                answer = self._db.update_item(
                    TableName=self.table_name,
                    Key=serialize(key),
                    UpdateExpression=expression.update(sets, removes, adds),
                    ConditionExpression=expression.exists_with(required or {}),
                    ReturnValues="ALL_NEW",
                    **expression.arguments(),
                )
            except ClientError as exc:
                if clients.error_code(exc) != "ConditionalCheckFailedException":
                    raise
                return None
        return deserialize(answer["Attributes"])

    # ---- documents --------------------------------------------------------------------------------
    def _external_id_moves(
        self, tenant_id: str, document_id: str, old: str | None, new: str | None
    ) -> list[dict[str, Any]]:
        """Transaction actions moving a document's external-id claim from ``old`` to ``new``."""
        if old == new:
            return []
        actions = []
        if old is not None:
            actions.append(self._release_claim_action(tenant_id, old, document_id))
        if new is not None:
            claim = {**external_id_key(tenant_id, new), "tenant_id": tenant_id, "document_id": document_id}
            actions.append(self._put_new_action(claim))
        return actions

    def _release_claim_action(self, tenant_id: str, external_id: str, document_id: str) -> dict[str, Any]:
        """Delete an external-id claim if it is this document's (or already gone); never another's."""
        expression = Expression()
        condition = (
            f"attribute_not_exists({expression.name('pk')}) OR "
            f"{expression.name('document_id')} = {expression.value(document_id)}"
        )
        delete = {"TableName": self.table_name, "Key": serialize(external_id_key(tenant_id, external_id))}
        return {"Delete": {**delete, "ConditionExpression": condition, **expression.arguments()}}

    @staticmethod
    def _external_id_unchanged(expression: Expression, old: str | None) -> str:
        """A condition: the document exists and still has the external id we read."""
        exists = f"attribute_exists({expression.name('pk')})"
        if old is None:
            return f"{exists} AND attribute_not_exists({expression.name('external_id')})"
        return f"{exists} AND {expression.name('external_id')} = {expression.value(old)}"

    def _document_writes(self, document: Document, current: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        """Transaction actions writing a document (new, or a new version of ``current``) and its claim."""
        if current is None:
            put = self._put_new_action(document_item(document))
            old_external_id = None
        else:
            expression = Expression()
            old_external_id = current.get("external_id")
            put = self._put_action(
                document_item(document), expression, self._external_id_unchanged(expression, old_external_id)
            )
        moves = self._external_id_moves(document.tenant_id, document.id, old_external_id, document.external_id)
        return [put, *moves]

    def create_document(self, document: Document) -> None:
        self._transact(
            self._document_writes(document, None),
            f"document {document.id} conflicts with an existing one (same id, or external id "
            f"{document.external_id!r} already used)",
        )

    def get_document(self, tenant_id: str, document_id: str) -> Document | None:
        item = self._get(document_key(tenant_id, document_id))
        return document_from_item(item) if item else None

    def find_document(
        self, tenant_id: str, *, content_sha256: str | None = None, external_id: str | None = None
    ) -> Document | None:
        if (content_sha256 is None) == (external_id is None):
            raise ValueError("look up by exactly one of content_sha256 or external_id")
        if external_id is not None:
            claim = self._get(external_id_key(tenant_id, external_id))
            return self.get_document(tenant_id, claim["document_id"]) if claim else None
        for entry in self._index_entries(BY_SHA, f"SHA#{tenant_id}#{content_sha256}", page_size=10):
            item = self._get({"pk": entry["pk"], "sk": entry["sk"]})
            if item is not None and item.get("content_sha256") == content_sha256:  # the index may lag
                return document_from_item(item)
        return None

    def update_document(self, tenant_id: str, document_id: str, **fields: Any) -> Document:
        unknown = set(fields) - DOCUMENT_FIELDS
        if unknown:
            raise ValueError(f"unknown document fields {sorted(unknown)}")
        if fields.keys() & IMMUTABLE_DOCUMENT_FIELDS:
            raise ValueError(f"{sorted(IMMUTABLE_DOCUMENT_FIELDS)} identify a document and cannot be updated")
        values = {name: document_field_value(name, value) for name, value in fields.items()}
        values["updated_at"] = utcnow()
        values.update(document_index_attributes(tenant_id, values))
        key = document_key(tenant_id, document_id)
        if "external_id" in values:
            item = self._update_with_external_id(tenant_id, document_id, values)
        else:
            item = self._update_existing(key, values)
        if item is None:
            raise NotFound(f"document {document_id} does not exist")
        return document_from_item(item)

    def _update_with_external_id(
        self, tenant_id: str, document_id: str, values: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """An update that may move the external-id claim: one transaction, then a consistent read."""
        key = document_key(tenant_id, document_id)
        current = self._get(key)
        if current is None:
            return None
        old, new = current.get("external_id"), values["external_id"]
        if old == new:
            return self._update_existing(key, values)
        expression = Expression()
        sets, removes = split_nones(values)
        update = {
            "Update": {
                "TableName": self.table_name,
                "Key": serialize(key),
                "UpdateExpression": expression.update(sets, removes),
                "ConditionExpression": self._external_id_unchanged(expression, old),
                **expression.arguments(),
            }
        }
        moves = self._external_id_moves(tenant_id, document_id, old, new)
        self._transact([update, *moves], f"external id {new!r} is already used, or document {document_id} changed")
        return self._get(key)

    def list_documents(
        self,
        tenant_id: str,
        *,
        status: DocumentStatus | None = None,
        kb_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Document], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        expression = Expression()
        lower = DOC_PREFIX + (cursor or "")
        arguments: dict[str, Any] = {
            "KeyConditionExpression": (
                f"{expression.name('pk')} = {expression.value(tenant_pk(tenant_id))} AND "
                f"{expression.name('sk')} BETWEEN {expression.value(lower)} AND {expression.value(DOC_RANGE_END)}"
            ),
            "ConsistentRead": True,
        }
        filters = {"status": DocumentStatus(status).value} if status is not None else {}
        if kb_id is not None:
            filters["kb_id"] = kb_id
        if filters:
            arguments["FilterExpression"] = " AND ".join(
                f"{expression.name(k)} = {expression.value(v)}" for k, v in filters.items()
            )
        # One more than asked tells whether a next page exists; +1 again for the cursor's own item.
        arguments["Limit"] = max(limit + 2, FILTERED_PAGE_SIZE) if filters else limit + 2
        arguments.update(expression.arguments())
        found: list[dict[str, Any]] = []
        for item in self._query(**arguments):
            if item["id"] == cursor:  # BETWEEN includes its lower bound
                continue
            found.append(item)
            if len(found) > limit:
                break
        documents = [document_from_item(item) for item in found[:limit]]
        next_cursor = documents[-1].id if len(found) > limit else None
        return documents, next_cursor

    def delete_document(self, tenant_id: str, document_id: str) -> None:
        """Delete a document, its external-id claim and its jobs (missing ones are no error)."""
        job_keys = [
            {"pk": entry["pk"], "sk": entry["sk"]}
            for entry in self._index_entries(BY_DOCUMENT, jobs_of_document(tenant_id, document_id))
        ]
        self._batch_delete(job_keys)
        key = document_key(tenant_id, document_id)
        current = self._get(key)
        if current is None:
            return
        actions = [self._delete_action(key)]
        actions += self._external_id_moves(tenant_id, document_id, current.get("external_id"), None)
        self._transact(actions, f"the external-id claim of document {document_id} belongs to another document")

    def documents_with_status(self, status: DocumentStatus) -> list[Document]:
        """Across tenants, in id order (index ``by_status``)."""
        value = DocumentStatus(status).value
        return self._indexed_documents(BY_STATUS, f"STATUS#{value}", {"status": value})

    def documents_from_source(self, source: str) -> list[Document]:
        """Across tenants, in id order (index ``by_source``)."""
        return self._indexed_documents(BY_SOURCE, f"SOURCE#{source}", {"source": source})

    # ---- jobs (the persistence side of the job queue) -------------------------------------------------
    def create_job(self, job: Job) -> None:
        self._transact([self._put_new_action(job_item(job))], f"job {job.id} already exists")

    def get_job(self, tenant_id: str, job_id: str) -> Job | None:
        item = self._get(job_key(job_id))
        if item is None or item.get("tenant_id") != tenant_id:
            return None
        return job_from_item(item)

    def latest_job_id(self, tenant_id: str, document_id: str) -> str | None:
        for entry in self._index_entries(
            BY_DOCUMENT, jobs_of_document(tenant_id, document_id), newest_first=True, page_size=1
        ):
            return str(entry["id"])
        return None

    def enqueue(self, job: Job, document: Document | None = None) -> None:
        """Write the document (new, or its new version) and its job in one transaction."""
        actions = []
        if document is not None:
            current = self._get(document_key(document.tenant_id, document.id))
            actions += self._document_writes(document, current)
        actions.append(self._put_new_action(job_item(job)))
        self._transact(actions, f"job {job.id} or its document conflicts with an existing one (or changed meanwhile)")

    def claim(self, job_id: str | None = None, *, stale_before: str | None = None) -> Job | None:
        """Take that job (or the oldest queued one): queued → processing, attempts + 1, atomically.

        None when the job is not queued (already claimed, finished, unknown): a second delivery of
        the same SQS message claims nothing, unless the claim it finds is older than ``stale_before``.
        """
        if job_id is not None:
            return self._claim_one(job_id, stale_before)
        for entry in self._index_entries(BY_JOB_STATE, job_state(JobStatus.QUEUED)):
            claimed = self._claim_one(str(entry["id"]))  # None: another worker was faster
            if claimed is not None:
                return claimed
        return None

    def _claim_one(self, job_id: str, stale_before: str | None = None) -> Job | None:
        values = {
            "status": JobStatus.PROCESSING.value,
            "updated_at": utcnow(),
            "job_state_key": job_state(JobStatus.PROCESSING),
        }
        if stale_before is None:
            item = self._update_existing(
                job_key(job_id), values, required={"status": JobStatus.QUEUED.value}, adds={"attempts": 1}
            )
            return job_from_item(item) if item else None
        expression = Expression()
        status, updated = expression.name("status"), expression.name("updated_at")
        update = expression.update(values, adds={"attempts": 1})
        # Timestamps are fixed-width ISO strings, so string order is time order.
        condition = (
            f"attribute_exists({expression.name('pk')}) AND ({status} = {expression.value(JobStatus.QUEUED.value)}"
            f" OR ({status} = {expression.value(JobStatus.PROCESSING.value)}"
            f" AND {updated} < {expression.value(stale_before)}))"
        )
        with self._down():
            try:
                answer = self._db.update_item(
                    TableName=self.table_name,
                    Key=serialize(job_key(job_id)),
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ReturnValues="ALL_NEW",
                    **expression.arguments(),
                )
            except ClientError as exc:
                if clients.error_code(exc) != "ConditionalCheckFailedException":
                    raise
                return None
        return job_from_item(deserialize(answer["Attributes"]))

    def finish(self, job_id: str, *, error: str | None = None) -> None:
        status = JobStatus.FAILED if error else JobStatus.SUCCEEDED
        values = {"status": status.value, "error": error, "updated_at": utcnow(), "job_state_key": None}
        self._update_existing(job_key(job_id), values)  # an unknown job is no error, as in SQLite

    def release(self, job_id: str, *, error: str) -> None:
        values = {
            "status": JobStatus.QUEUED.value,
            "error": error,
            "updated_at": utcnow(),
            "job_state_key": job_state(JobStatus.QUEUED),
        }
        self._update_existing(job_key(job_id), values)

    def recover_interrupted(self, max_attempts: int) -> list[Job]:
        """After a crash: re-queue jobs left processing; return (as they were) the ones out of attempts.

        Only for one worker recovering its own crash (the local worker, an emulated-AWS poller):
        it cannot tell a crashed worker's job from a running one's. Deployed, nothing calls it;
        SQS redelivers the message of a crashed invocation once its visibility timeout ends.
        """
        exhausted: list[Job] = []
        for entry in self._index_entries(BY_JOB_STATE, job_state(JobStatus.PROCESSING)):
            item = self._get(job_key(str(entry["id"])))
            if item is None or item.get("status") != JobStatus.PROCESSING.value:
                continue  # the index lags behind the table
            job = job_from_item(item)
            required = {"status": JobStatus.PROCESSING.value, "attempts": job.attempts}
            if job.attempts >= max_attempts:
                values = {
                    "status": JobStatus.FAILED.value,
                    "error": "interrupted too many times",
                    "updated_at": utcnow(),
                    "job_state_key": None,
                }
                if self._update_existing(job_key(job.id), values, required=required) is not None:
                    exhausted.append(job)
            else:
                values = {
                    "status": JobStatus.QUEUED.value,
                    "updated_at": utcnow(),
                    "job_state_key": job_state(JobStatus.QUEUED),
                }
                self._update_existing(job_key(job.id), values, required=required)
        return exhausted

    def queued_count(self) -> int:
        return self._index_count(BY_JOB_STATE, job_state(JobStatus.QUEUED))

    # ---- API keys ---------------------------------------------------------------------------------
    def create_key(self, key: ApiKey) -> None:
        """The key, a claim on its id (ids are unique too) and the key counter, in one transaction."""
        expression = Expression()
        count_it = {
            "Update": {
                "TableName": self.table_name,
                "Key": serialize(KEY_COUNTER),
                "UpdateExpression": expression.update({}, adds={"count": 1}),
                **expression.arguments(),
            }
        }
        actions = [
            self._put_new_action(api_key_item(key)),
            self._put_new_action({**key_id_key(key.id), "key_hash": key.key_hash, "tenant_id": key.tenant_id}),
            count_it,
        ]
        self._transact(actions, f"API key {key.id} (or one with the same hash) already exists")

    def find_key(self, key_hash: str) -> ApiKey | None:
        item = self._get(api_key_key(key_hash))
        return api_key_from_item(item) if item else None

    def count_keys(self) -> int:
        item = self._get(KEY_COUNTER)
        return int(item["count"]) if item else 0

    # ---- held events (the EventOutbox port) ---------------------------------------------------------
    # Events SNS refused, until the events-redelivery function publishes them: pk OUTBOX, sk
    # <created_at>#<event id> (a Query reads them oldest first), the envelope as a JSON string. The
    # partition only fills during an SNS outage; one takes ~1000 writes/s, far above its event rate.
    def hold_event(self, event: dict[str, Any]) -> None:
        item = {**outbox_key(event), "event": {"S": json.dumps(event, ensure_ascii=False, separators=(",", ":"))}}
        with self._down():
            self._db.put_item(TableName=self.table_name, Item=item)  # the same event twice is one item

    def held_events(self, limit: int) -> list[dict[str, Any]]:
        with self._down():
            answer = self._db.query(
                TableName=self.table_name,
                KeyConditionExpression="pk = :outbox",
                ExpressionAttributeValues={":outbox": {"S": OUTBOX_PK}},
                ConsistentRead=True,
                Limit=max(1, limit),
            )
        return [json.loads(item["event"]["S"]) for item in answer.get("Items", [])]

    def release_event(self, event: dict[str, Any]) -> None:
        with self._down():
            self._db.delete_item(TableName=self.table_name, Key=outbox_key(event))
