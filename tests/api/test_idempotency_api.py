"""Idempotency-Key through a real `ragline serve` (and a fake of Anthropic's API for chat).

The same key and body replays the first answer byte for byte (`Idempotent-Replayed: true`) and creates
nothing; another body, or the first request still running, is a 409; a 5xx leaves the key free for a
retry; another key's or tenant's records are their own; invalid keys are a 400.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from ragline_emulator.anthropic_server import FakeAnthropic
from tests.support import Server, ragline, wait_for_status

REPLAYED = "idempotent-replayed"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(scope="module")
def server(fake, tmp_path_factory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("idempotency-server")
    keys = {
        "i1": ragline("keys", "create", "--tenant", "i1", "--data-dir", str(data_dir)).strip(),
        "i1_other": ragline("keys", "create", "--tenant", "i1", "--data-dir", str(data_dir)).strip(),
        "i2": ragline("keys", "create", "--tenant", "i2", "--data-dir", str(data_dir)).strip(),
    }
    server = Server(
        data_dir,
        env={
            "ANTHROPIC_API_KEY": fake.api_key,
            "ANTHROPIC_BASE_URL": fake.url,
            "RAGLINE_CHAT_MAX_RETRIES": "0",  # a failing model is a 503 at once
            "RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
            "RAGLINE_MAX_JSON_BODY_BYTES": "65536",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        },
    ).start()
    server.keys = keys
    with _client(server, "i1") as client:
        accepted = client.post("/v1/kb/documents", json={"title": "Policy", "text": "Invoices are due in 30 days."})
        assert accepted.status_code == 202, accepted.text
        wait_for_status(client, accepted.json()["data"]["document_id"], ("indexed",))
    yield server
    server.stop()


def _client(server: Server, who: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": server.keys[who]}, timeout=60, trust_env=False)


@pytest.fixture
def client(server) -> Iterator[httpx.Client]:
    with _client(server, "i1") as c:
        yield c


@pytest.fixture(autouse=True)
def normal_model(fake) -> None:
    fake.script()


def new_key() -> str:
    return f"test-{uuid.uuid4()}"


def idem(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def document_count(client: httpx.Client) -> int:
    listing = client.get("/v1/kb/documents", params={"limit": 500})
    assert listing.status_code == 200, listing.text
    return len(listing.json()["documents"])


def multipart(
    boundary: str, files: list[tuple[str, bytes]], fields: dict[str, str] | None = None
) -> tuple[dict, bytes]:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in (fields or {}).items()
    ]
    field = "file" if len(files) == 1 else "files"
    for filename, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return {"content-type": f"multipart/form-data; boundary={boundary}"}, b"".join(parts)


def assert_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message", "code"} and body["code"] == status, body
    return body


# ---- replay -------------------------------------------------------------------------------------------
def test_a_json_upload_sent_twice_is_one_document_and_one_answer(client):
    key, text = new_key(), f"Refunds take ten days. {uuid.uuid4()}"
    before = document_count(client)
    first = client.post("/v1/kb/documents", json={"text": text, "title": "Refunds"}, headers=idem(key))
    assert first.status_code == 202, first.text
    assert REPLAYED not in first.headers
    second = client.post("/v1/kb/documents", json={"text": text, "title": "Refunds"}, headers=idem(key))
    assert second.status_code == 202
    assert second.headers[REPLAYED] == "true"
    assert second.content == first.content  # the same job id, not a new job answered as a duplicate
    assert second.headers["content-type"] == first.headers["content-type"]
    assert document_count(client) == before + 1
    # Without the key the same text is a new request (answered as a duplicate of that document).
    third = client.post("/v1/kb/documents", json={"text": text, "title": "Refunds"})
    assert REPLAYED not in third.headers and third.json()["data"]["duplicate"] is True


def test_the_same_key_with_another_body_is_a_409(client):
    key = new_key()
    assert client.post("/v1/kb/documents", json={"text": f"one {uuid.uuid4()}"}, headers=idem(key)).status_code == 202
    before = document_count(client)
    other = client.post("/v1/kb/documents", json={"text": f"two {uuid.uuid4()}"}, headers=idem(key))
    body = assert_error(other, 409)
    assert "another request body" in body["message"]
    assert document_count(client) == before


def test_a_multipart_upload_resent_with_another_boundary_is_replayed(client):
    key, data = new_key(), f"Multipart body {uuid.uuid4()}".encode()
    headers, body = multipart("boundary-one-1111", [("note.txt", data)], {"title": "Note"})
    first = client.post("/v1/kb/documents", content=body, headers={**headers, **idem(key)})
    assert first.status_code == 202, first.text
    headers, body = multipart("another-boundary-of-other-length-22", [("note.txt", data)], {"title": "Note"})
    second = client.post("/v1/kb/documents", content=body, headers={**headers, **idem(key)})
    assert (second.status_code, second.headers.get(REPLAYED), second.content) == (202, "true", first.content)
    # ...and another file under the same key is a 409.
    headers, body = multipart("boundary-three", [("note.txt", data + b"!")], {"title": "Note"})
    assert_error(client.post("/v1/kb/documents", content=body, headers={**headers, **idem(key)}), 409)


def test_a_multipart_batch_is_replayed_whole(client):
    key = new_key()
    files = [(f"f{n}.txt", f"Batch file {n} {uuid.uuid4()}".encode()) for n in range(3)]
    before = document_count(client)
    headers, body = multipart("batch-a", files)
    first = client.post("/v1/kb/documents", content=body, headers={**headers, **idem(key)})
    assert first.status_code == 202 and first.json()["successful"] == 3, first.text
    headers, body = multipart("batch-bbbbbbbbbbbbbbbbbb", files)
    second = client.post("/v1/kb/documents", content=body, headers={**headers, **idem(key)})
    assert (second.headers.get(REPLAYED), second.content) == ("true", first.content)
    assert document_count(client) == before + 3


def test_a_presigned_upload_ticket_is_replayed(client):
    key, request = new_key(), {"filename": f"big-{uuid.uuid4()}.txt", "content_type": "text/plain"}
    first = client.post("/v1/kb/uploads", json=request, headers=idem(key))
    assert first.status_code == 200, first.text
    second = client.post("/v1/kb/uploads", json=request, headers=idem(key))
    assert (second.headers.get(REPLAYED), second.content) == ("true", first.content)


def test_a_webhook_created_twice_is_one_endpoint_with_one_secret(client):
    key = new_key()
    request = {"url": "http://127.0.0.1:9/hook", "events": ["document.deleted"], "description": "idempotent"}
    before = client.get("/v1/webhooks").json()["webhooks"]
    first = client.post("/v1/webhooks", json=request, headers=idem(key))
    assert first.status_code == 201, first.text
    second = client.post("/v1/webhooks", json=request, headers=idem(key))
    assert (second.status_code, second.headers.get(REPLAYED)) == (201, "true")
    assert second.json()["secret"] == first.json()["secret"] and second.json()["id"] == first.json()["id"]
    after = client.get("/v1/webhooks").json()["webhooks"]
    assert len(after) == len(before) + 1


def test_a_chat_answer_is_replayed_not_asked_again(client, fake):
    key, request = new_key(), {"query": "When are invoices due?"}
    first = client.post("/v1/kb/chat", json=request, headers=idem(key))
    assert first.status_code == 200, first.text
    asked = len(fake.requests)
    second = client.post("/v1/kb/chat", json=request, headers=idem(key))
    assert (second.headers.get(REPLAYED), second.content) == ("true", first.content)  # same query_id and latency
    assert len(fake.requests) == asked


# ---- scopes -------------------------------------------------------------------------------------------
def test_other_tenants_and_other_keys_have_their_own_records(server, client):
    key, text = new_key(), f"Shared key text {uuid.uuid4()}"
    mine = client.post("/v1/kb/documents", json={"text": text}, headers=idem(key))
    assert mine.status_code == 202
    with _client(server, "i2") as other_tenant:
        theirs = other_tenant.post("/v1/kb/documents", json={"text": text}, headers=idem(key))
        assert theirs.status_code == 202 and REPLAYED not in theirs.headers
        assert theirs.json()["data"]["document_id"] != mine.json()["data"]["document_id"]
        # a different body under the same key is no conflict for them either
        assert other_tenant.post("/v1/kb/documents", json={"text": "x"}, headers=idem(new_key())).status_code == 202
    with _client(server, "i1_other") as same_tenant_other_key:
        again = same_tenant_other_key.post("/v1/kb/documents", json={"text": text + "!"}, headers=idem(key))
        assert again.status_code == 202 and REPLAYED not in again.headers


def test_another_route_is_another_record(client):
    key = new_key()
    assert client.post("/v1/kb/uploads", json={"filename": "a.txt"}, headers=idem(key)).status_code == 200
    upload = client.post("/v1/kb/documents", json={"text": f"route {uuid.uuid4()}"}, headers=idem(key))
    assert upload.status_code == 202 and REPLAYED not in upload.headers


# ---- in progress --------------------------------------------------------------------------------------
def _in_background(call) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        result["response"] = call()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_a_second_request_while_the_first_streams_its_body_is_a_409(server, client):
    key, text = new_key(), f"Slowly sent {uuid.uuid4()}"
    payload = f'{{"text": "{text}"}}'.encode()

    def slow_body() -> Iterator[bytes]:
        yield payload[:10]
        time.sleep(2.0)  # the first request holds its key meanwhile
        yield payload[10:]

    with _client(server, "i1") as slow:
        thread, result = _in_background(
            lambda: slow.post(
                "/v1/kb/documents", content=slow_body(), headers={"content-type": "application/json", **idem(key)}
            )
        )
        time.sleep(0.7)
        during = client.post(
            "/v1/kb/documents", content=payload, headers={"content-type": "application/json", **idem(key)}
        )
        thread.join(30)
    body = assert_error(during, 409)
    assert "still being processed" in body["message"]
    first = result["response"]
    assert first.status_code == 202, first.text
    after = client.post("/v1/kb/documents", content=payload, headers={"content-type": "application/json", **idem(key)})
    assert (after.headers.get(REPLAYED), after.content) == ("true", first.content)


def test_a_second_chat_while_the_model_is_still_answering_is_a_409(server, client, fake):
    fake.script(answer="Invoices are due within thirty days of the invoice date [1].", delta_interval=0.3)
    key, request = new_key(), {"query": "When are invoices due, exactly?"}
    with _client(server, "i1") as first_client:
        thread, result = _in_background(lambda: first_client.post("/v1/kb/chat", json=request, headers=idem(key)))
        time.sleep(1.0)
        during = client.post("/v1/kb/chat", json=request, headers=idem(key))
        thread.join(60)
    assert_error(during, 409)
    first = result["response"]
    assert first.status_code == 200, first.text
    after = client.post("/v1/kb/chat", json=request, headers=idem(key))
    assert (after.headers.get(REPLAYED), after.content) == ("true", first.content)


# ---- failures free the key ----------------------------------------------------------------------------
def test_a_request_that_failed_with_a_5xx_can_be_retried_with_its_key(client, fake):
    fake.script(fail_status=529)
    key, request = new_key(), {"query": "When are invoices due?"}
    failed = client.post("/v1/kb/chat", json=request, headers=idem(key))
    assert_error(failed, 503)
    fake.script()
    retried = client.post("/v1/kb/chat", json=request, headers=idem(key))
    assert retried.status_code == 200 and REPLAYED not in retried.headers, retried.text
    replayed = client.post("/v1/kb/chat", json=request, headers=idem(key))
    assert (replayed.headers.get(REPLAYED), replayed.content) == ("true", retried.content)


def test_a_body_over_the_limit_does_not_use_up_the_key(client):
    key = new_key()

    def chunked_too_big() -> Iterator[bytes]:  # no Content-Length: refused at the first byte over
        yield b'{"text": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    refused = client.post(
        "/v1/kb/documents", content=chunked_too_big(), headers={"content-type": "application/json", **idem(key)}
    )
    assert_error(refused, 413)
    accepted = client.post("/v1/kb/documents", json={"text": f"small {uuid.uuid4()}"}, headers=idem(key))
    assert accepted.status_code == 202 and REPLAYED not in accepted.headers, accepted.text


def test_a_key_that_is_not_let_in_claims_nothing(server, client):
    key = new_key()
    with httpx.Client(base_url=server.url, headers={"x-api-key": "rl_unknown"}, timeout=30, trust_env=False) as bad:
        assert_error(bad.post("/v1/kb/uploads", json={"filename": "a.txt"}, headers=idem(key)), 401)
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as anonymous:
        assert_error(anonymous.post("/v1/kb/uploads", json={"filename": "a.txt"}, headers=idem(key)), 401)
    assert client.post("/v1/kb/uploads", json={"filename": "a.txt"}, headers=idem(key)).status_code == 200


def test_a_validation_error_is_replayed_as_it_was(client):
    key = new_key()
    first = client.post("/v1/kb/uploads", json={"filename": ""}, headers=idem(key))
    assert first.status_code == 422
    second = client.post("/v1/kb/uploads", json={"filename": ""}, headers=idem(key))
    assert (second.status_code, second.headers.get(REPLAYED), second.content) == (422, "true", first.content)


# ---- the header itself --------------------------------------------------------------------------------
INVALID = [
    pytest.param(b"", id="empty"),
    pytest.param(b"k" * 256, id="256 chars"),
    pytest.param("clé-ünïcode".encode(), id="non-ASCII UTF-8"),
    pytest.param("clé".encode("latin-1"), id="non-ASCII Latin-1"),
]


@pytest.mark.parametrize("value", INVALID)
def test_invalid_keys_are_a_400(client, value):
    before = document_count(client)
    response = client.post(
        "/v1/kb/documents", json={"text": f"never stored {uuid.uuid4()}"}, headers={"Idempotency-Key": value}
    )
    assert_error(response, 400)
    assert document_count(client) == before


def test_a_key_of_255_characters_is_valid(client):
    response = client.post("/v1/kb/uploads", json={"filename": "a.txt"}, headers=idem("k" * 255))
    assert response.status_code == 200, response.text


def test_two_headers_are_a_400(client):
    response = client.post(
        "/v1/kb/uploads", json={"filename": "a.txt"}, headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    )
    assert_error(response, 400)


def test_routes_outside_the_list_ignore_the_header(client):
    key = new_key()
    for _ in range(2):
        search = client.post("/v1/kb/search", json={"query": "invoices"}, headers=idem(key))
        assert search.status_code == 200 and REPLAYED not in search.headers
        with client.stream("POST", "/v1/kb/chat/stream", json={"query": "invoices?"}, headers=idem(key)) as stream:
            assert stream.status_code == 200 and REPLAYED not in stream.headers
            stream.read()
