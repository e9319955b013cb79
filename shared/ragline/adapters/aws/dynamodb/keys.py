"""API keys, their id claims and the key counter (the MetadataStore port's keys), on the Table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ragline.adapters.aws.dynamodb.table import KEY_COUNTER, Expression, Table, serialize
from ragline.models import ApiKey, Scope

KEY_FIELDS = frozenset(ApiKey.model_fields)


def api_key_key(key_hash: str) -> dict[str, str]:
    return {"pk": f"KEY#{key_hash}", "sk": "KEY"}


def key_id_key(key_id: str) -> dict[str, str]:
    return {"pk": f"KEYID#{key_id}", "sk": "KEY"}


def api_key_item(key: ApiKey) -> dict[str, Any]:
    fields = key.model_dump(mode="json", exclude_none=True)
    fields["scopes"] = sorted(scope.value for scope in key.scopes)
    return {**fields, **api_key_key(key.key_hash)}


def api_key_from_item(item: Mapping[str, Any]) -> ApiKey:
    fields = {name: value for name, value in item.items() if name in KEY_FIELDS}
    fields["scopes"] = frozenset(Scope(scope) for scope in fields["scopes"])
    return ApiKey.model_validate(fields)


class DynamoApiKeys:
    table: Table

    def create_key(self, key: ApiKey) -> None:
        """The key, a claim on its id (ids are unique too) and the key counter, in one transaction."""
        expression = Expression()
        count_it = {
            "Update": {
                "TableName": self.table.name,
                "Key": serialize(KEY_COUNTER),
                "UpdateExpression": expression.update({}, adds={"count": 1}),
                **expression.arguments(),
            }
        }
        actions = [
            self.table.put_new_action(api_key_item(key)),
            self.table.put_new_action({**key_id_key(key.id), "key_hash": key.key_hash, "tenant_id": key.tenant_id}),
            count_it,
        ]
        self.table.transact(actions, f"API key {key.id} (or one with the same hash) already exists")

    def find_key(self, key_hash: str) -> ApiKey | None:
        item = self.table.get(api_key_key(key_hash))
        return api_key_from_item(item) if item else None

    def count_keys(self) -> int:
        item = self.table.get(KEY_COUNTER)
        return int(item["count"]) if item else 0
