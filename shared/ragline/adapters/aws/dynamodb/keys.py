"""API keys, their id claims, their entries in the tenant's partition and the key counter (the
MetadataStore port's keys), on the Table.

The ``KEY#<hash>`` item is the key (the authorizer reads it by the presented secret's hash); the id claim
finds it by id; the tenant entry ``TENANT#<t>`` / ``APIKEY#<id>`` lists a tenant's keys in id order.
All three are written in one transaction. Keys created before the Keys API have no tenant entry: they
work, but are not listed (nor found by the API) until recreated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ragline.adapters.aws.dynamodb.table import KEY_COUNTER, Expression, Table, deserialize, serialize, tenant_pk
from ragline.errors import Conflict
from ragline.models import ApiKey, Scope

TENANT_KEY_PREFIX = "APIKEY#"

KEY_FIELDS = frozenset(ApiKey.model_fields)


def api_key_key(key_hash: str) -> dict[str, str]:
    return {"pk": f"KEY#{key_hash}", "sk": "KEY"}


def key_id_key(key_id: str) -> dict[str, str]:
    return {"pk": f"KEYID#{key_id}", "sk": "KEY"}


def tenant_key_entry(tenant_id: str, key_id: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": TENANT_KEY_PREFIX + key_id}


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

    def _create_actions(self, key: ApiKey) -> list[dict[str, Any]]:
        """The key, a claim on its id (ids are unique too), its tenant entry and the key counter."""
        expression = Expression()
        count_it = {
            "Update": {
                "TableName": self.table.name,
                "Key": serialize(KEY_COUNTER),
                "UpdateExpression": expression.update({}, adds={"count": 1}),
                **expression.arguments(),
            }
        }
        pointer = {"key_hash": key.key_hash, "tenant_id": key.tenant_id}
        return [
            self.table.put_new_action(api_key_item(key)),
            self.table.put_new_action({**key_id_key(key.id), **pointer}),
            self.table.put_new_action({**tenant_key_entry(key.tenant_id, key.id), **pointer}),
            count_it,
        ]

    def create_key(self, key: ApiKey) -> None:
        self.table.transact(self._create_actions(key), f"API key {key.id} (or one with the same hash) already exists")

    def find_key(self, key_hash: str) -> ApiKey | None:
        item = self.table.get(api_key_key(key_hash))
        return api_key_from_item(item) if item else None

    def count_keys(self) -> int:
        item = self.table.get(KEY_COUNTER)
        return int(item["count"]) if item else 0

    def _hash_of(self, key_id: str) -> str | None:
        claim = self.table.get(key_id_key(key_id))
        return str(claim["key_hash"]) if claim else None

    def get_key(self, key_id: str) -> ApiKey | None:
        key_hash = self._hash_of(key_id)
        return self.find_key(key_hash) if key_hash else None

    def list_keys(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[ApiKey], str | None]:
        expression = Expression()
        low = TENANT_KEY_PREFIX + (cursor or "")
        entries = self.table.query(
            KeyConditionExpression=f"{expression.name('pk')} = {expression.value(tenant_pk(tenant_id))} AND "
            f"{expression.name('sk')} BETWEEN {expression.value(low)} AND {expression.value('APIKEY$')}",
            ConsistentRead=True,
            **expression.arguments(),
        )
        hashes: list[str] = []
        for entry in entries:
            if entry["sk"] == low and cursor:  # BETWEEN includes the cursor itself
                continue
            hashes.append(str(entry["key_hash"]))
            if len(hashes) > limit:
                break
        items = self.table.batch_get([api_key_key(h) for h in hashes[:limit]])
        keys = sorted((api_key_from_item(item) for item in items), key=lambda key: key.id)
        return keys, (keys[-1].id if len(hashes) > limit and keys else None)

    def revoke_key(self, key_id: str, revoked_at: str) -> ApiKey | None:
        key_hash = self._hash_of(key_id)
        if key_hash is None:
            return None
        expression = Expression()
        revoked = expression.name("revoked_at")
        answer = self.table.write_if(
            "update_item",
            Key=serialize(api_key_key(key_hash)),
            # The first revocation's time stays.
            UpdateExpression=f"SET {revoked} = if_not_exists({revoked}, {expression.value(revoked_at)})",
            ConditionExpression=f"attribute_exists({expression.name('pk')})",
            ReturnValues="ALL_NEW",
            **expression.arguments(),
        )
        return None if answer is None else api_key_from_item(deserialize(answer["Attributes"]))

    def rotate_key(self, old_id: str, expires_at: str, new: ApiKey) -> None:
        old_hash = self._hash_of(old_id)
        if old_hash is None:
            raise Conflict(f"key {old_id} is gone", error="Key not rotatable")
        expression = Expression()
        retire = {
            "Update": {
                "TableName": self.table.name,
                "Key": serialize(api_key_key(old_hash)),
                "UpdateExpression": expression.update({"replaced_by": new.id, "expires_at": expires_at}),
                "ConditionExpression": f"attribute_exists({expression.name('pk')}) AND "
                f"attribute_not_exists({expression.name('revoked_at')}) AND "
                f"attribute_not_exists({expression.name('replaced_by')})",
                **expression.arguments(),
            }
        }
        self.table.transact(
            [retire, *self._create_actions(new)],
            f"API key {new.id} already exists",
            failed_at={0: Conflict(f"key {old_id} is revoked, rotated already, or gone", error="Key not rotatable")},
        )
