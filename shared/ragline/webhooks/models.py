"""Webhook endpoints and deliveries, as stored and as the API shows them (API.md, Webhooks)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator

from ragline.models import utcnow
from ragline.webhooks.targets import MAX_URL_LENGTH

# The event catalogue (README, "Webhooks"). kb.* join when knowledge bases exist.
EVENT_TYPES = frozenset(
    {
        "document.uploaded",
        "document.indexed",
        "document.updated",
        "document.deleted",
        "error.ingestion",
        "sync.completed",
        "query.completed",
        "webhook.test",
        "webhook.disabled",
        "kb.created",
        "kb.deleted",
    }
)
ALL_EVENTS = "*"


class WebhookSecret(BaseModel):
    value: str  # whsec_…
    expires_at: str | None = None  # set on the old secret when a rotation grants a grace period


class WebhookEndpoint(BaseModel):
    id: str
    tenant_id: str
    url: str
    events: list[str]
    description: str | None = None
    active: bool = True
    disabled_reason: str | None = None
    secrets: list[WebhookSecret]  # the current one first
    failed_events: int = 0  # consecutive events whose every attempt failed
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)

    def wants(self, event_type: str) -> bool:
        return ALL_EVENTS in self.events or event_type in self.events

    def signing_secrets(self, now: str) -> list[str]:
        """The secrets a delivery made at ``now`` is signed with: the current one and any old one
        still inside its grace period."""
        return [s.value for s in self.secrets if s.expires_at is None or s.expires_at > now]

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"tenant_id", "secrets", "failed_events"})


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DeliveryAttempt(BaseModel):
    at: str
    status_code: int | None = None
    error: str | None = None  # timeout, connection refused, blocked: …
    latency_ms: float
    response_body: str = ""  # the first 1 KB


class WebhookDelivery(BaseModel):
    """One event on its way to one endpoint. ``body`` is the exact JSON sent (signatures cover
    its bytes); ``round_attempts`` counts attempts since the delivery was (re)started, and picks
    the next delay from the retry schedule."""

    id: str
    tenant_id: str
    webhook_id: str
    event_id: str
    event_type: str
    body: str
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: list[DeliveryAttempt] = Field(default_factory=list)
    round_attempts: int = 0
    manual: bool = False  # a test or a redelivery: sent even to an inactive endpoint, not counted against it
    next_attempt_at: str | None = None
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)

    def public(self) -> dict[str, Any]:
        return self.model_dump(
            mode="json", include={"id", "event_id", "event_type", "status", "attempts", "next_attempt_at", "created_at"}
        )


def delivery_id(event_id: str, event_created_at: str, webhook_id: str) -> str:
    """The same event to the same endpoint always gets the same delivery id (a redelivered
    message must not create a second delivery); time-ordered by the event, like ``new_id``."""
    millis = int(datetime.fromisoformat(event_created_at.replace("Z", "+00:00")).timestamp() * 1000)
    digest = hashlib.sha256(f"{event_id}\x00{webhook_id}".encode()).hexdigest()[:12]
    return f"dlv_{millis:012x}{digest}"


@dataclass(frozen=True)
class AttemptOutcome:
    """What one delivery attempt came to: an HTTP status, or an error ("timeout", "connection refused", …)."""

    status_code: int | None
    error: str | None
    latency_ms: float
    response_body: str
    retry_after: float | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        """410 Gone: the receiver asks never to be sent to again (the endpoint is disabled)."""
        return self.status_code == 410


# ---- request bodies -------------------------------------------------------------------------------
def _known_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - EVENT_TYPES - {ALL_EVENTS})
    if unknown:
        raise ValueError(f"unknown event types {unknown}; known: {sorted(EVENT_TYPES)} or ['*']")
    return list(dict.fromkeys(events))  # keeps the order, drops repeats


class CreateWebhookRequest(BaseModel):
    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    events: list[str] = Field(min_length=1, max_length=len(EVENT_TYPES) + 1)
    description: str | None = Field(default=None, max_length=500)
    active: bool = True

    @field_validator("events")
    @classmethod
    def _events(cls, events: list[str]) -> list[str]:
        return _known_events(events)


class UpdateWebhookRequest(BaseModel):
    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL_LENGTH)
    events: list[str] | None = Field(default=None, min_length=1, max_length=len(EVENT_TYPES) + 1)
    description: str | None = Field(default=None, max_length=500)
    active: bool | None = None

    @field_validator("events")
    @classmethod
    def _events(cls, events: list[str] | None) -> list[str] | None:
        return None if events is None else _known_events(events)


class RotateSecretRequest(BaseModel):
    grace_period_hours: float = Field(default=24.0, ge=0, le=7 * 24)


# ---- response bodies (API.md, Webhooks) ----------------------------------------------------------
class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    active: bool
    disabled_reason: str | None
    created_at: str
    updated_at: str


class WebhookCreated(WebhookOut):
    secret: str  # shown only here and at rotation


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class SecretOut(BaseModel):
    secret: str


class TestSent(BaseModel):
    event_id: str
    delivery_id: str


class AttemptOut(BaseModel):
    at: str
    status_code: int | None = None
    error: str | None = None
    latency_ms: float
    response_body: str


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: list[AttemptOut]
    next_attempt_at: str | None
    created_at: str


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
    next_cursor: str | None
