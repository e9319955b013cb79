"""Each Lambda handler invoked with the events API Gateway really sends, against moto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import boto3
import pytest

from ragline.container import get_container
from ragline_emulator.event_sources import EmulatedLambdaContext
from tests.functions.conftest import (
    ACCOUNT,
    API_ID,
    FUNCTIONS,
    REGION,
    STAGE,
    Stack,
    authorizer_context,
    authorizer_event,
    load_function,
    response_json,
    rest_event,
)

# Powertools warns when an invocation adds no metric beyond the cold start: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

TEXT = (
    "Ragline keeps a knowledge base per tenant. Refunds are issued within fourteen days of a return, "
    "to the original payment method. Shipping to Iceland takes five working days."
)


def _upload_text(
    handler: Any, context: EmulatedLambdaContext, key: str, text: str = TEXT, **extra: Any
) -> dict[str, Any]:
    response = handler(
        rest_event("POST", "/v1/kb/documents", key=key, body={"text": text, "title": "Policies", **extra}), context
    )
    assert response["statusCode"] == 202, response
    return response_json(response)["data"]


def _ingest_now(stack: Stack, job_id: str) -> None:
    """What the ingest function does with the job's SQS message (that function is tested on its own)."""
    job = stack.container.store.claim(job_id)
    assert job is not None
    stack.container.ingest.process(job)


# ---- documents ------------------------------------------------------------------------------------
def test_documents_upload_list_get_delete(stack: Stack, context: EmulatedLambdaContext) -> None:
    documents = stack.handler("documents")
    data = _upload_text(documents, context, stack.keys["t1"])
    document_id = data["document_id"]

    # Accepting enqueued the job on SQS for the ingest function.
    messages = boto3.client("sqs", region_name=REGION).receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10)
    assert [json.loads(m["Body"])["job_id"] for m in messages.get("Messages", [])] == [data["job_id"]]

    listed = documents(rest_event("GET", "/v1/kb/documents", key=stack.keys["t1"], query={"limit": "10"}), context)
    assert listed["statusCode"] == 200
    assert [d["id"] for d in response_json(listed)["documents"]] == [document_id]

    got = documents(rest_event("GET", f"/v1/kb/documents/{document_id}", key=stack.keys["t1"]), context)
    assert got["statusCode"] == 200
    assert response_json(got)["status"] == "queued"

    job = documents(rest_event("GET", f"/v1/kb/jobs/{data['job_id']}", key=stack.keys["t1"]), context)
    assert job["statusCode"] == 200 and response_json(job)["document_id"] == document_id

    # Another tenant sees nothing of it.
    assert (
        documents(rest_event("GET", f"/v1/kb/documents/{document_id}", key=stack.keys["t2"]), context)["statusCode"]
        == 404
    )

    deleted = documents(rest_event("DELETE", f"/v1/kb/documents/{document_id}", key=stack.keys["t1"]), context)
    assert deleted["statusCode"] == 200, deleted
    assert response_json(deleted) == {"status": "success", "data": {"document_id": document_id}}
    gone = documents(rest_event("GET", f"/v1/kb/documents/{document_id}", key=stack.keys["t1"]), context)
    assert gone["statusCode"] == 404


def test_an_upload_while_sns_is_down_is_accepted_and_its_event_held(
    stack: Stack, context: EmulatedLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragline.errors import DependencyUnavailable

    documents = load_function("documents")
    events = documents.container.outbox_events

    def sns_down(event: dict[str, Any]) -> None:
        raise DependencyUnavailable("SNS answered 503")

    monkeypatch.setattr(events.bus, "publish_event", sns_down)
    data = _upload_text(documents.handler, context, stack.keys["t1"])  # 202, not 503
    [held] = events.outbox.held_events(10)
    assert (held["type"], held["data"]["document_id"]) == ("document.uploaded", data["document_id"])


def test_documents_multipart_upload_arrives_base64(stack: Stack, context: EmulatedLambdaContext) -> None:
    boundary = "ragline-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="notes.md"\r\n'
        f"Content-Type: text/markdown\r\n\r\n# Notes\n\n{TEXT}\r\n--{boundary}--\r\n"
    ).encode()
    response = stack.handler("documents")(
        rest_event(
            "POST",
            "/v1/kb/documents",
            key=stack.keys["t1"],
            raw_body=body,
            content_type=f"multipart/form-data; boundary={boundary}",
        ),
        context,
    )
    assert response["statusCode"] == 202, response
    document = stack.container.store.get_document("t1", response_json(response)["data"]["document_id"])
    assert document is not None and document.filename == "notes.md"


