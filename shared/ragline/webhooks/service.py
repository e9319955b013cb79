"""Webhooks: tenants' endpoints, the fan-out of events into deliveries, and each delivery attempt.

One code path for both backends. An event becomes one pending delivery per active endpoint that wants
it (``fan_out``); the ``DeliveryScheduler`` gets each attempted (``attempt``): locally the dispatcher
thread pool, deployed the deliveries queue and ``WebhookDispatcherFunction``. A failed attempt is
scheduled again on the retry schedule; an endpoint that answers 410, or whose deliveries of N events in
a row all failed, is disabled and the tenant's other endpoints are told (``webhook.disabled``).
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ragline.errors import BadRequest, Conflict, NotFound
from ragline.models import new_id, utcnow
from ragline.ports import DeliveryScheduler, EventBus, WebhookSender, WebhookStore
from ragline.webhooks.models import (
    DeliveryAttempt,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSecret,
    delivery_id,
)
from ragline.webhooks.schedule import next_delay
from ragline.webhooks.signing import new_secret, webhook_headers
from ragline.webhooks.targets import RefusedTarget, Resolver, check_target

log = logging.getLogger("ragline.webhooks")

MAX_WEBHOOKS_PER_TENANT = 20
# A delivery's body is thin (ids, counts, status, error text) and never more than this.
MAX_BODY_BYTES = 20 * 1024
# A delivery's log keeps its latest attempts (redeliveries add more; a DynamoDB item holds 400 KB).
MAX_ATTEMPTS_KEPT = 30
# Old secrets kept for their grace period after rotations, besides the current one.
MAX_OLD_SECRETS = 2


@dataclass(frozen=True)
class WebhookPolicy:
    retry_seconds: tuple[float, ...]
    allow_private_targets: bool
    disable_after_failed_events: int


def event_body(event: dict[str, Any]) -> str:
    """The JSON a delivery sends: ``{"id","type","timestamp","tenant_id","data"}``, at most 20 KB (long
    strings in ``data``, such as an error's text, are shortened until it fits)."""
    envelope = {
        "id": event["id"],
        "type": event["type"],
        "timestamp": event["created_at"],
        "tenant_id": event["tenant_id"],
        "data": event["data"],
    }
    body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
    longest = 4096
    while len(body.encode()) > MAX_BODY_BYTES and longest >= 16:
        envelope["data"] = _shorten(event["data"], longest)
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
        longest //= 4
    if len(body.encode()) > MAX_BODY_BYTES:
        envelope["data"] = {"truncated": True}
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
    return body


def _shorten(value: Any, longest: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= longest else value[: longest - 1] + "…"
    if isinstance(value, dict):
        return {key: _shorten(item, longest) for key, item in value.items()}
    if isinstance(value, list):
        return [_shorten(item, longest) for item in value[:100]]
    return value


def _later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WebhookService:
    def __init__(
        self,
        policy: WebhookPolicy,
        store: WebhookStore,
        sender: WebhookSender,
        scheduler: DeliveryScheduler,
        events: EventBus,
        resolver: Resolver,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.store = store
        self.sender = sender
        self.scheduler = scheduler
        self.events = events
        self.resolver = resolver
        self.rng = rng or random.Random()

    # ---- endpoints -------------------------------------------------------------------------------
    def _checked_url(self, url: str) -> str:
        try:
            check_target(url, allow_private=self.policy.allow_private_targets, resolver=self.resolver)
        except RefusedTarget as exc:
            raise BadRequest(exc.reason, error="Invalid webhook URL") from exc
        return url

    def create(
        self, tenant_id: str, url: str, events: list[str], description: str | None, active: bool
    ) -> tuple[WebhookEndpoint, str]:
        """The new endpoint and its secret (shown to the caller only now)."""
        url = self._checked_url(url)
        if len(self.store.list_webhooks(tenant_id)) >= MAX_WEBHOOKS_PER_TENANT:
            raise Conflict(
                f"a tenant has at most {MAX_WEBHOOKS_PER_TENANT} webhook endpoints; delete one first",
                error="Too many webhooks",
            )
        secret = new_secret()
        endpoint = WebhookEndpoint(
            id=new_id("wh"),
            tenant_id=tenant_id,
            url=url,
            events=events,
            description=description,
            active=active,
            secrets=[WebhookSecret(value=secret)],
        )
        self.store.create_webhook(endpoint)
        return endpoint, secret

    def get(self, tenant_id: str, webhook_id: str) -> WebhookEndpoint:
        endpoint = self.store.get_webhook(tenant_id, webhook_id)
        if endpoint is None:
            raise NotFound(f"webhook {webhook_id} not found", error="Webhook not found")
        return endpoint

    def list(self, tenant_id: str) -> list[WebhookEndpoint]:
        return self.store.list_webhooks(tenant_id)

    def update(self, tenant_id: str, webhook_id: str, changes: dict[str, Any]) -> WebhookEndpoint:
        """``changes``: any of url, events, description, active. Turning an endpoint back on clears its
        disabled reason and its run of failed events."""
        endpoint = self.get(tenant_id, webhook_id)
        if changes.get("url") is not None:
            endpoint.url = self._checked_url(changes["url"])
        if changes.get("events") is not None:
            endpoint.events = changes["events"]
        if "description" in changes:
            endpoint.description = changes["description"]
        if changes.get("active") is not None:
            endpoint.active = changes["active"]
            endpoint.disabled_reason = None
            if endpoint.active:
                endpoint.failed_events = 0
        endpoint.updated_at = utcnow()
        self.store.save_webhook(endpoint)
        return endpoint

    def delete(self, tenant_id: str, webhook_id: str) -> None:
        if not self.store.delete_webhook(tenant_id, webhook_id):
            raise NotFound(f"webhook {webhook_id} not found", error="Webhook not found")

    def rotate_secret(self, tenant_id: str, webhook_id: str, grace_period_hours: float) -> str:
        """A new current secret; the old one keeps signing (beside it) for the grace period."""
        endpoint = self.get(tenant_id, webhook_id)
        now = utcnow()
        kept = [s for s in endpoint.secrets[1:] if s.expires_at is not None and s.expires_at > now]
        if grace_period_hours > 0:
            old = endpoint.secrets[0].model_copy(update={"expires_at": _later(grace_period_hours * 3600)})
            kept.insert(0, old)
        secret = new_secret()
        endpoint.secrets = [WebhookSecret(value=secret), *kept[:MAX_OLD_SECRETS]]
        endpoint.updated_at = now
        self.store.save_webhook(endpoint)
        return secret

    # ---- deliveries ------------------------------------------------------------------------------
    def send_test(self, tenant_id: str, webhook_id: str) -> WebhookDelivery:
        """A ``webhook.test`` event for this endpoint only (whatever its events), delivered like any other."""
        endpoint = self.get(tenant_id, webhook_id)
        event = {
            "id": new_id("evt"),
            "type": "webhook.test",
            "created_at": utcnow(),
            "tenant_id": tenant_id,
            "data": {"webhook_id": endpoint.id, "url": endpoint.url},
        }
        delivery = self._delivery(endpoint, event, event_body(event), manual=True)
        self.store.add_deliveries([delivery])
        self.scheduler.schedule(delivery, 0)
        return delivery

    def deliveries(
        self, tenant_id: str, webhook_id: str, *, status: DeliveryStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[WebhookDelivery], str | None]:
        self.get(tenant_id, webhook_id)
        return self.store.list_deliveries(tenant_id, webhook_id, status=status, limit=limit, cursor=cursor)

    def redeliver(self, tenant_id: str, webhook_id: str, delivery_id_: str) -> WebhookDelivery:
        """Send a logged delivery again now, with the same ``webhook-id``, on a fresh retry schedule."""
        self.get(tenant_id, webhook_id)
        delivery = self.store.get_delivery(tenant_id, webhook_id, delivery_id_)
        if delivery is None:
            raise NotFound(f"delivery {delivery_id_} not found", error="Delivery not found")
        delivery.status = DeliveryStatus.PENDING
        delivery.round_attempts = 0
        delivery.manual = True
        delivery.next_attempt_at = utcnow()
        delivery.updated_at = delivery.next_attempt_at
        self.store.save_delivery(delivery)
        self.scheduler.schedule(delivery, 0)
        return delivery

    def fan_out(self, event: dict[str, Any]) -> list[WebhookDelivery]:
        """Turn one event into a pending delivery per active endpoint of its tenant that wants it, and
        schedule each at once. The same event twice (a redelivered message) adds nothing."""
        if event["type"] == "webhook.test":
            return []  # goes only to the endpoint it tests (send_test)
        endpoints = [e for e in self.store.list_webhooks(event["tenant_id"]) if e.active and e.wants(event["type"])]
        if not endpoints:
            return []
        body = event_body(event)
        deliveries = [self._delivery(e, event, body) for e in endpoints]
        added = self.store.add_deliveries(deliveries)
        for delivery in added:
            self.scheduler.schedule(delivery, 0)
        if len(added) < len(deliveries):
            # The same event again (a redelivered message): its deliveries exist. Any never attempted may
            # have lost their scheduling with the first run (deployed, nothing else would find them), so
            # they are scheduled again; a second send is harmless, receivers dedupe on webhook-id.
            known = {d.id for d in added}
            for delivery in deliveries:
                if delivery.id in known:
                    continue
                stored = self.store.get_delivery(delivery.tenant_id, delivery.webhook_id, delivery.id)
                if stored is not None and stored.status is DeliveryStatus.PENDING and not stored.attempts:
                    self.scheduler.schedule(stored, 0)
        return added

    @staticmethod
    def _delivery(
        endpoint: WebhookEndpoint, event: dict[str, Any], body: str, *, manual: bool = False
    ) -> WebhookDelivery:
        now = utcnow()
        return WebhookDelivery(
            id=delivery_id(event["id"], event["created_at"], endpoint.id),
            tenant_id=endpoint.tenant_id,
            webhook_id=endpoint.id,
            event_id=event["id"],
            event_type=event["type"],
            body=body,
            manual=manual,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )

    def attempt(self, delivery: WebhookDelivery) -> WebhookDelivery | None:
        """Make the delivery's next attempt (if it is pending and due) and record what came of it.
        None when its endpoint is gone (deleted, with its log)."""
        endpoint = self.store.get_webhook(delivery.tenant_id, delivery.webhook_id)
        if endpoint is None:
            return None
        if delivery.status is not DeliveryStatus.PENDING:
            return delivery  # already settled: a repeated queue message
        now = utcnow()
        if delivery.next_attempt_at and delivery.next_attempt_at > now:
            # Early: a queue's delay is capped below the schedule's; wait out the rest.
            seconds = (_parse(delivery.next_attempt_at) - _parse(now)).total_seconds()
            self.scheduler.schedule(delivery, seconds)
            return delivery
        if not endpoint.active and not delivery.manual:
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
            delivery.attempts.append(
                DeliveryAttempt(
                    at=now,
                    error=f"not sent: the endpoint is disabled ({endpoint.disabled_reason or 'paused'})",
                    latency_ms=0,
                )
            )
            delivery.updated_at = now
            self.store.save_delivery(delivery)
            return delivery

        body = delivery.body.encode()
        headers = webhook_headers(endpoint.signing_secrets(now), delivery.event_id, int(time.time()), body)
        outcome = self.sender.send(endpoint.url, headers, body)
        delivery.attempts.append(
            DeliveryAttempt(
                at=now,
                status_code=outcome.status_code,
                error=outcome.error,
                latency_ms=round(outcome.latency_ms, 1),
                response_body=outcome.response_body,
            )
        )
        del delivery.attempts[:-MAX_ATTEMPTS_KEPT]
        delivery.round_attempts += 1
        delivery.updated_at = utcnow()
        if outcome.succeeded:
            self._settle(delivery, DeliveryStatus.SUCCEEDED)
            if endpoint.failed_events:  # a write only when there is a run of failures to end
                self.store.count_event_outcome(endpoint.tenant_id, endpoint.id, failed=False)
            return delivery
        if outcome.gone:
            self._settle(delivery, DeliveryStatus.FAILED)
            self._disable(endpoint, "410 Gone")
            return delivery
        delay = next_delay(self.policy.retry_seconds, delivery.round_attempts, self.rng)
        if delay is None:
            self._settle(delivery, DeliveryStatus.FAILED)
            if not delivery.manual:
                failed_events = self.store.count_event_outcome(endpoint.tenant_id, endpoint.id, failed=True)
                if failed_events >= self.policy.disable_after_failed_events:
                    self._disable(endpoint, f"{failed_events} consecutive events failed")
            return delivery
        if outcome.retry_after is not None:
            delay = max(delay, outcome.retry_after)
        delivery.next_attempt_at = _later(delay)
        self.store.save_delivery(delivery)
        self.scheduler.schedule(delivery, delay)
        return delivery

    def attempt_by_id(self, tenant_id: str, webhook_id: str, delivery_id_: str) -> WebhookDelivery | None:
        delivery = self.store.get_delivery(tenant_id, webhook_id, delivery_id_)
        return None if delivery is None else self.attempt(delivery)

    def _settle(self, delivery: WebhookDelivery, status: DeliveryStatus) -> None:
        delivery.status = status
        delivery.next_attempt_at = None
        self.store.save_delivery(delivery)

    def _disable(self, endpoint: WebhookEndpoint, reason: str) -> None:
        disabled = self.store.disable_webhook(endpoint.tenant_id, endpoint.id, reason)
        if disabled is None:
            return  # another delivery disabled it first and told the tenant
        log.warning("webhook %s of tenant %s disabled: %s", endpoint.id, endpoint.tenant_id, reason)
        self.events.publish(
            "webhook.disabled", endpoint.tenant_id, {"webhook_id": endpoint.id, "url": endpoint.url, "reason": reason}
        )


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))
