"""Standard Webhooks signatures (ragline.webhooks.signing), checked by the reference library receivers use."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ragline.webhooks.signing import new_secret, sign, signature_header, webhook_headers

BODY = json.dumps(
    {"id": "evt_1", "type": "document.indexed", "timestamp": "2026-01-01T00:00:00Z", "tenant_id": "t", "data": {}},
    separators=(",", ":"),
).encode()


# The vector every Standard Webhooks library tests its signer against (the spec repository's test suites).
@pytest.mark.parametrize(
    "secret, msg_id, timestamp, body, expected",
    [
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ],
)
def test_the_published_vector(secret: str, msg_id: str, timestamp: int, body: bytes, expected: str) -> None:
    assert sign(secret, msg_id, timestamp, body) == expected
    assert signature_header([secret], msg_id, timestamp, body) == expected


def test_new_secrets_are_whsec_and_32_random_bytes() -> None:
    made = {new_secret() for _ in range(50)}
    assert len(made) == 50
    for secret in made:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_the_reference_library_verifies_a_delivery() -> None:
    secret = new_secret()
    headers = webhook_headers([secret], "evt_1", int(time.time()), BODY)
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "evt_1"
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_during_a_rotation_either_secret_verifies() -> None:
    new, old = new_secret(), new_secret()
    headers = webhook_headers([new, old], "evt_2", int(time.time()), BODY)
    first, second = headers["webhook-signature"].split(" ")
    assert first.startswith("v1,") and second.startswith("v1,")
    assert first == sign(new, "evt_2", int(headers["webhook-timestamp"]), BODY)  # in the order given
    for secret in (new, old):
        assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda body, headers: (body.replace(b"evt_1", b"evt_9"), headers), id="body"),
        pytest.param(lambda body, headers: (body + b" ", headers), id="trailing-space"),
        pytest.param(lambda body, headers: (body, {**headers, "webhook-id": "evt_other"}), id="id"),
        pytest.param(
            lambda body, headers: (body, {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}),
            id="timestamp",
        ),
    ],
)
def test_a_tampered_delivery_fails(tamper: Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]) -> None:
    secret = new_secret()
    headers = webhook_headers([secret], "evt_1", int(time.time()), BODY)
    body, headers = tamper(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!", ""])
def test_a_malformed_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValueError):
        sign(secret, "evt", 1, b"{}")


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signature_header([], "evt", 1, b"{}")
