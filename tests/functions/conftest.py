"""Lambda handlers under moto: the stack's resources in-process, handlers imported by file path
(functions/ holds Lambda code directories, not packages), a fresh container per test."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

from ragline.adapters.aws import clients  # noqa: E402
from ragline.config import get_settings  # noqa: E402
from ragline.container import Container, get_container  # noqa: E402
from ragline.keys import create_key, hash_key  # noqa: E402
from ragline.models import ALL_SCOPES, ApiKey, Scope  # noqa: E402
from ragline_emulator.event_sources import EmulatedLambdaContext  # noqa: E402
from ragline_emulator.functions import load_function as load_function_file  # noqa: E402
from ragline_emulator.provision import provision, settings_overrides  # noqa: E402

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
REGION = "us-east-1"
ACCOUNT = "123456789012"
API_ID = "a1b2c3d4e5"
STAGE = "dev"
_serial = itertools.count()


@dataclass
class Stack:
    container: Container
    bucket: str
    queue_url: str
    topic_arn: str
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)

    def handler(self, name: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        return load_function(name).handler


def load_function(name: str) -> ModuleType:
    """Import functions/<name>/app.py afresh, as Lambda would in a new execution environment."""
    return load_function_file(name, module_name=f"ragline_function_{name}_{next(_serial)}")


def rest_event(
    method: str,
    path: str,
    *,
    key: str | None = None,
    body: Any = None,
    raw_body: bytes | None = None,
    content_type: str | None = None,
    query: dict[str, str] | None = None,
    authorizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API Lambda-proxy event (payload format 1.0), as API Gateway sends it."""
    headers = {
        "Accept": "application/json",
        "Host": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
        "User-Agent": "pytest",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if key is not None:
        headers["x-api-key"] = key
    encoded: str | None = None
    is_base64 = False
    if body is not None:
        encoded = json.dumps(body)
        headers["Content-Type"] = content_type or "application/json"
    elif raw_body is not None:
        encoded = base64.b64encode(raw_body).decode()
        is_base64 = True
        headers["Content-Type"] = content_type or "application/octet-stream"
    if encoded is not None:
        headers["Content-Length"] = str(len(raw_body) if raw_body is not None else len(encoded.encode()))
    request_context: dict[str, Any] = {
        "accountId": ACCOUNT,
        "apiId": API_ID,
        "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
        "extendedRequestId": "KDewUgCgiYcEP8A=",
        "httpMethod": method,
        "identity": {"sourceIp": "203.0.113.7", "userAgent": "pytest", "apiKey": key},
        "path": f"/{STAGE}{path}",
        "protocol": "HTTP/1.1",
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "requestTime": "22/Nov/2026:12:00:00 +0000",
        "requestTimeEpoch": 1795780800000,
        "resourceId": "abc123",
        "resourcePath": "/{proxy+}",
        "stage": STAGE,
    }
    if authorizer is not None:
        request_context["authorizer"] = authorizer
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": request_context,
        "body": encoded,
        "isBase64Encoded": is_base64,
    }


def authorizer_context(tenant_id: str, scopes: str, key_id: str) -> dict[str, Any]:
    """requestContext.authorizer as API Gateway passes it on: our context plus principalId."""
    return {"tenant_id": tenant_id, "scopes": scopes, "key_id": key_id, "principalId": key_id, "integrationLatency": 12}


def authorizer_event(key: str | None, *, method: str = "GET", path: str = "/v1/kb/documents") -> dict[str, Any]:
    """A REST API REQUEST authorizer event (identity source: the x-api-key header)."""
    headers = {"Host": f"{API_ID}.execute-api.{REGION}.amazonaws.com", "User-Agent": "pytest"}
    if key is not None:
        headers["x-api-key"] = key
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/{method}{path}",
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {},
        "multiValueQueryStringParameters": {},
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": {},
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "resourcePath": "/{proxy+}",
            "stage": STAGE,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.7", "apiKey": key},
        },
    }


def query_string(params: dict[str, str]) -> str:
    return urlencode(params)


def response_json(response: dict[str, Any]) -> Any:
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body)


def _configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> None:
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "OPENSEARCH_URL",
        "RAGLINE_OPENSEARCH_URL",
        "RAGLINE_ANTHROPIC_API_KEY",
        "RAGLINE_INBOX_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    base = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "RAGLINE_BACKEND": "aws",
        "RAGLINE_DATA_DIR": str(tmp_path / "data"),  # the embedded vector engine's files
        "RAGLINE_AUTH_MODE": "key",
        "POWERTOOLS_SERVICE_NAME": "ragline",
        "POWERTOOLS_METRICS_NAMESPACE": "Ragline",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for name, value in {**base, **env}.items():
        monkeypatch.setenv(name, value)


def _fresh_process_state() -> None:
    get_settings.cache_clear()
    get_container.cache_clear()
    clients.reset_clients()


@pytest.fixture
def make_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Stack]]:
    """Build the stack's resources under moto and a fresh container; env overrides as keywords."""
    from moto import mock_aws

    with mock_aws():

        def build(**env: str) -> Stack:
            _configure(monkeypatch, tmp_path, **env)
            _fresh_process_state()
            resources = provision("ragline-test")  # what template.yaml declares
            for name, value in settings_overrides(resources).items():
                monkeypatch.setenv(f"RAGLINE_{name.upper()}", str(value))
            # The s3:TestEvent S3 sent when the notifications were set up: tests count their own messages.
            boto3.client("sqs", region_name=REGION).purge_queue(QueueUrl=resources.ingest_queue_url)
            _fresh_process_state()
            stack = Stack(
                get_container(), resources.documents_bucket, resources.ingest_queue_url, resources.events_topic_arn
            )
            store = stack.container.store
            for name, tenant, scopes in (
                ("t1", "t1", ALL_SCOPES),
                ("t2", "t2", ALL_SCOPES),
                ("t1_search", "t1", frozenset({Scope.SEARCH})),
            ):
                stack.keys[name], record = create_key(store, tenant, scopes)
                stack.key_ids[name] = record.id
            now = datetime.now(UTC)
            odd = {
                "expired": dict(expires_at=(now - timedelta(days=1)).isoformat()),
                "revoked": dict(revoked_at=now.isoformat()),
            }
            for name, fields in odd.items():
                stack.keys[name] = f"rl_{name}-key-for-tests"
                store.create_key(
                    ApiKey(
                        id=f"key_{name}",
                        tenant_id="t1",
                        key_hash=hash_key(stack.keys[name]),
                        prefix=f"rl_{name[:3]}",
                        scopes=ALL_SCOPES,
                        **fields,
                    )
                )
            return stack

        yield build
        _fresh_process_state()


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack()


@pytest.fixture
def context() -> EmulatedLambdaContext:
    """What the Lambda runtime passes as `context` (the fields Powertools reads)."""
    return EmulatedLambdaContext(
        function_name="ragline-test", invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:ragline-test"
    )