def test_health_needs_no_key_and_detailed_needs_admin(stack: Stack, context: EmulatedLambdaContext) -> None:
    documents = stack.handler("documents")
    health = documents(rest_event("GET", "/health"), context)
    assert health["statusCode"] == 200 and response_json(health) == {"status": "healthy"}
    assert documents(rest_event("GET", "/health/detailed"), context)["statusCode"] == 401
    assert documents(rest_event("GET", "/health/detailed", key=stack.keys["t1_search"]), context)["statusCode"] == 403
    detailed = documents(rest_event("GET", "/health/detailed", key=stack.keys["t1"]), context)
    assert detailed["statusCode"] == 200, response_json(detailed)
    assert set(response_json(detailed)["dependencies"]) >= {"metadata_store", "blob_store", "vector_index", "embedder"}


@pytest.mark.parametrize("which", [None, "unknown", "expired", "revoked"])
def test_key_mode_refuses_bad_keys_with_the_error_body(
    stack: Stack, context: EmulatedLambdaContext, which: str | None
) -> None:
    key = {None: None, "unknown": "rl_nobody"}.get(which, stack.keys.get(which or "", ""))
    response = stack.handler("documents")(rest_event("GET", "/v1/kb/documents", key=key), context)
    assert response["statusCode"] == 401
    body = response_json(response)
    assert body["code"] == 401 and body["error"] and body["message"]


def test_presigned_upload_on_aws_is_an_s3_url_with_claims(stack: Stack, context: EmulatedLambdaContext) -> None:
    response = stack.handler("documents")(
        rest_event(
            "POST",
            "/v1/kb/uploads",
            key=stack.keys["t1"],
            body={"filename": "Big Report.pdf", "content_type": "application/pdf", "metadata": {"team": "ops"}},
        ),
        context,
    )
    assert response["statusCode"] == 200, response
    body = response_json(response)
    document_id = body["document_id"]
    url = urlparse(body["upload_url"])
    assert unquote(url.path).endswith(f"uploads/t1/{document_id}/Big_Report.pdf")
    assert "X-Amz-Signature" in parse_qs(url.query) and body["expires_in"] == 3600
    claims_object = boto3.client("s3", region_name=REGION).get_object(
        Bucket=stack.bucket, Key=f"upload-claims/t1/{document_id}.json"
    )
    claims = json.loads(claims_object["Body"].read())
    assert claims["document_id"] == document_id and claims["tenant_id"] == "t1"
    assert claims["filename"] == "Big Report.pdf" and claims["metadata"] == {"team": "ops"}
    assert claims["content_type"] == "application/pdf" and claims["created_at"]
    # The local receiving route does not exist on AWS: uploads go to S3.
    local = stack.handler("documents")(
        rest_event(
            "PUT", f"/v1/kb/uploads/{document_id}", key=stack.keys["t1"], raw_body=b"x", query={"token": "forged"}
        ),
        context,
    )
    assert local["statusCode"] == 404


# ---- search and chat ------------------------------------------------------------------------------
def test_search_and_chat_answer_from_an_ingested_document(stack: Stack, context: EmulatedLambdaContext) -> None:
    data = _upload_text(stack.handler("documents"), context, stack.keys["t1"])
    _ingest_now(stack, data["job_id"])

    search = stack.handler("search")
    found = search(
        rest_event(
            "POST", "/v1/kb/search", key=stack.keys["t1"], body={"query": "how long do refunds take", "limit": 3}
        ),
        context,
    )
    assert found["statusCode"] == 200, found
    items = response_json(found)["items"]
    assert items and items[0]["payload"]["document_id"] == data["document_id"]
    # Tenant isolation: t2's search finds nothing of t1's.
    other = search(rest_event("POST", "/v1/kb/search", key=stack.keys["t2"], body={"query": "refunds"}), context)
    assert response_json(other)["items"] == []

    chat = stack.handler("chat")
    answered = chat(
        rest_event("POST", "/v1/kb/chat", key=stack.keys["t1"], body={"query": "How long do refunds take?"}), context
    )
    assert answered["statusCode"] == 200, answered
    body = response_json(answered)
    assert "[1]" in body["answer"] and body["sources"][0]["document_id"] == data["document_id"]


