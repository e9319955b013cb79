"""Webhooks: a tenant's endpoints, their secrets, test events, and the delivery log with redelivery."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from ragline.api.dependencies import AdminPrincipal, WebhookServiceDep
from ragline.api.errors import AUTHENTICATED, WITH_BODY, error_responses
from ragline.webhooks.models import (
    CreateWebhookRequest,
    DeliveryList,
    DeliveryOut,
    DeliveryStatus,
    RotateSecretRequest,
    SecretOut,
    TestSent,
    UpdateWebhookRequest,
    WebhookCreated,
    WebhookList,
    WebhookOut,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=error_responses(*AUTHENTICATED))


@router.post(
    "",
    status_code=201,
    summary="Register a webhook endpoint",
    response_model=WebhookCreated,
    responses=error_responses(*WITH_BODY, 409),
)
def create_webhook(body: CreateWebhookRequest, principal: AdminPrincipal, webhooks: WebhookServiceDep) -> Any:
    endpoint, secret = webhooks.create(principal.tenant_id, body.url, body.events, body.description, body.active)
    return WebhookCreated(**endpoint.public(), secret=secret)


@router.get("", summary="List webhook endpoints", response_model=WebhookList)
def list_webhooks(principal: AdminPrincipal, webhooks: WebhookServiceDep) -> Any:
    return {"webhooks": [endpoint.public() for endpoint in webhooks.list(principal.tenant_id)]}


@router.get(
    "/{webhook_id}", summary="Get a webhook endpoint", response_model=WebhookOut, responses=error_responses(404)
)
def get_webhook(webhook_id: str, principal: AdminPrincipal, webhooks: WebhookServiceDep) -> Any:
    return webhooks.get(principal.tenant_id, webhook_id).public()


@router.patch(
    "/{webhook_id}",
    summary="Change a webhook endpoint (url, events, description, active)",
    response_model=WebhookOut,
    responses=error_responses(*WITH_BODY, 404),
)
def update_webhook(
    webhook_id: str, body: UpdateWebhookRequest, principal: AdminPrincipal, webhooks: WebhookServiceDep
) -> Any:
    return webhooks.update(principal.tenant_id, webhook_id, body.model_dump(exclude_unset=True)).public()


@router.delete("/{webhook_id}", status_code=204, summary="Delete a webhook endpoint", responses=error_responses(404))
def delete_webhook(webhook_id: str, principal: AdminPrincipal, webhooks: WebhookServiceDep) -> Response:
    webhooks.delete(principal.tenant_id, webhook_id)
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/rotate-secret",
    summary="Rotate the signing secret",
    response_model=SecretOut,
    responses=error_responses(*WITH_BODY, 404),
)
def rotate_secret(
    webhook_id: str, principal: AdminPrincipal, webhooks: WebhookServiceDep, body: RotateSecretRequest | None = None
) -> Any:
    grace = (body or RotateSecretRequest()).grace_period_hours
    return {"secret": webhooks.rotate_secret(principal.tenant_id, webhook_id, grace)}


@router.post(
    "/{webhook_id}/test",
    status_code=202,
    summary="Send a webhook.test event to this endpoint",
    response_model=TestSent,
    responses=error_responses(404),
)
def send_test(webhook_id: str, principal: AdminPrincipal, webhooks: WebhookServiceDep) -> Any:
    delivery = webhooks.send_test(principal.tenant_id, webhook_id)
    return {"event_id": delivery.event_id, "delivery_id": delivery.id}


@router.get(
    "/{webhook_id}/deliveries",
    summary="The endpoint's delivery log, newest first",
    response_model=DeliveryList,
    responses=error_responses(404),
)
def list_deliveries(
    webhook_id: str,
    principal: AdminPrincipal,
    webhooks: WebhookServiceDep,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> Any:
    page, next_cursor = webhooks.deliveries(principal.tenant_id, webhook_id, status=status, limit=limit, cursor=cursor)
    return {"deliveries": [delivery.public() for delivery in page], "next_cursor": next_cursor}


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    summary="Send a delivery again now",
    response_model=DeliveryOut,
    responses=error_responses(404),
)
def redeliver(webhook_id: str, delivery_id: str, principal: AdminPrincipal, webhooks: WebhookServiceDep) -> Any:
    return webhooks.redeliver(principal.tenant_id, webhook_id, delivery_id).public()
