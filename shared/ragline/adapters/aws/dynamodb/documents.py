"""Documents and their external-id claims (the MetadataStore port's documents), on the Table."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import TypeAdapter

from ragline.adapters.aws.dynamodb.table import (
    BY_DOCUMENT,
    BY_SHA,
    BY_SOURCE,
    BY_STATUS,
    DOC_PREFIX,
    Expression,
    Table,
    document_key,
    jobs_of_document,
    serialize,
    split_nones,
    tenant_pk,
)
from ragline.errors import NotFound
from ragline.models import Document, DocumentStatus, utcnow

CONTENT_CLAIM_PREFIX = "SHA256#"  # sk of a content claim: one live document per tenant and bytes
DOC_RANGE_END = "DOC$"  # the first string after every "DOC#..." key
FILTERED_PAGE_SIZE = 200  # items read per round trip while a status/kb filter skips some
DOCUMENT_FIELDS = frozenset(Document.model_fields)
IMMUTABLE_DOCUMENT_FIELDS = frozenset({"id", "tenant_id"})  # they are the item's key


def external_id_key(tenant_id: str, external_id: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": f"EXTID#{external_id}"}


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


@cache
def _field_adapter(name: str) -> TypeAdapter[Any]:
    return TypeAdapter(Document.model_fields[name].annotation)


def document_field_value(name: str, value: Any) -> Any:
    """A document field's value as stored: validated against the model, then in JSON mode."""
    adapter = _field_adapter(name)
    stored = adapter.dump_python(adapter.validate_python(value), mode="json")
    return json.dumps(stored, ensure_ascii=False) if name == "metadata" else stored


# ---- transaction actions (enqueue writes a document beside its job) ----------------------------
def content_claim_key(tenant_id: str, external_id: str | None, content_sha256: str) -> dict[str, str] | None:
    """The content claim a document holds, if any: the same rule as SQLite's unique index (a
    document under an external id may repeat another's bytes, so it claims none)."""
    if external_id is not None:
        return None
    return {"pk": tenant_pk(tenant_id), "sk": CONTENT_CLAIM_PREFIX + content_sha256}


def is_content_claim(action: Mapping[str, Any]) -> bool:
    sk = action.get("Put", {}).get("Item", {}).get("sk", {}).get("S", "")
    return str(sk).startswith(CONTENT_CLAIM_PREFIX)


def external_id_moves(
    table: Table, tenant_id: str, document_id: str, old: str | None, new: str | None
) -> list[dict[str, Any]]:
    """Transaction actions moving a document's external-id claim from ``old`` to ``new``."""
    return claim_moves(
        table,
        tenant_id,
        document_id,
        None if old is None else external_id_key(tenant_id, old),
        None if new is None else external_id_key(tenant_id, new),
    )


def claim_moves(
    table: Table, tenant_id: str, document_id: str, old: dict[str, str] | None, new: dict[str, str] | None
) -> list[dict[str, Any]]:
    """Transaction actions moving a document's claim item (external id or content) from ``old`` to ``new``."""
    if old == new:
        return []
    actions = []
    if old is not None:
        actions.append(_release_claim_action(table, old, document_id))
    if new is not None:
        actions.append(table.put_new_action({**new, "tenant_id": tenant_id, "document_id": document_id}))
    return actions


def _release_claim_action(table: Table, key: Mapping[str, str], document_id: str) -> dict[str, Any]:
    """Delete a claim item if it is this document's (or already gone); never another's."""
    expression = Expression()
    condition = (
        f"attribute_not_exists({expression.name('pk')}) OR "
        f"{expression.name('document_id')} = {expression.value(document_id)}"
    )
    delete = {"TableName": table.name, "Key": serialize(key)}
    return {"Delete": {**delete, "ConditionExpression": condition, **expression.arguments()}}


def external_id_unchanged(expression: Expression, old: str | None) -> str:
    """A condition: the document exists and still has the external id we read."""
    exists = f"attribute_exists({expression.name('pk')})"
    if old is None:
        return f"{exists} AND attribute_not_exists({expression.name('external_id')})"
    return f"{exists} AND {expression.name('external_id')} = {expression.value(old)}"