def test_each_function_serves_only_its_capability(stack: Stack, context: EmulatedLambdaContext) -> None:
    key = stack.keys["t1"]
    search_on_chat = stack.handler("chat")(rest_event("POST", "/v1/kb/search", key=key, body={"query": "x"}), context)
    chat_on_search = stack.handler("search")(rest_event("POST", "/v1/kb/chat", key=key, body={"query": "x"}), context)
    upload_on_search = stack.handler("search")(rest_event("GET", "/v1/kb/documents", key=key), context)
    stream_on_chat = stack.handler("chat")(
        rest_event("POST", "/v1/kb/chat/stream", key=key, body={"query": "x"}), context
    )
    for response in (search_on_chat, chat_on_search, upload_on_search, stream_on_chat):
        assert response["statusCode"] in (404, 405)
        assert response_json(response)["code"] == response["statusCode"]


def test_search_scope_is_enforced(stack: Stack, context: EmulatedLambdaContext) -> None:
    chat = stack.handler("chat")(
        rest_event("POST", "/v1/kb/chat", key=stack.keys["t1_search"], body={"query": "refunds"}), context
    )
    assert chat["statusCode"] == 403
    search = stack.handler("search")(
        rest_event("POST", "/v1/kb/search", key=stack.keys["t1_search"], body={"query": "refunds"}), context
    )
    assert search["statusCode"] == 200


# ---- authorizer mode: the functions trust the authorizer's context -------------------------------
def test_authorizer_mode_takes_the_principal_from_the_context(make_stack: Any, context: EmulatedLambdaContext) -> None:
    stack = make_stack(RAGLINE_AUTH_MODE="authorizer")
    documents = stack.handler("documents")
    t1 = authorizer_context("t1", "chat,ingest,search", stack.key_ids["t1"])
    # No x-api-key reaches the function here: API Gateway's authorizer consumed it.
    created = documents(rest_event("POST", "/v1/kb/documents", body={"text": TEXT}, authorizer=t1), context)
    assert created["statusCode"] == 202, created
    document_id = response_json(created)["data"]["document_id"]
    listed = documents(rest_event("GET", "/v1/kb/documents", authorizer=t1), context)
    assert [d["id"] for d in response_json(listed)["documents"]] == [document_id]
    t2 = authorizer_context("t2", "ingest", stack.key_ids["t2"])
    assert documents(rest_event("GET", f"/v1/kb/documents/{document_id}", authorizer=t2), context)["statusCode"] == 404

    search_only = authorizer_context("t1", "search", stack.key_ids["t1_search"])
    refused = documents(rest_event("GET", "/v1/kb/documents", authorizer=search_only), context)
    assert refused["statusCode"] == 403
    found = stack.handler("search")(
        rest_event("POST", "/v1/kb/search", body={"query": "refunds"}, authorizer=search_only), context
    )
    assert found["statusCode"] == 200


@pytest.mark.parametrize(
    "authorizer",
    [
        None,  # the request did not come through the authorizer
        {"principalId": "key_x", "integrationLatency": 3},  # an authorizer that passed no tenant
        {"tenant_id": "t1", "scopes": "ingest,superuser", "key_id": "key_x"},  # a scope we do not know
    ],
)
def test_authorizer_mode_without_a_valid_context_is_401(
    make_stack: Any, context: EmulatedLambdaContext, authorizer: dict[str, Any] | None
) -> None:
    stack = make_stack(RAGLINE_AUTH_MODE="authorizer")
    # A valid key in the header changes nothing: in authorizer mode only the context counts.
    response = stack.handler("documents")(
        rest_event("GET", "/v1/kb/documents", key=stack.keys["t1"], authorizer=authorizer), context
    )
    assert response["statusCode"] == 401
    body = response_json(response)
    assert body["code"] == 401 and set(body) == {"error", "message", "code"}


def test_authorizer_mode_empty_scopes_grant_nothing(make_stack: Any, context: EmulatedLambdaContext) -> None:
    stack = make_stack(RAGLINE_AUTH_MODE="authorizer")
    response = stack.handler("documents")(
        rest_event("GET", "/v1/kb/documents", authorizer=authorizer_context("t1", "", "key_x")), context
    )
    assert response["statusCode"] == 403


