"""Webhooks (admin scope): endpoints, their secrets, test events, the delivery log; and ``verify`` for receivers."""

from __future__ import annotations

from typing import AsyncIterator, Iterator, List, Mapping, Optional, Sequence, Union

from ragline_client._core import NOT_GIVEN, Call, NotGiven, Retry, body, model, no_content, segment
from ragline_client._transport import AsyncTransport, SyncTransport
from ragline_client.models import (
    Delivery,
    DeliveryPage,
    TestSent,
    Webhook,
    WebhookCreated,
    WebhookEvent,
    WebhookList,
    WebhookSecret,
)
from ragline_client.signatures import TOLERANCE_SECONDS, verify_webhook

DEFAULT_PAGE_SIZE = 100


def create_call(
    url: str, events: Sequence[str], description: Optional[str], active: Optional[bool]
) -> Call[WebhookCreated]:
    json = body(url=url, events=list(events), description=description, active=active)
    return Call("POST", "/v1/webhooks", model(WebhookCreated), json=json)


def list_call() -> Call[WebhookList]:
    return Call("GET", "/v1/webhooks", model(WebhookList))


def get_call(webhook_id: str) -> Call[Webhook]:
    return Call("GET", f"/v1/webhooks/{segment(webhook_id)}", model(Webhook))


def update_call(
    webhook_id: str,
    url: Union[str, NotGiven],
    events: Union[Sequence[str], NotGiven],
    description: Union[str, None, NotGiven],
    active: Union[bool, NotGiven],
) -> Call[Webhook]:
    fields = {
        "url": url,
        "events": events if isinstance(events, NotGiven) else list(events),
        "description": description,
        "active": active,
    }
    json = {k: v for k, v in fields.items() if not isinstance(v, NotGiven)}
    return Call("PATCH", f"/v1/webhooks/{segment(webhook_id)}", model(Webhook), json=json)