def document_writes(table: Table, document: Document, current: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Transaction actions writing a document (new, or a new version of ``current``) and its claims."""
    tenant_id = document.tenant_id
    if current is None:
        put = table.put_new_action(document_item(document))
        old_external_id, old_content = None, None
    else:
        expression = Expression()
        old_external_id = current.get("external_id")
        put = table.put_action(document_item(document), expression, external_id_unchanged(expression, old_external_id))
        old_content = content_claim_key(tenant_id, old_external_id, current["content_sha256"])
    new_content = content_claim_key(tenant_id, document.external_id, document.content_sha256)
    moves = external_id_moves(table, tenant_id, document.id, old_external_id, document.external_id)
    moves += claim_moves(table, tenant_id, document.id, old_content, new_content)
    return [put, *moves]


class DynamoDocuments:
    table: Table

    def get_document(self, tenant_id: str, document_id: str) -> Document | None:
        item = self.table.get(document_key(tenant_id, document_id))
        return document_from_item(item) if item else None

    def find_document(
        self, tenant_id: str, *, content_sha256: str | None = None, external_id: str | None = None
    ) -> Document | None:
        if (content_sha256 is None) == (external_id is None):
            raise ValueError("look up by exactly one of content_sha256 or external_id")
        if external_id is not None:
            claim = self.table.get(external_id_key(tenant_id, external_id))
            return self.get_document(tenant_id, claim["document_id"]) if claim else None
        for entry in self.table.index_entries(BY_SHA, f"SHA#{tenant_id}#{content_sha256}", page_size=10):
            item = self.table.get({"pk": entry["pk"], "sk": entry["sk"]})
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
            item = self.table.update_existing(key, values)
        if item is None:
            raise NotFound(f"document {document_id} does not exist")
        return document_from_item(item)

    def _update_with_external_id(
        self, tenant_id: str, document_id: str, values: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """An update that may move the external-id claim: one transaction, then a consistent read."""
        key = document_key(tenant_id, document_id)
        current = self.table.get(key)
        if current is None:
            return None
        old, new = current.get("external_id"), values["external_id"]
        if old == new:
            return self.table.update_existing(key, values)
        expression = Expression()
        sets, removes = split_nones(values)
        update = {
            "Update": {
                "TableName": self.table.name,
                "Key": serialize(key),
                "UpdateExpression": expression.update(sets, removes),
                "ConditionExpression": external_id_unchanged(expression, old),
                **expression.arguments(),
            }
        }
        moves = external_id_moves(self.table, tenant_id, document_id, old, new)
        self.table.transact([update, *moves], f"external id {new!r} is already used, or document {document_id} changed")
        return self.table.get(key)

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
        for item in self.table.query(**arguments):
            if item["id"] == cursor:  # BETWEEN includes its lower bound
                continue
            found.append(item)
            if len(found) > limit:
                break
        documents = [document_from_item(item) for item in found[:limit]]
        next_cursor = documents[-1].id if len(found) > limit else None
        return documents, next_cursor

    def delete_document(self, tenant_id: str, document_id: str) -> None:
        """Delete a document, its claims and its jobs (missing ones are no error)."""
        job_keys = [
            {"pk": entry["pk"], "sk": entry["sk"]}
            for entry in self.table.index_entries(BY_DOCUMENT, jobs_of_document(tenant_id, document_id))
        ]
        self.table.batch_delete(job_keys)
        key = document_key(tenant_id, document_id)
        current = self.table.get(key)
        if current is None:
            return
        actions = [self.table.delete_action(key)]
        actions += external_id_moves(self.table, tenant_id, document_id, current.get("external_id"), None)
        content = content_claim_key(tenant_id, current.get("external_id"), current["content_sha256"])
        actions += claim_moves(self.table, tenant_id, document_id, content, None)
        self.table.transact(actions, f"a claim of document {document_id} belongs to another document")

    def documents_with_status(self, status: DocumentStatus) -> list[Document]:
        """Across tenants, in id order (index ``by_status``)."""
        value = DocumentStatus(status).value
        return self._indexed_documents(BY_STATUS, f"STATUS#{value}", {"status": value})

    def documents_from_source(self, source: str) -> list[Document]:
        """Across tenants, in id order (index ``by_source``)."""
        return self._indexed_documents(BY_SOURCE, f"SOURCE#{source}", {"source": source})

    def _indexed_documents(self, index_name: str, value: str, still_matches: Mapping[str, str]) -> list[Document]:
        """Documents an index lists under a value, read from the table, skipping stale index entries."""
        keys = [{"pk": entry["pk"], "sk": entry["sk"]} for entry in self.table.index_entries(index_name, value)]
        items = self.table.batch_get(keys)
        current = [item for item in items if all(item.get(k) == v for k, v in still_matches.items())]
        return sorted((document_from_item(item) for item in current), key=lambda document: document.id)