# ---- the authorizer function ----------------------------------------------------------------------
def test_authorizer_allows_a_valid_key_for_every_route_of_the_stage(
    stack: Stack, context: EmulatedLambdaContext
) -> None:
    authorizer = load_function("authorizer")
    answer = authorizer.handler(authorizer_event(stack.keys["t1_search"]), context)
    assert answer["principalId"] == stack.key_ids["t1_search"]
    assert answer["context"] == {
        "tenant_id": "t1",
        "scopes": "search",
        "key_id": stack.key_ids["t1_search"],
        "rate_limit_per_minute": "",
    }
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "execute-api:Invoke"
    # Every route of the stage: the cached answer (keyed on x-api-key) is right for the next route too.
    assert statement["Resource"] == [f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/*/*"]

    full = authorizer.handler(authorizer_event(stack.keys["t1"], method="POST", path="/v1/kb/chat"), context)
    assert full["context"]["scopes"] == "admin,chat,ingest,search"


def test_authorizer_reads_the_header_whatever_its_case(stack: Stack, context: EmulatedLambdaContext) -> None:
    event = authorizer_event(None)
    event["headers"]["X-API-Key"] = stack.keys["t2"]
    answer = load_function("authorizer").handler(event, context)
    assert answer["context"]["tenant_id"] == "t2"


@pytest.mark.parametrize("which", [None, "unknown", "expired", "revoked"])
def test_authorizer_refuses_with_unauthorized(stack: Stack, context: EmulatedLambdaContext, which: str | None) -> None:
    authorizer = load_function("authorizer")
    key = {None: None, "unknown": "rl_nobody"}.get(which, stack.keys.get(which or "", ""))
    with pytest.raises(Exception) as raised:
        authorizer.handler(authorizer_event(key), context)
    # API Gateway answers 401 exactly when the authorizer fails with the message "Unauthorized".
    assert str(raised.value) == "Unauthorized"
    assert type(raised.value) is authorizer.Denied


def test_authorizer_does_not_load_the_model_or_the_index(stack: Stack, context: EmulatedLambdaContext) -> None:
    authorizer = load_function("authorizer")
    authorizer.handler(authorizer_event(stack.keys["t1"]), context)
    built = set(vars(authorizer.container))
    assert "store" in built
    assert not built & {"embedder", "index", "search", "chat", "answerer", "ingest"}


def test_documents_upload_and_delete_never_load_the_model(stack: Stack, context: EmulatedLambdaContext) -> None:
    documents = load_function("documents")
    data = _upload_text(documents.handler, context, stack.keys["t1"])
    assert not {"embedder", "index"} & set(vars(documents.container))
    assert not {"embedder", "index"} & set(vars(documents.container.ingest))
    deleted = documents.handler(
        rest_event("DELETE", f"/v1/kb/documents/{data['document_id']}", key=stack.keys["t1"]), context
    )
    assert deleted["statusCode"] == 200, deleted
    # Deleting removes the chunks, so it opens the index, at the dimension the settings give.
    assert "index" in vars(documents.container) and "embedder" not in vars(documents.container)


def test_authorizer_import_loads_no_numpy_model_or_web_framework(stack: Stack) -> None:
    """In a fresh interpreter, as Lambda's init imports it: what it loads is what its cold start costs."""
    probe = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('authorizer_app', {str(FUNCTIONS / 'authorizer' / 'app.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "heavy = ('numpy', 'onnxruntime', 'faiss', 'fastapi', 'starlette', 'opensearchpy', 'pypdf')\n"
        "print(json.dumps(sorted(name for name in heavy if name in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=dict(os.environ), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_search_and_chat_functions_load_the_model_at_init(stack: Stack) -> None:
    documents = load_function("documents")
    assert "embedder" not in vars(documents.container)  # accepting a document embeds nothing
    for name in ("search", "chat"):
        get_container.cache_clear()  # a new execution environment
        module = load_function(name)
        assert "embedder" in vars(module.container) and module.container is not documents.container


# ---- stream chat: the app the Lambda Web Adapter fronts ---------------------------------------------
def _lwa_headers(authorizer: dict[str, Any] | None) -> dict[str, str]:
    """The Lambda Web Adapter forwards the event's requestContext as this JSON header."""
    request_context = {
        "accountId": ACCOUNT,
        "apiId": API_ID,
        "stage": STAGE,
        "requestId": "r-1",
        "identity": {"sourceIp": "203.0.113.7"},
    }
    if authorizer is not None:
        request_context["authorizer"] = authorizer
    return {"x-amzn-request-context": json.dumps(request_context)}


def test_stream_chat_under_the_web_adapter_streams_sse(make_stack: Any, context: EmulatedLambdaContext) -> None:
    from fastapi.testclient import TestClient

    stack = make_stack(RAGLINE_AUTH_MODE="authorizer")
    t1 = authorizer_context("t1", "chat,ingest,search", stack.key_ids["t1"])
    created = stack.handler("documents")(
        rest_event("POST", "/v1/kb/documents", body={"text": TEXT}, authorizer=t1), context
    )
    _ingest_now(stack, response_json(created)["data"]["job_id"])

    app = load_function("stream_chat").app
    with TestClient(app) as client:
        assert client.get("/health").json() == {"status": "healthy"}  # the adapter's readiness check
        with client.stream(
            "POST", "/v1/kb/chat/stream", json={"query": "How long do refunds take?"}, headers=_lwa_headers(t1)
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            frames = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
        assert json.loads(frames[0])["event"] == "sources" and frames[-1] == "[DONE]"
        assert json.loads(frames[-2])["event"] == "done"

        missing = client.post("/v1/kb/chat/stream", json={"query": "refunds"}, headers=_lwa_headers(None))
        assert missing.status_code == 401 and missing.json()["code"] == 401
        no_header = client.post("/v1/kb/chat/stream", json={"query": "refunds"})
        assert no_header.status_code == 401
        # Pass-through invocations carry the literal "null" context.
        null = client.post("/v1/kb/chat/stream", json={"query": "refunds"}, headers={"x-amzn-request-context": "null"})
        assert null.status_code == 401
        # The stream function serves neither search nor the buffered chat.
        assert client.post("/v1/kb/search", json={"query": "x"}, headers=_lwa_headers(t1)).status_code == 404


def test_stream_chat_run_script_starts_uvicorn_on_localhost() -> None:
    script = Path(__file__).resolve().parents[2] / "functions" / "stream_chat" / "run.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    text = script.read_text()
    assert "exec python -m uvicorn" in text and "--host 127.0.0.1" in text and "app:app" in text


# ---- webhooks ---------------------------------------------------------------------------------------
def test_webhooks_function_manages_endpoints_and_queues_test_events(
    make_stack: Any, context: EmulatedLambdaContext
) -> None:
    stack = make_stack(RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS="true")
    webhooks = stack.handler("webhooks")
    key = stack.keys["t1"]
    created = webhooks(
        rest_event("POST", "/v1/webhooks", key=key, body={"url": "http://127.0.0.1:9/hook", "events": ["*"]}), context
    )
    assert created["statusCode"] == 201, created
    hook = response_json(created)
    assert hook["secret"].startswith("whsec_")
    listed = response_json(webhooks(rest_event("GET", "/v1/webhooks", key=key), context))
    assert [w["id"] for w in listed["webhooks"]] == [hook["id"]] and "secret" not in listed["webhooks"][0]
    assert webhooks(rest_event("GET", f"/v1/webhooks/{hook['id']}", key=stack.keys["t2"]), context)["statusCode"] == 404

    sent = webhooks(rest_event("POST", f"/v1/webhooks/{hook['id']}/test", key=key), context)
    assert sent["statusCode"] == 202
    delivery_id = response_json(sent)["delivery_id"]
    # The attempt is the dispatcher function's: a delivery message waits on the webhook queue.
    queue_url = stack.container.settings.webhook_queue_url
    messages = boto3.client("sqs", region_name=REGION).receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)
    assert [json.loads(m["Body"]) for m in messages["Messages"]] == [
        {"kind": "delivery", "tenant_id": "t1", "webhook_id": hook["id"], "delivery_id": delivery_id}
    ]
    log = response_json(webhooks(rest_event("GET", f"/v1/webhooks/{hook['id']}/deliveries", key=key), context))
    assert [(d["id"], d["status"]) for d in log["deliveries"]] == [(delivery_id, "pending")]
    # Other functions do not serve the webhooks routes, nor this one theirs.
    assert stack.handler("documents")(rest_event("GET", "/v1/webhooks", key=key), context)["statusCode"] == 404
    assert webhooks(rest_event("GET", "/v1/kb/documents", key=key), context)["statusCode"] == 404


# ---- the keys function (deployed: authorizer mode, DynamoDB) ---------------------------------------
def test_keys_function_creates_rotates_revokes_and_counts_on_dynamodb(
    make_stack: Any, context: EmulatedLambdaContext
) -> None:
    stack = make_stack(RAGLINE_AUTH_MODE="authorizer", RAGLINE_USAGE_FLUSH_SECONDS="0")
    keys = stack.handler("keys")
    authorizer = load_function("authorizer")
    admin = authorizer_context("t1", "admin,chat,ingest,search", stack.key_ids["t1"])
    created = keys(rest_event("POST", "/v1/keys", body={"name": "ci", "scopes": ["search"]}, authorizer=admin), context)
    assert created["statusCode"] == 201, created
    new = response_json(created)
    assert new["key"].startswith("rl_") and "key_hash" not in new
    assert authorizer.handler(authorizer_event(new["key"]), context)["context"]["scopes"] == "search"

    rotated = keys(
        rest_event("POST", f"/v1/keys/{new['id']}/rotate", body={"grace_period_hours": 0}, authorizer=admin), context
    )
    assert rotated["statusCode"] == 200, rotated
    successor = response_json(rotated)
    assert successor["rotated_from"] == new["id"] and successor["id"] != new["id"]
    assert authorizer.handler(authorizer_event(successor["key"]), context)["principalId"] == successor["id"]
    with pytest.raises(Exception, match="Unauthorized"):  # the old secret: its grace period (0 h) is over
        authorizer.handler(authorizer_event(new["key"]), context)

    revoked = keys(rest_event("DELETE", f"/v1/keys/{successor['id']}", authorizer=admin), context)
    assert revoked["statusCode"] == 204
    with pytest.raises(Exception, match="Unauthorized"):
        authorizer.handler(authorizer_event(successor["key"]), context)

    t2 = authorizer_context("t2", "admin,chat,ingest,search", stack.key_ids["t2"])
    assert keys(rest_event("GET", f"/v1/keys/{new['id']}", authorizer=t2), context)["statusCode"] == 404
    listed = response_json(keys(rest_event("GET", "/v1/keys", authorizer=admin), context))
    assert {new["id"], successor["id"]} <= {k["id"] for k in listed["keys"]}
    usage = response_json(keys(rest_event("GET", f"/v1/keys/{stack.key_ids['t1']}/usage", authorizer=admin), context))
    assert usage["requests"] == 4 and usage["errors"] == 0  # create, rotate, revoke, list (the 404 was t2's)
    assert usage["by_route"]["POST /v1/keys"] == 1 and usage["unique_ips"] == 1
    events = response_json(keys(rest_event("GET", "/v1/audit", authorizer=admin), context))["events"]
    assert [e["action"] for e in events] == ["revoke_key", "rotate_key", "create_key"]
    assert events[0]["ip"] == "203.0.113.7" and events[0]["outcome"] == 204


# ---- the insight function (deployed: DynamoDB, what the chat function recorded) ------------------
def test_insight_function_reads_what_the_chat_function_recorded(stack: Stack, context: EmulatedLambdaContext) -> None:
    data = _upload_text(stack.handler("documents"), context, stack.keys["t1"])
    _ingest_now(stack, data["job_id"])
    chat, insight = stack.handler("chat"), stack.handler("insight")
    key = stack.keys["t1"]
    answers = [
        response_json(chat(rest_event("POST", "/v1/kb/chat", key=key, body={"query": q}), context))
        for q in ("How long do refunds take?", "how long do REFUNDS take", "What is the capital of Mongolia?")
    ]
    assert [a["cached"] for a in answers] == [False, True, False]
    history = response_json(insight(rest_event("GET", "/v1/queries/history", key=key), context))
    assert history["total"] == 3
    assert [q["query_id"] for q in history["queries"]] == [a["query_id"] for a in reversed(answers)]
    rated = insight(
        rest_event("PATCH", f"/v1/queries/{answers[0]['query_id']}/rating", key=key, body={"rating": 5}), context
    )
    assert rated["statusCode"] == 200, rated
    popular = response_json(insight(rest_event("GET", "/v1/analytics/popular", key=key), context))
    assert popular["top_questions"][0] == {"question": "how long do refunds take", "count": 2}
    assert popular["top_documents"][0]["document_id"] == data["document_id"]
    assert popular["top_documents"][0]["reference_count"] == 2
    usage = response_json(insight(rest_event("GET", "/v1/analytics/usage", key=key), context))
    assert (usage["total_questions"], usage["average_rating"], usage["cached_share"]) == (3, 5.0, round(1 / 3, 4))
    stats = response_json(insight(rest_event("GET", f"/v1/documents/{data['document_id']}/stats", key=key), context))
    assert stats["query_count"] == 2 and stats["chunk_count"] >= 1
    # Another tenant sees none of it.
    other = stack.keys["t2"]
    assert insight(rest_event("GET", f"/v1/queries/{answers[0]['query_id']}", key=other), context)["statusCode"] == 404
    assert response_json(insight(rest_event("GET", "/v1/queries/history", key=other), context))["total"] == 0
