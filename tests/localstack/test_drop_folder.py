"""S3 drop folder → SQS → ingest → searchable, and an event on the topic → WebhookQueue → the webhook
dispatcher → a signed POST to a receiver on 127.0.0.1, through `ragline serve --backend aws` on LocalStack.

S3, SQS and SNS are LocalStack's (real S3→SQS notifications); DynamoDB is a moto server, because
LocalStack's DynamoDB tries to download DynamoDB Local here and hangs. The server creates the
template's resources itself and runs its SQS pollers, which call the real ingest and webhook
dispatcher handlers.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from moto.server import ThreadedMotoServer
from standardwebhooks import Webhook

from ragline.adapters.aws.clients import reset_clients
from ragline.adapters.aws.sns_events import message_attributes
from ragline.events import event_envelope
from tests.localstack.conftest import REGION, LocalStack
from tests.localstack.helpers import wait_until
from tests.support import Server, ragline
from tests.webhook_receivers import webhook_receiver

FLOW_TIMEOUT_SECONDS = 60.0  # S3 event → SQS long poll → parse, embed, index


@pytest.fixture(scope="module")
def moto_dynamodb() -> Iterator[str]:
    # moto's werkzeug logs every request at INFO: pytest would show thousands of lines on a failure.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def emulated_env(localstack: LocalStack, moto_dynamodb: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": localstack.url,
        "AWS_ENDPOINT_URL_DYNAMODB": moto_dynamodb,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
        "ANTHROPIC_API_KEY": "",
        "RAGLINE_LOG_LEVEL": "INFO",  # the poller's and ingest handler's steps, in the log a failure shows
        # Webhook receivers here are on 127.0.0.1; a failed attempt is tried again after ~1 s.
        "RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
        "RAGLINE_WEBHOOK_RETRY_SECONDS": "0,1",
    }


@pytest.fixture(scope="module")
def aws_server(tmp_path_factory: pytest.TempPathFactory, emulated_env: dict[str, str]) -> Iterator[Server]:
    stack_name = f"rl-ls-{uuid.uuid4().hex[:6]}"
    server = Server(
        tmp_path_factory.mktemp("aws-backend"),
        env=emulated_env,
        extra_args=["--backend", "aws", "--stack-name", stack_name],
    )
    server.stack_name = stack_name  # type: ignore[attr-defined]  # provision() is asked again for the names
    server.start()
    yield server
    server.stop()


def _resources(stack_name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """What the server created, by asking provision() again (idempotent; names come from the template)."""
    from ragline_emulator.provision import provision

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_clients()
    try:
        return provision(stack_name)
    finally:
        reset_clients()


def _search(client: httpx.Client, query: str) -> list[dict[str, Any]]:
    response = client.post("/v1/kb/search", json={"query": query, "mode": "keyword"})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def _wait(server: Server, predicate: Callable[[], Any], what: str) -> Any:
    try:
        return wait_until(predicate, timeout=FLOW_TIMEOUT_SECONDS, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nserver log:\n{server.log_path.read_text(errors='replace')[-4000:]}") from exc


def test_drop_folder_object_is_searchable_then_gone(
    aws_server: Server, emulated_env: dict[str, str], aws: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = _resources(aws_server.stack_name, emulated_env, monkeypatch)
    key_env = {**emulated_env, "RAGLINE_TABLE_NAME": resources.table_name}
    tenant = f"t{uuid.uuid4().hex[:6]}"
    key = ragline("keys", "create", "--backend", "aws", "--tenant", tenant, env=key_env).strip()
    other_key = ragline("keys", "create", "--backend", "aws", "--tenant", "someone-else", env=key_env).strip()

    marker = f"zephyrine{uuid.uuid4().hex[:8]}"
    text = f"Field notes. The {marker} valve must be inspected every 200 operating hours and replaced after 5000."
    s3 = aws("s3")
    object_key = f"inbox/{tenant}/notes/a.txt"
    s3.put_object(Bucket=resources.documents_bucket, Key=object_key, Body=text.encode(), ContentType="text/plain")

    with (
        httpx.Client(base_url=aws_server.url, headers={"x-api-key": key}, timeout=30) as client,
        httpx.Client(base_url=aws_server.url, headers={"x-api-key": other_key}, timeout=30) as other,
    ):
        started = time.monotonic()
        hits = _wait(
            aws_server,
            lambda: _search(client, marker),
            f"s3://{resources.documents_bucket}/{object_key} to become searchable",
        )
        print(f"\ndrop folder: searchable after {time.monotonic() - started:.1f}s")
        payload = hits[0]["payload"]
        assert marker in payload["text"] and payload["tenant_id"] == tenant, payload
        assert (payload["filename"] or "").endswith("a.txt"), payload
        document_id = payload["document_id"]
        document = client.get(f"/v1/kb/documents/{document_id}")
        assert document.status_code == 200, document.text
        assert document.json()["status"] == "indexed"
        assert _search(other, marker) == []  # the drop folder's tenant only

        s3.delete_object(Bucket=resources.documents_bucket, Key=object_key)
        started = time.monotonic()
        _wait(aws_server, lambda: not _search(client, marker), "the deleted object's document to leave search results")
        print(f"drop folder: gone after {time.monotonic() - started:.1f}s")
        gone = client.get(f"/v1/kb/documents/{document_id}")
        assert gone.status_code == 404, gone.text


def test_an_event_on_the_topic_is_delivered_signed_and_retried(
    aws_server: Server, emulated_env: dict[str, str], aws: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = _resources(aws_server.stack_name, emulated_env, monkeypatch)
    key_env = {**emulated_env, "RAGLINE_TABLE_NAME": resources.table_name}
    tenant = f"t{uuid.uuid4().hex[:6]}"
    key = ragline("keys", "create", "--backend", "aws", "--tenant", tenant, env=key_env).strip()
    with (
        webhook_receiver(500, 200) as receiver,
        httpx.Client(base_url=aws_server.url, headers={"x-api-key": key}, timeout=30) as client,
    ):
        created = client.post("/v1/webhooks", json={"url": receiver.url, "events": ["document.indexed"]})
        assert created.status_code == 201, created.text
        hook = created.json()
        # An event as any function publishes it (SnsEventBus): the envelope, with its filter attributes.
        event = event_envelope("document.indexed", tenant, {"document_id": "doc_ls", "chunks": 2})
        aws("sns").publish(
            TopicArn=resources.events_topic_arn,
            Message=json.dumps(event),
            MessageAttributes=message_attributes(event["type"], tenant),
        )
        started = time.monotonic()
        _wait(aws_server, lambda: len(receiver.received) >= 2, "the event's delivery, failed once, then retried")
        print(f"\nwebhook: delivered on the second attempt after {time.monotonic() - started:.1f}s")
        first, second = receiver.received[:2]
        payload = Webhook(hook["secret"]).verify(second.body, second.headers)
        assert payload["id"] == event["id"] == second.headers["webhook-id"] == first.headers["webhook-id"]
        assert payload["data"] == {"document_id": "doc_ls", "chunks": 2} and payload["tenant_id"] == tenant

        def log() -> list[dict[str, Any]]:
            response = client.get(f"/v1/webhooks/{hook['id']}/deliveries")
            assert response.status_code == 200, response.text
            return response.json()["deliveries"]

        (delivery,) = _wait(
            aws_server, lambda: [d for d in log() if d["status"] == "succeeded"], "the delivery logged as succeeded"
        )
        assert [attempt["status_code"] for attempt in delivery["attempts"]] == [500, 200]
