"""Tenant keys as API Gateway keys: deployed, API Gateway checks the key (and throttles it by its
usage plan) before the authorizer maps it to a tenant, so each Ragline key is registered there too."""

from __future__ import annotations

from typing import Any

from ragline.adapters.aws import clients


def add_usage_plan_key(usage_plan_id: str, *, name: str, value: str, client: Any = None) -> str:
    """Create an enabled API key with this value and attach it to the usage plan; returns its id."""
    apigateway = client or clients.client("apigateway")
    with clients.unavailable_when_down("API Gateway"):
        created = apigateway.create_api_key(name=name, value=value, enabled=True)
        apigateway.create_usage_plan_key(usagePlanId=usage_plan_id, keyId=created["id"], keyType="API_KEY")
    return str(created["id"])
