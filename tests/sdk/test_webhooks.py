"""Webhooks through the SDK, and ``webhooks.verify`` against deliveries the real server signed and sent to a
real receiver on 127.0.0.1 -- and against the same deliveries altered, replayed late or signed by another."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from ragline_client import NotFoundError, Ragline, UnprocessableEntityError, WebhookVerificationError, verify_webhook
from ragline_client.models import WebhookCreated
from standardwebhooks import Webhook as StandardWebhook

from tests.sdk.conftest import Both
from tests.support import Server
from tests.webhook_receivers import Received, Receiver, ok


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver(ok(200))
    yield started
    started.close()


@pytest.fixture
def cleanup(sdk_server: Server) -> Iterator[None]:
    """Tenant s1's endpoints are removed after the test, so that they never count toward its limit of 20."""
    yield
    with Ragline(api_key=sdk_server.keys["s1"], base_url=sdk_server.url) as client:  # type: ignore[attr-defined]
        for endpoint in client.webhooks.list():
            client.webhooks.delete(endpoint.id)


def _delivered(client: Ragline, webhook_id: str, delivery_id: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for delivery in client.webhooks.deliveries(webhook_id):
            if delivery.id == delivery_id and delivery.status == "succeeded":
                return delivery
        time.sleep(0.1)
    raise AssertionError(f"delivery {delivery_id} never succeeded")


@pytest.mark.usefixtures("cleanup")
def test_webhook_endpoints(both: Both, s1: Any, s2: Any, receiver: Receiver) -> None:
    created = both(s1.webhooks.create(receiver.url, ["document.indexed"], description="crm"))
    assert isinstance(created, WebhookCreated) and created.secret.startswith("whsec_") and created.active is True
    assert [w.id for w in both.all(s1.webhooks.list())] == [created.id]
    shown = both(s1.webhooks.get(created.id))
    assert shown.events == ["document.indexed"] and not hasattr(shown, "secret")

    patched = both(s1.webhooks.update(created.id, events=["*"], description=None))
    assert patched.events == ["*"] and patched.description is None and patched.url == receiver.url
    with pytest.raises(UnprocessableEntityError):
        both(s1.webhooks.create(receiver.url, ["document.exploded"]))

    sent = both(s1.webhooks.test(created.id))
    assert sent.event_id and sent.delivery_id
    assert receiver.wait_for_type("webhook.test").json["id"] == sent.event_id
    # Found by id: with events "*" the endpoint may also log deliveries of other tests' events meanwhile.
    deadline = time.monotonic() + 20
    while True:
        deliveries = [d for d in both.all(s1.webhooks.deliveries(created.id, page_size=1)) if d.id == sent.delivery_id]
        if deliveries and deliveries[0].status == "succeeded":
            break
        assert time.monotonic() < deadline, deliveries
        time.sleep(0.1)
    assert deliveries[0].attempts[0].status_code == 200

    redelivered = both(s1.webhooks.redeliver(created.id, sent.delivery_id))
    assert redelivered.id == sent.delivery_id and redelivered.event_id == sent.event_id
    deadline = time.monotonic() + 20
    while len([r for r in receiver.received if r.webhook_id == sent.event_id]) < 2:  # the event, sent again
        assert time.monotonic() < deadline, "the redelivery never arrived"
        time.sleep(0.05)

    for attempt in (
        lambda: s2.webhooks.get(created.id),
        lambda: s2.webhooks.test(created.id),
        lambda: s2.webhooks.rotate_secret(created.id),
        lambda: s2.webhooks.delete(created.id),
    ):
        with pytest.raises(NotFoundError):
            both(attempt())

    both(s1.webhooks.delete(created.id))
    with pytest.raises(NotFoundError):
        both(s1.webhooks.get(created.id))


@pytest.mark.usefixtures("cleanup")
def test_verify_deliveries_signed_by_the_server(sdk_server: Server, receiver: Receiver) -> None:
    with Ragline(api_key=sdk_server.keys["s1"], base_url=sdk_server.url) as client:  # type: ignore[attr-defined]
        created = client.webhooks.create(receiver.url)
        first = client.webhooks.test(created.id)
        _delivered(client, created.id, first.delivery_id)
        old_secret = created.secret
        new_secret = client.webhooks.rotate_secret(created.id, grace_period_hours=1)
        assert new_secret != old_secret and new_secret.startswith("whsec_")
        second = client.webhooks.test(created.id)
        _delivered(client, created.id, second.delivery_id)

        before, during = (_received(receiver, sent.event_id) for sent in (first, second))
        event = client.webhooks.verify(before.body, before.headers, old_secret)
        assert (event.id, event.type, event.tenant_id) == (first.event_id, "webhook.test", "s1")
        with pytest.raises(WebhookVerificationError, match="no signature matches"):
            client.webhooks.verify(before.body, before.headers, new_secret)  # signed before the rotation

        # During the grace period each delivery is signed with both secrets: either verifies.
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        for secret in (old_secret, new_secret):
            assert verify_webhook(during.body, during.headers, secret).id == second.event_id

    tampered_body = during.body.replace(b'"webhook.test"', b'"webhook.tost"')
    assert tampered_body != during.body
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify_webhook(tampered_body, during.headers, new_secret)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify_webhook(during.body, {**during.headers, "webhook-id": "evt_other"}, new_secret)
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify_webhook(
            during.body, during.headers, "whsec_" + base64.b64encode(b"another secret 32 bytes long!!!!").decode()
        )
    with pytest.raises(WebhookVerificationError, match="webhook-signature header is missing"):
        verify_webhook(during.body, {k: v for k, v in during.headers.items() if k != "webhook-signature"}, new_secret)
    # Header names in any case, as frameworks pass them on.
    assert (
        verify_webhook(during.body, {k.title(): v for k, v in during.headers.items()}, new_secret).id == second.event_id
    )


def test_stale_or_future_timestamps_are_refused(receiver: Receiver) -> None:
    """The body signed again by the standardwebhooks library (another implementation) at chosen times: valid
    signatures, so only the timestamp check can refuse them."""
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    body = json.dumps(
        {"id": "evt_1", "type": "webhook.test", "timestamp": "2025-06-02T09:14:03Z", "tenant_id": "s1", "data": {}}
    )
    signer = StandardWebhook(secret)

    def headers_at(when: datetime) -> dict[str, str]:
        return {
            "webhook-id": "evt_1",
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": signer.sign("evt_1", when, body),
        }

    now = datetime.now(timezone.utc)
    assert verify_webhook(body, headers_at(now - timedelta(minutes=4)), secret).id == "evt_1"
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(body, headers_at(now - timedelta(minutes=6)), secret)
    with pytest.raises(WebhookVerificationError, match="in the future"):
        verify_webhook(body, headers_at(now + timedelta(minutes=6)), secret)
    assert verify_webhook(body, headers_at(now - timedelta(minutes=6)), secret, tolerance_seconds=600).id == "evt_1"
    with pytest.raises(WebhookVerificationError, match="Unix seconds"):
        verify_webhook(body, {**headers_at(now), "webhook-timestamp": "yesterday"}, secret)


def _received(receiver: Receiver, event_id: str) -> Received:
    matching = [r for r in receiver.wait_for(1) if r.webhook_id == event_id]
    assert matching, f"{event_id} did not reach the receiver"
    return matching[0]
