"""BlobStore contract: the filesystem store and the S3 store behave the same."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from ragline.adapters.aws import s3_blobs
from ragline.adapters.aws.clients import client, reset_clients
from ragline.adapters.aws.s3_blobs import S3BlobStore
from ragline.errors import NotFound
from ragline.ports import BlobStore


def test_put_then_get_returns_the_same_bytes(blob_store: BlobStore) -> None:
    data = bytes(range(256)) * 40 + "é ünïcode".encode()
    blob_store.put("t1/doc_1/v1/report.pdf", data)
    assert blob_store.get("t1/doc_1/v1/report.pdf") == data


def test_put_overwrites(blob_store: BlobStore) -> None:
    blob_store.put("t1/doc_1/v1/a.txt", b"first")
    blob_store.put("t1/doc_1/v1/a.txt", b"second")
    assert blob_store.get("t1/doc_1/v1/a.txt") == b"second"


def test_empty_blob_round_trips(blob_store: BlobStore) -> None:
    blob_store.put("t1/empty.txt", b"")
    assert blob_store.exists("t1/empty.txt")
    assert blob_store.get("t1/empty.txt") == b""


def test_get_of_a_missing_key_raises_not_found(blob_store: BlobStore) -> None:
    with pytest.raises(NotFound):
        blob_store.get("t1/nothing/here.txt")


def test_exists_tells_blobs_from_missing_keys_and_folders(blob_store: BlobStore) -> None:
    blob_store.put("t1/doc_1/v1/a.txt", b"x")
    assert blob_store.exists("t1/doc_1/v1/a.txt")
    assert not blob_store.exists("t1/doc_1/v1/b.txt")
    assert not blob_store.exists("t1/doc_1")  # a "folder" is not a blob


def test_delete_removes_and_tolerates_missing_keys(blob_store: BlobStore) -> None:
    blob_store.put("t1/doc_1/v1/a.txt", b"x")
    blob_store.delete("t1/doc_1/v1/a.txt")
    assert not blob_store.exists("t1/doc_1/v1/a.txt")
    blob_store.delete("t1/doc_1/v1/a.txt")  # again: no error
    with pytest.raises(NotFound):
        blob_store.get("t1/doc_1/v1/a.txt")


def test_delete_prefix_removes_everything_under_it_and_nothing_else(blob_store: BlobStore) -> None:
    doomed = ["t1/doc_1/v1/a.txt", "t1/doc_1/v1/b.txt", "t1/doc_1/v2/a.txt", "t1/doc_1/v2/deep/er/c.txt"]
    kept = ["t1/doc_10/v1/a.txt", "t1/doc_2/v1/a.txt", "t2/doc_1/v1/a.txt", "t1/doc_1.txt"]
    for key in doomed + kept:
        blob_store.put(key, key.encode())
    assert blob_store.delete_prefix("t1/doc_1/") == len(doomed)
    assert [key for key in doomed if blob_store.exists(key)] == []
    assert [blob_store.get(key) for key in kept] == [key.encode() for key in kept]
    assert blob_store.delete_prefix("t1/doc_1/") == 0


def test_delete_prefix_of_one_version_keeps_the_others(blob_store: BlobStore) -> None:
    blob_store.put("t1/doc_1/v1/a.txt", b"1")
    blob_store.put("t1/doc_1/v2/a.txt", b"2")
    assert blob_store.delete_prefix("t1/doc_1/v1/") == 1
    assert blob_store.get("t1/doc_1/v2/a.txt") == b"2"


def test_delete_prefix_needs_a_trailing_slash(blob_store: BlobStore) -> None:
    blob_store.put("t1/doc_1/a.txt", b"x")
    with pytest.raises(ValueError):
        blob_store.delete_prefix("t1/doc_1")
    assert blob_store.exists("t1/doc_1/a.txt")


@pytest.mark.parametrize("key", ["../outside.txt", "t1/../../outside.txt", "/etc/passwd"])
def test_keys_cannot_escape_the_store(blob_store: BlobStore, key: str) -> None:
    with pytest.raises(ValueError):
        blob_store.put(key, b"x")


# ---- S3 only --------------------------------------------------------------------------------------------
@pytest.fixture
def s3_store(aws: None) -> S3BlobStore:
    client("s3").create_bucket(Bucket="ragline-docs")
    return S3BlobStore("ragline-docs", prefix="originals/")


def test_s3_keys_live_under_the_store_prefix(s3_store: S3BlobStore) -> None:
    s3_store.put("t1/doc_1/v1/a.txt", b"x")
    listed = client("s3").list_objects_v2(Bucket="ragline-docs")["Contents"]
    assert [entry["Key"] for entry in listed] == ["originals/t1/doc_1/v1/a.txt"]


def test_s3_delete_prefix_pages_and_deletes_in_batches(s3_store: S3BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_blobs, "DELETE_BATCH", 3)  # 1000 in production; 3 keeps the test fast
    batches: list[int] = []
    delete_batch = s3_store._delete_batch
    monkeypatch.setattr(s3_store, "_delete_batch", lambda keys: (batches.append(len(keys)), delete_batch(keys)))
    for number in range(8):
        s3_store.put(f"t1/doc_1/v1/part-{number}", b"x")
    s3_store.put("t1/doc_2/v1/a.txt", b"kept")
    assert s3_store.delete_prefix("t1/doc_1/") == 8
    assert batches == [3, 3, 2]
    remaining = client("s3").list_objects_v2(Bucket="ragline-docs")["Contents"]
    assert [entry["Key"] for entry in remaining] == ["originals/t1/doc_2/v1/a.txt"]


def test_s3_presigned_put_signs_key_content_type_and_expiry(s3_store: S3BlobStore) -> None:
    url = s3_store.presign_put("t1/doc_1/v1/big.pdf", "application/pdf", 900)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path.endswith("/originals/t1/doc_1/v1/big.pdf")
    assert "ragline-docs" in parts.netloc + parts.path
    assert query["X-Amz-Expires"] == ["900"]
    assert "content-type" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Signature"][0]


def test_s3_presigned_put_accepts_the_upload(s3_store: S3BlobStore) -> None:
    requests = pytest.importorskip("requests")  # moto intercepts `requests` in-process
    url = s3_store.presign_put("t1/doc_1/v1/big.pdf", "application/pdf", 900)
    response = requests.put(url, data=b"%PDF-1.7 body", headers={"Content-Type": "application/pdf"}, timeout=10)
    assert response.status_code == 200
    assert s3_store.get("t1/doc_1/v1/big.pdf") == b"%PDF-1.7 body"


# ---- the client factory the S3 store (and every AWS adapter) builds its client with ---------------
@pytest.fixture
def no_endpoint_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    reset_clients()
    yield
    reset_clients()  # leave no client with these settings behind


def test_clients_are_built_once_per_service_region_and_endpoint(no_endpoint_settings: None) -> None:
    s3 = client("s3")
    assert client("s3") is s3
    assert client("s3", region="eu-west-1") is s3  # the same configuration, resolved
    assert client("s3", region="us-west-2") is not s3
    assert s3.meta.region_name == "eu-west-1"
    assert s3.meta.config.retries["mode"] == "standard"
    assert (s3.meta.config.connect_timeout, s3.meta.config.read_timeout) == (3.0, 15.0)
    reset_clients()
    assert client("s3") is not s3


def test_clients_honour_endpoint_variables_and_explicit_endpoints(
    no_endpoint_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", "http://127.0.0.1:5000")
    assert client("s3").meta.endpoint_url == "http://127.0.0.1:4566"
    assert client("s3").meta.config.s3["addressing_style"] == "path"  # emulators need path-style
    assert client("sns").meta.endpoint_url == "http://127.0.0.1:5000"
    assert client("s3", endpoint_url="http://localhost:9999").meta.endpoint_url == "http://localhost:9999"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert client("s3").meta.endpoint_url == "https://s3.eu-west-1.amazonaws.com"  # not the stale cached one
