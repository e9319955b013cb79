"""Idempotency-Key on the AWS backend: `ragline serve --backend aws` against a moto server, so the
records live in the DynamoDB table (with its TTL attribute) and the middleware is the one deployed."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from tests.support import Server, free_port

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, moto_url: str) -> Iterator[httpx.Client]:
    server = Server(
        tmp_path_factory.mktemp("idempotency-aws"),
        env={**AWS_ENV, "AWS_ENDPOINT_URL": moto_url, "RAGLINE_LOG_LEVEL": "INFO"},
        extra_args=["--backend", "aws", "--stack-name", "ragline-idempotency"],
    ).start()
    try:
        match = re.search(r"\b(rl_[A-Za-z0-9_\-]{20,})\b", server.log_path.read_text())
        assert match, server.log_path.read_text()[-2000:]
        with httpx.Client(base_url=server.url, headers={"x-api-key": match.group(1)}, timeout=60) as c:
            yield c
    finally:
        server.stop()


def idempotency_items(moto_url: str) -> list[dict]:
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_url, region_name="us-east-1", **_credentials())
    items = []
    for table in dynamodb.list_tables()["TableNames"]:
        scan = dynamodb.scan(
            TableName=table, FilterExpression="begins_with(pk, :p)", ExpressionAttributeValues={":p": {"S": "IDEM#"}}
        )
        items += scan["Items"]
    return items


def _credentials() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def test_replay_and_conflict_on_dynamodb(client, moto_url):
    key, text = f"aws-{uuid.uuid4()}", f"Stored in DynamoDB {uuid.uuid4()}"
    first = client.post("/v1/kb/documents", json={"text": text}, headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    second = client.post("/v1/kb/documents", json={"text": text}, headers={"Idempotency-Key": key})
    assert (second.status_code, second.headers.get("idempotent-replayed"), second.content) == (
        202,
        "true",
        first.content,
    )
    other = client.post("/v1/kb/documents", json={"text": text + "!"}, headers={"Idempotency-Key": key})
    assert other.status_code == 409 and other.json()["code"] == 409
    items = [item for item in idempotency_items(moto_url) if item["sk"]["S"] == f"KEY#{key}"]
    assert len(items) == 1
    assert int(items[0]["status"]["N"]) == 202 and "delete_after" in items[0]


def test_a_multipart_upload_with_another_boundary_is_replayed_on_dynamodb(client):
    key, data = f"aws-{uuid.uuid4()}", f"multipart on aws {uuid.uuid4()}".encode()
    answers = []
    for boundary in ("first-boundary", "second-longer-boundary-xyz"):
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
                "Content-Type: text/plain\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        answers.append(
            client.post(
                "/v1/kb/documents",
                content=body,
                headers={"content-type": f"multipart/form-data; boundary={boundary}", "Idempotency-Key": key},
            )
        )
    assert answers[0].status_code == 202, answers[0].text
    assert (answers[1].headers.get("idempotent-replayed"), answers[1].content) == ("true", answers[0].content)
