"""API Gateway (REST) on LocalStack, enforcing API keys, proxying to a real `ragline serve`.

What the template's API does in AWS, reproduced by hand: `/{proxy+}` ANY needs an API key and
proxies (HTTP_PROXY) to the app; `/health` needs none; a usage plan with throttling ties the stage
to a key whose value is a Ragline key, so the gateway and the app accept the same secret.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.localstack.conftest import LocalStack
from tests.support import Server, ragline, wait_for_status

STAGE = "test"


@dataclass
class Gateway:
    url: str  # the stage's invoke URL (LocalStack's path form, no DNS needed)
    key: str
    app: Server


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    data_dir = tmp_path_factory.mktemp("gateway-app")
    key = ragline("keys", "create", "--tenant", "gw", "--data-dir", str(data_dir)).strip()
    # No Anthropic key: chat answers with the local extractive answerer.
    env = {"ANTHROPIC_API_KEY": "", "RAGLINE_ANTHROPIC_API_KEY": ""}
    server = Server(data_dir, env=env).start()
    yield server, key
    server.stop()


@pytest.fixture(scope="module")
def gateway(localstack: LocalStack, aws: Callable[[str], Any], app: tuple[Server, str]) -> Gateway:
    server, key = app
    apigw = aws("apigateway")
    api_id = apigw.create_rest_api(name=f"ragline-{uuid.uuid4().hex[:6]}", apiKeySource="HEADER")["id"]
    root_id = next(r["id"] for r in apigw.get_resources(restApiId=api_id)["items"] if r["path"] == "/")

    proxy_id = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart="{proxy+}")["id"]
    apigw.put_method(
        restApiId=api_id,
        resourceId=proxy_id,
        httpMethod="ANY",
        authorizationType="NONE",
        apiKeyRequired=True,
        requestParameters={"method.request.path.proxy": True},
    )
    # x-api-key reaches the app as-is (checked: LocalStack forwards it without a requestParameters mapping),
    # and the app checks it again: the gateway only keeps keyless traffic out.
    apigw.put_integration(
        restApiId=api_id,
        resourceId=proxy_id,
        httpMethod="ANY",
        type="HTTP_PROXY",
        integrationHttpMethod="ANY",
        uri=f"{server.url}/{{proxy}}",
        requestParameters={"integration.request.path.proxy": "method.request.path.proxy"},
    )

    health_id = apigw.create_resource(restApiId=api_id, parentId=root_id, pathPart="health")["id"]
    apigw.put_method(
        restApiId=api_id, resourceId=health_id, httpMethod="GET", authorizationType="NONE", apiKeyRequired=False
    )
    apigw.put_integration(
        restApiId=api_id,
        resourceId=health_id,
        httpMethod="GET",
        type="HTTP_PROXY",
        integrationHttpMethod="GET",
        uri=f"{server.url}/health",
    )

    apigw.create_deployment(restApiId=api_id, stageName=STAGE)
    api_key = apigw.create_api_key(name="ragline-gw", value=key, enabled=True)
    plan = apigw.create_usage_plan(
        name="ragline-plan",
        apiStages=[{"apiId": api_id, "stage": STAGE}],
        throttle={"rateLimit": 50.0, "burstLimit": 100},
    )
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=api_key["id"], keyType="API_KEY")
    # LocalStack's path form of the invoke URL (the host-based one needs DNS for *.localstack.cloud).
    return Gateway(f"{localstack.url}/_aws/execute-api/{api_id}/{STAGE}", key, server)


def test_key_is_enforced_by_the_gateway(gateway: Gateway) -> None:
    search = f"{gateway.url}/v1/kb/search"
    body = {"query": "anything"}
    missing = httpx.post(search, json=body, timeout=30)
    assert missing.status_code == 403, missing.text
    wrong = httpx.post(search, json=body, headers={"x-api-key": "rl_wrong-" + gateway.key[3:]}, timeout=30)
    assert wrong.status_code == 403, wrong.text
    # 403 from the gateway, not 401 from the app: the request never reached Ragline.
    assert "Forbidden" in wrong.text
    right = httpx.post(search, json=body, headers={"x-api-key": gateway.key}, timeout=30)
    assert right.status_code == 200, right.text
    assert "items" in right.json()


def test_health_needs_no_key(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/health", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "healthy"}  # the app answered, through the gateway


def test_upload_search_and_chat_through_the_gateway(gateway: Gateway, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex[:8]
    text = (
        f"Glacier report {marker}. The Vatnajokull ice cap retreated by 4 kilometres between 1890 and 2020. "
        "Meltwater from the ice cap feeds the Jokulsa river, which carries sediment to the north coast."
    )
    with httpx.Client(base_url=gateway.url, headers={"x-api-key": gateway.key}, timeout=60) as client:
        upload = client.post("/v1/kb/documents", files={"file": (f"glacier-{marker}.txt", text.encode(), "text/plain")})
        assert upload.status_code == 202, upload.text
        document_id = upload.json()["data"]["document_id"]

        document = wait_for_status(client, document_id)
        assert document["status"] == "indexed", document

        search = client.post("/v1/kb/search", json={"query": "How far did the Vatnajokull ice cap retreat?"})
        assert search.status_code == 200, search.text
        hits = search.json()["items"]
        assert hits, search.text
        assert hits[0]["payload"]["document_id"] == document_id

        chat = client.post("/v1/kb/chat", json={"query": "How far did the Vatnajokull ice cap retreat?"})
        assert chat.status_code == 200, chat.text
        answer = chat.json()
        assert answer["answer"].strip()
        assert answer["sources"], answer
        assert answer["sources"][0]["document_id"] == document_id
        assert "[1]" in answer["answer"], answer["answer"]  # cited
