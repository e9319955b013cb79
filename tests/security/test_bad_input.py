"""Inputs that were 500s (or left files behind) are clear 4xx answers, and nothing is stored for them."""

from __future__ import annotations

import json

import httpx
import pytest

from ragline.errors import BadRequest, PayloadTooLarge
from ragline.ingest.metadata import MetadataLimits, check_metadata
from tests.support import Server, ragline

LIMITS = MetadataLimits(max_bytes=16 * 1024, max_keys=64, max_depth=5)


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"next": value}
    return value


@pytest.mark.parametrize(
    ("metadata", "error", "message"),
    [
        (_nested(6), BadRequest, "at most 5 levels"),
        ({"a": [[[[["deep"]]]]]}, BadRequest, "at most 5 levels"),
        ({f"k{i}": i for i in range(65)}, BadRequest, "at most 64 keys"),
        ({"a": {f"k{i}": i for i in range(64)}}, BadRequest, "at most 64 keys"),
        ({"big": "x" * 17_000}, PayloadTooLarge, "limit is 16384"),
        ({"s": "\ud800"}, BadRequest, "lone surrogate"),
        ({"n": float("nan")}, BadRequest, "finite"),
        ({"tag_ids": "one"}, BadRequest, "list of strings"),
        ([1, 2], BadRequest, "JSON object"),
    ],
)
def test_metadata_over_a_limit_is_refused(metadata, error, message):
    with pytest.raises(error, match=message):
        check_metadata(metadata, LIMITS)


@pytest.mark.parametrize(
    "metadata",
    [{}, _nested(5), {f"k{i}": i for i in range(64)}, {"big": "é" * 5000}, {"tag_ids": ["a", "b"]}],
)
def test_metadata_within_the_limits_is_kept(metadata):
    assert check_metadata(metadata, LIMITS) == metadata


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("bad-input-server")
    key = ragline("keys", "create", "--tenant", "t1", "--data-dir", str(data_dir)).strip()
    running = Server(data_dir).start()
    running.client = httpx.Client(base_url=running.url, headers={"x-api-key": key}, timeout=30)
    yield running
    running.client.close()
    running.stop()


def _originals(server: Server) -> list:
    blobs = server.data_dir / "blobs"
    return [path for path in blobs.rglob("*") if path.is_file()] if blobs.exists() else []


def _assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "message", "code"}


def test_a_non_ascii_upload_token_without_a_key_is_403_not_500(server):
    response = httpx.put(f"{server.url}/v1/kb/uploads/x?token=a.%C3%A9", content=b"data")
    _assert_error(response, 403)


@pytest.mark.parametrize(
    "raw_metadata",
    [
        "[" * 1000 + "]" * 1000,
        '{"a": ' * 1000 + "1" + "}" * 1000,
        '{"s": "\\ud800"}',
        json.dumps({f"k{i}": i for i in range(100)}),
    ],
    ids=["array-1000-deep", "object-1000-deep", "lone-surrogate", "too-many-keys"],
)
def test_bad_multipart_metadata_is_400_and_stores_nothing(server, raw_metadata):
    before = _originals(server)
    response = server.client.post(
        "/v1/kb/documents", files={"file": ("a.txt", b"some text")}, data={"metadata": raw_metadata}
    )
    _assert_error(response, 400)
    assert _originals(server) == before
    assert server.client.get("/v1/kb/documents").json()["documents"] == []


def test_bad_json_metadata_is_refused_before_anything_is_stored(server):
    for metadata in (_nested(10), {"big": "x" * 20_000}):
        response = server.client.post("/v1/kb/documents", json={"text": "hello", "metadata": metadata})
        assert response.status_code in (400, 413), response.text
    presign = server.client.post("/v1/kb/uploads", json={"filename": "a.txt", "metadata": _nested(10)})
    _assert_error(presign, 400)
    assert server.client.get("/v1/kb/documents").json()["documents"] == []
    assert _originals(server) == []


def test_a_second_x_api_key_header_is_400_not_ignored(server):
    key = server.client.headers["x-api-key"]
    for second in (key, "rl_someone-elses-key"):
        response = httpx.get(f"{server.url}/v1/kb/documents", headers=[("x-api-key", key), ("x-api-key", second)])
        _assert_error(response, 400)
    assert server.client.get("/v1/kb/documents").status_code == 200


def test_presigned_upload_urls_use_the_configured_url_not_the_host_header(server):
    response = server.client.post(
        "/v1/kb/uploads", json={"filename": "a.txt"}, headers={"host": "attacker.example:666"}
    )
    assert response.status_code == 200, response.text
    url = response.json()["upload_url"]
    assert url.startswith(f"{server.url}/v1/kb/uploads/"), url
    assert "attacker" not in url
    upload = httpx.put(url, content=b"Presigned bytes arrive at the server that issued the URL.")
    assert upload.status_code == 202, upload.text