def delete_call(webhook_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/webhooks/{segment(webhook_id)}", no_content)


def rotate_secret_call(webhook_id: str, grace_period_hours: Optional[float]) -> Call[WebhookSecret]:
    # Not repeatable: a second rotation would replace the secret this one returns.
    return Call(
        "POST",
        f"/v1/webhooks/{segment(webhook_id)}/rotate-secret",
        model(WebhookSecret),
        json=body(grace_period_hours=grace_period_hours),
        retry=Retry.UNPROCESSED,
    )


def send_test_call(webhook_id: str) -> Call[TestSent]:
    # Not repeatable: each call sends another test event.
    return Call("POST", f"/v1/webhooks/{segment(webhook_id)}/test", model(TestSent), retry=Retry.UNPROCESSED)


def deliveries_page_call(
    webhook_id: str, status: Optional[str], limit: int, cursor: Optional[str]
) -> Call[DeliveryPage]:
    params = {"status": status, "limit": limit, "cursor": cursor}
    return Call("GET", f"/v1/webhooks/{segment(webhook_id)}/deliveries", model(DeliveryPage), params=params)


def redeliver_call(webhook_id: str, delivery_id: str) -> Call[Delivery]:
    return Call(
        "POST",
        f"/v1/webhooks/{segment(webhook_id)}/deliveries/{segment(delivery_id)}/redeliver",
        model(Delivery),
        retry=Retry.UNPROCESSED,
    )


def _webhooks(page: WebhookList) -> List[Webhook]:
    return page.webhooks  # one page: a tenant has at most 20 endpoints


def _deliveries(page: DeliveryPage) -> List[Delivery]:
    return page.deliveries


class _Verify:
    @staticmethod
    def verify(
        body: Union[bytes, str],
        headers: Mapping[str, str],
        secret: str,
        *,
        tolerance_seconds: float = TOLERANCE_SECONDS,
    ) -> WebhookEvent:
        """Check a delivery you received (raw body, its headers, the endpoint's ``whsec_`` secret) and return
        its event; ``WebhookVerificationError`` if it is not Ragline's or is older than the tolerance."""
        return verify_webhook(body, headers, secret, tolerance_seconds=tolerance_seconds)


class Webhooks(_Verify):
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def create(
        self,
        url: str,
        events: Sequence[str] = ("*",),
        *,
        description: Optional[str] = None,
        active: Optional[bool] = None,
    ) -> WebhookCreated:
        """Register an endpoint for ``events`` (``["*"]``: all); the answer holds its secret, shown only here."""
        return self._t.request(create_call(url, events, description, active))

    def list(self) -> Iterator[Webhook]:
        """Every endpoint of the tenant, oldest first (without secrets)."""
        return self._t.paginate(lambda cursor: list_call(), _webhooks)

    def get(self, webhook_id: str) -> Webhook:
        return self._t.request(get_call(webhook_id))

    def update(
        self,
        webhook_id: str,
        *,
        url: Union[str, NotGiven] = NOT_GIVEN,
        events: Union[Sequence[str], NotGiven] = NOT_GIVEN,
        description: Union[str, None, NotGiven] = NOT_GIVEN,
        active: Union[bool, NotGiven] = NOT_GIVEN,
    ) -> Webhook:
        return self._t.request(update_call(webhook_id, url, events, description, active))

    def delete(self, webhook_id: str) -> None:
        self._t.request(delete_call(webhook_id))

    def rotate_secret(self, webhook_id: str, *, grace_period_hours: Optional[float] = None) -> str:
        """A new secret; deliveries are also signed with the old one for ``grace_period_hours`` (server default 24)."""
        return self._t.request(rotate_secret_call(webhook_id, grace_period_hours)).secret

    def test(self, webhook_id: str) -> TestSent:
        """Send a ``webhook.test`` event to this endpoint only."""
        return self._t.request(send_test_call(webhook_id))

    def deliveries(
        self, webhook_id: str, *, status: Optional[str] = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[Delivery]:
        """The endpoint's delivery log, newest first, page after page."""
        return self._t.paginate(lambda cursor: deliveries_page_call(webhook_id, status, page_size, cursor), _deliveries)

    def redeliver(self, webhook_id: str, delivery_id: str) -> Delivery:
        return self._t.request(redeliver_call(webhook_id, delivery_id))


class AsyncWebhooks(_Verify):
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(
        self,
        url: str,
        events: Sequence[str] = ("*",),
        *,
        description: Optional[str] = None,
        active: Optional[bool] = None,
    ) -> WebhookCreated:
        return await self._t.request(create_call(url, events, description, active))

    def list(self) -> AsyncIterator[Webhook]:
        return self._t.paginate(lambda cursor: list_call(), _webhooks)

    async def get(self, webhook_id: str) -> Webhook:
        return await self._t.request(get_call(webhook_id))

    async def update(
        self,
        webhook_id: str,
        *,
        url: Union[str, NotGiven] = NOT_GIVEN,
        events: Union[Sequence[str], NotGiven] = NOT_GIVEN,
        description: Union[str, None, NotGiven] = NOT_GIVEN,
        active: Union[bool, NotGiven] = NOT_GIVEN,
    ) -> Webhook:
        return await self._t.request(update_call(webhook_id, url, events, description, active))

    async def delete(self, webhook_id: str) -> None:
        await self._t.request(delete_call(webhook_id))

    async def rotate_secret(self, webhook_id: str, *, grace_period_hours: Optional[float] = None) -> str:
        return (await self._t.request(rotate_secret_call(webhook_id, grace_period_hours))).secret

    async def test(self, webhook_id: str) -> TestSent:
        return await self._t.request(send_test_call(webhook_id))

    def deliveries(
        self, webhook_id: str, *, status: Optional[str] = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[Delivery]:
        return self._t.paginate(lambda cursor: deliveries_page_call(webhook_id, status, page_size, cursor), _deliveries)

    async def redeliver(self, webhook_id: str, delivery_id: str) -> Delivery:
        return await self._t.request(redeliver_call(webhook_id, delivery_id))
