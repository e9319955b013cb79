"""Request bodies are bounded while they arrive: 413 before a big body is read whole (declared or
chunked), 408 for a client that stops sending midway, and the server's memory stays flat."""

from __future__ import annotations

import json
import socket
import time

import httpx
import psutil
import pytest

from tests.support import Server, ragline

JSON_LIMIT = 64 * 1024
MULTIPART_LIMIT = 512 * 1024
READ_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("limits-server")
    key = ragline("keys", "create", "--tenant", "t1", "--data-dir", str(data_dir)).strip()
    env = {
        "RAGLINE_MAX_JSON_BODY_BYTES": str(JSON_LIMIT),
        "RAGLINE_MAX_MULTIPART_BODY_BYTES": str(MULTIPART_LIMIT),
        "RAGLINE_BODY_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT),
    }
    running = Server(data_dir, env=env).start()
    running.key = key
    yield running
    running.stop()


def _raw_request(server: Server, head: str, body_parts: list[bytes], *, pause: float = 0.0) -> tuple[int, dict, float]:
    """Send a request by hand (headers, then body parts); return the status, the JSON body and the seconds
    from the end of the headers to the answer. Stops sending as soon as an answer arrives."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.encode())
        started = time.monotonic()
        sock.settimeout(0.05)
        answer = b""
        for part in body_parts:
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                pass
            if answer:
                break
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(pause)
        sock.settimeout(30)
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - started
        head_bytes, _, rest = answer.partition(b"\r\n\r\n")
        status = int(head_bytes.split(b" ")[1])
        headers = dict(line.split(": ", 1) for line in head_bytes.decode().split("\r\n")[1:])
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, json.loads(rest or b"{}"), elapsed


def _head(server: Server, path: str, headers: dict[str, str], method: str = "POST") -> str:
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", f"x-api-key: {server.key}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(server):
    head = _head(server, "/v1/kb/search", {"content-type": "application/json", "content-length": str(200 * 2**20)})
    status, body, elapsed = _raw_request(server, head, [b"{" for _ in range(20)], pause=0.05)
    assert status == 413
    assert body["code"] == 413 and "at most 65536 bytes" in body["message"]
    assert elapsed < 1.0  # answered on the headers, not after the body


def test_a_chunked_body_is_cut_off_at_the_limit_and_memory_stays_flat(server):
    process = psutil.Process(server.process.pid)
    before = process.memory_info().rss
    piece = b"x" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    parts = [b'b\r\n{"query": "\r\n'] + [chunk] * 3200  # 200 MiB unless the server answers first
    head = _head(server, "/v1/kb/search", {"content-type": "application/json", "transfer-encoding": "chunked"})
    status, body, _ = _raw_request(server, head, parts, pause=0.002)
    assert status == 413 and body["error"] == "Payload too large"
    assert process.memory_info().rss - before < 30 * 2**20
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_json_text_upload_over_the_limit_is_413(server):
    text = "word " * (JSON_LIMIT // 4)
    response = httpx.post(
        f"{server.url}/v1/kb/documents", json={"text": text, "title": "big"}, headers={"x-api-key": server.key}
    )
    assert response.status_code == 413
    assert set(response.json()) == {"error", "message", "code"}


def test_a_multipart_body_over_its_limit_is_413_and_a_smaller_one_is_accepted(server):
    headers = {"x-api-key": server.key}
    big = httpx.post(
        f"{server.url}/v1/kb/documents", files={"file": ("big.txt", b"a " * MULTIPART_LIMIT)}, headers=headers
    )
    assert big.status_code == 413
    small = httpx.post(f"{server.url}/v1/kb/documents", files={"file": ("ok.txt", b"fine text")}, headers=headers)
    assert small.status_code == 202


def test_a_client_that_stops_sending_is_cut_off(server):
    head = _head(server, "/v1/kb/search", {"content-type": "application/json", "content-length": "1000"})
    status, body, elapsed = _raw_request(server, head, [b'{"query": "slow'], pause=0)
    assert status == 408
    assert body == {
        "error": "Request timeout",
        "message": f"the request body did not arrive within {READ_TIMEOUT:g} s",
        "code": 408,
    }
    assert READ_TIMEOUT * 0.8 < elapsed < READ_TIMEOUT + 5


def test_bodies_within_the_limits_work_and_streams_outlive_the_read_timeout(server):
    headers = {"x-api-key": server.key}
    assert httpx.post(f"{server.url}/v1/kb/search", json={"query": "anything"}, headers=headers).status_code == 200
    # A stream is answered after its body: the read deadline no longer applies while it is sent.
    with httpx.stream(
        "POST", f"{server.url}/v1/kb/chat/stream", json={"query": "anything"}, headers=headers, timeout=30
    ) as stream:
        assert stream.status_code == 200
        time.sleep(READ_TIMEOUT * 1.5)
        assert "[DONE]" in stream.read().decode()
