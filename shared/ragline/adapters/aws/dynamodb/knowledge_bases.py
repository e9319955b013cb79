"""Knowledge bases (the KnowledgeBaseStore port of the AWS backend), on the Table: the DynamoDB
twin of SqliteMetadataStore's knowledge_bases table.

| item       | pk             | sk                   | other attributes                                    |
|------------|----------------|----------------------|-----------------------------------------------------|
| KB         | ``TENANT#<t>`` | ``KB#<id>``          | the KB's fields, name_key, status_key while deleting |
| name claim | ``TENANT#<t>`` | ``KBNAME#<name key>``| kb_id                                               |

- A tenant's KBs are one Query of its partition (``begins_with(sk, "KB#")``), consistent, in id order;
  another tenant's KB id is simply not found.
- Names are unique per tenant by the claim item, written with ``attribute_not_exists`` in the same
  transaction as the KB (and moved in one transaction on a rename), as external ids are.
- ``status_key`` (``KBSTATUS#deleting``) is set only while a KB is being deleted: a sparse entry in the
  ``by_status`` index, which is how a restarted purge finds every tenant's unfinished deletes.
- Every search reads its tenant's deleting KBs: the same Query, filtered on status, ids only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ragline.adapters.aws.dynamodb.table import (
    BY_STATUS,
    DOC_PREFIX,
    Expression,
    Table,
    serialize,
    split_nones,
    tenant_pk,
)
from ragline.errors import Conflict, NotFound
from ragline.knowledge_bases import KnowledgeBase, KnowledgeBaseStatus, name_key
from ragline.models import utcnow

KB_PREFIX = "KB#"
KB_NAME_PREFIX = "KBNAME#"
DELETING_STATUS_KEY = "KBSTATUS#deleting"
_KB_FIELDS = frozenset(KnowledgeBase.model_fields)
_CHANGEABLE = frozenset({"name", "description", "chunk_size", "chunk_overlap"})


def kb_key(tenant_id: str, kb_id: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": KB_PREFIX + kb_id}


def kb_name_key(tenant_id: str, name: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": KB_NAME_PREFIX + name_key(name)}


def kb_item(kb: KnowledgeBase) -> dict[str, Any]:
    item = {
        **kb.model_dump(mode="json", exclude_none=True),
        **kb_key(kb.tenant_id, kb.id),
        "name_key": name_key(kb.name),
    }
    if kb.status == KnowledgeBaseStatus.DELETING:
        item["status_key"] = DELETING_STATUS_KEY
    return item


def kb_from_item(item: Mapping[str, Any]) -> KnowledgeBase:
    return KnowledgeBase.model_validate({name: value for name, value in item.items() if name in _KB_FIELDS})


def _duplicate_name(name: str) -> Conflict:
    return Conflict(f"a knowledge base named {name!r} exists already", error="Duplicate knowledge base name")


class DynamoKnowledgeBases:
    table: Table

    def create_kb(self, kb: KnowledgeBase) -> None:
        claim = {**kb_name_key(kb.tenant_id, kb.name), "tenant_id": kb.tenant_id, "kb_id": kb.id}
        actions = [self.table.put_new_action(kb_item(kb)), self.table.put_new_action(claim)]
        self.table.transact(
            actions, f"knowledge base {kb.id} or its name exists already", failed_at={1: _duplicate_name(kb.name)}
        )

    def get_kb(self, tenant_id: str, kb_id: str) -> KnowledgeBase | None:
        item = self.table.get(kb_key(tenant_id, kb_id))
        return kb_from_item(item) if item else None

    def _kb_items(self, tenant_id: str, *, deleting_only: bool = False) -> list[dict[str, Any]]:
        expression = Expression()
        arguments: dict[str, Any] = {
            "KeyConditionExpression": (
                f"{expression.name('pk')} = {expression.value(tenant_pk(tenant_id))} AND "
                f"begins_with({expression.name('sk')}, {expression.value(KB_PREFIX)})"
            ),
            "ConsistentRead": True,
        }
        if deleting_only:
            arguments["FilterExpression"] = (
                f"{expression.name('status')} = {expression.value(KnowledgeBaseStatus.DELETING.value)}"
            )
            arguments["ProjectionExpression"] = expression.name("id")
        return list(self.table.query(**arguments, **expression.arguments()))

    def list_kbs(self, tenant_id: str) -> list[KnowledgeBase]:
        return [kb_from_item(item) for item in self._kb_items(tenant_id)]

    def update_kb(self, tenant_id: str, kb_id: str, changes: dict[str, Any]) -> KnowledgeBase:
        unknown = set(changes) - _CHANGEABLE
        if unknown:
            raise ValueError(f"unchangeable knowledge base fields {sorted(unknown)}")
        current = self.get_kb(tenant_id, kb_id)
        if current is None:
            raise NotFound(f"knowledge base {kb_id} does not exist", error="Knowledge base not found")
        values = {**changes, "updated_at": utcnow()}
        new_name = changes.get("name")
        if new_name is None or name_key(new_name) == name_key(current.name):
            if new_name is not None:
                values["name_key"] = name_key(new_name)
            item = self.table.update_existing(kb_key(tenant_id, kb_id), values)
            if item is None:
                raise NotFound(f"knowledge base {kb_id} does not exist", error="Knowledge base not found")
            return kb_from_item(item)
        # A rename moves the name claim in the same transaction, so two KBs can never hold one name.
        values["name_key"] = name_key(new_name)
        expression = Expression()
        sets, removes = split_nones(values)
        update = {
            "Update": {
                "TableName": self.table.name,
                "Key": serialize(kb_key(tenant_id, kb_id)),
                "UpdateExpression": expression.update(sets, removes),
                "ConditionExpression": expression.exists_with({"name_key": name_key(current.name)}),
                **expression.arguments(),
            }
        }
        claim = {**kb_name_key(tenant_id, new_name), "tenant_id": tenant_id, "kb_id": kb_id}
        actions = [
            update,
            self.table.delete_action(kb_name_key(tenant_id, current.name)),
            self.table.put_new_action(claim),
        ]
        self.table.transact(
            actions,
            f"knowledge base {kb_id} changed meanwhile; try again",
            failed_at={2: _duplicate_name(new_name)},
        )
        found = self.get_kb(tenant_id, kb_id)
        if found is None:
            raise NotFound(f"knowledge base {kb_id} does not exist", error="Knowledge base not found")
        return found

    def mark_kb_deleting(self, tenant_id: str, kb_id: str) -> KnowledgeBase | None:
        item = self.table.update_existing(
            kb_key(tenant_id, kb_id),
            {"status": KnowledgeBaseStatus.DELETING.value, "status_key": DELETING_STATUS_KEY, "updated_at": utcnow()},
        )
        return kb_from_item(item) if item else None

    def delete_kb(self, tenant_id: str, kb_id: str) -> None:
        current = self.get_kb(tenant_id, kb_id)
        if current is None:
            return
        actions = [
            self.table.delete_action(kb_key(tenant_id, kb_id)),
            self.table.delete_action(kb_name_key(tenant_id, current.name)),
        ]
        self.table.transact(actions, f"knowledge base {kb_id} could not be deleted")

    def deleting_kb_ids(self, tenant_id: str) -> set[str]:
        return {str(item["id"]) for item in self._kb_items(tenant_id, deleting_only=True)}

    def kbs_deleting(self) -> list[KnowledgeBase]:
        keys = [
            {"pk": entry["pk"], "sk": entry["sk"]} for entry in self.table.index_entries(BY_STATUS, DELETING_STATUS_KEY)
        ]
        kbs = [kb_from_item(item) for item in self.table.batch_get(keys)]
        # The index lags the table: read again, keep what is still deleting.
        return sorted(
            (kb for kb in kbs if kb.status == KnowledgeBaseStatus.DELETING), key=lambda kb: (kb.tenant_id, kb.id)
        )

    def kb_document_counts(self, tenant_id: str) -> dict[str, tuple[int, int]]:
        # Reads every document item of the tenant (projected): O(documents) per call.
        expression = Expression()
        arguments: dict[str, Any] = {
            "KeyConditionExpression": (
                f"{expression.name('pk')} = {expression.value(tenant_pk(tenant_id))} AND "
                f"begins_with({expression.name('sk')}, {expression.value(DOC_PREFIX)})"
            ),
            "ProjectionExpression": f"{expression.name('kb_id')}, {expression.name('chunk_count')}",
            "ConsistentRead": True,
        }
        counts: dict[str, tuple[int, int]] = {}
        for item in self.table.query(**arguments, **expression.arguments()):
            documents, chunks = counts.get(item.get("kb_id", "default"), (0, 0))
            counts[item.get("kb_id", "default")] = (documents + 1, chunks + int(item.get("chunk_count", 0)))
        return counts
