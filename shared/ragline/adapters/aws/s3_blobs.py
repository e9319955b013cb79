"""The BlobStore port on S3: the AWS twin of FilesystemBlobStore.

Keys live under ``prefix`` in one bucket. Like the filesystem store, a key must stay inside the
store: absolute keys and empty, ``.`` or ``..`` segments are refused with ValueError (S3 would
store them literally where the filesystem resolves them; the filesystem store still accepts
``a/../b`` as ``b``, this one refuses it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from ragline.adapters.aws import clients
from ragline.errors import DependencyUnavailable, NotFound

DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes
MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
TRANSIENT_DELETE_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown"})


def check_key(key: str) -> None:
    if key.startswith("/") or any(segment in ("", ".", "..") for segment in key.split("/")):
        raise ValueError(f"blob key escapes the store: {key!r}")


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        prefix: str = "originals/",
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        if prefix and not prefix.endswith("/"):
            raise ValueError("the store's prefix must be empty or end with '/'")
        self.bucket = bucket
        self.prefix = prefix
        self._client = clients.ServiceClient("s3", region=region, endpoint_url=endpoint_url, given=client)

    @property
    def _s3(self) -> Any:
        return self._client()

    def _object_key(self, key: str) -> str:
        check_key(key)
        return self.prefix + key

    def put(self, key: str, data: bytes) -> None:
        object_key = self._object_key(key)
        with clients.unavailable_when_down("S3"):
            self._s3.put_object(Bucket=self.bucket, Key=object_key, Body=data)

    def get(self, key: str) -> bytes:
        object_key = self._object_key(key)
        with clients.unavailable_when_down("S3"):
            try:
                answer = self._s3.get_object(Bucket=self.bucket, Key=object_key)
            except ClientError as exc:
                if clients.error_code(exc) in MISSING_OBJECT_CODES:
                    raise NotFound(f"blob {key!r} does not exist") from exc
                raise
            return bytes(answer["Body"].read())

    def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        with clients.unavailable_when_down("S3"):
            self._s3.delete_object(Bucket=self.bucket, Key=object_key)  # S3 answers 204 for a missing key too

    def exists(self, key: str) -> bool:
        object_key = self._object_key(key)
        with clients.unavailable_when_down("S3"):
            try:
                self._s3.head_object(Bucket=self.bucket, Key=object_key)
            except ClientError as exc:
                if clients.error_code(exc) in MISSING_OBJECT_CODES:
                    return False
                raise
        return True

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise ValueError("a prefix must end with '/'")
        object_prefix = self._object_key(prefix.rstrip("/")) + "/"
        removed = 0
        with clients.unavailable_when_down("S3"):
            for batch in self._key_batches(object_prefix):
                self._delete_batch(batch)
                removed += len(batch)
        return removed

    def _key_batches(self, object_prefix: str) -> Iterator[list[str]]:
        """Keys under a prefix, 1000 at a time (a list page holds at most 1000 keys)."""
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(
            Bucket=self.bucket, Prefix=object_prefix, PaginationConfig={"PageSize": DELETE_BATCH}
        ):
            keys = [entry["Key"] for entry in page.get("Contents", [])]
            if keys:
                yield keys

    def _delete_batch(self, object_keys: list[str]) -> None:
        answer = self._s3.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in object_keys], "Quiet": True}
        )
        errors = answer.get("Errors", [])
        if not errors:
            return
        first = errors[0]
        message = (
            f"S3 did not delete {len(errors)} of {len(object_keys)} objects, "
            f"e.g. {first.get('Key')!r}: {first.get('Code')} {first.get('Message')}"
        )
        if all(error.get("Code") in TRANSIENT_DELETE_CODES for error in errors):
            raise DependencyUnavailable(message, error="Dependency unavailable")
        raise RuntimeError(message)  # e.g. AccessDenied: a deployment mistake, not an outage

    def presign_put(self, key: str, content_type: str, expires_in: int) -> str:
        """A URL a client can PUT the bytes of ``key`` to, with this Content-Type, for ``expires_in`` seconds."""
        if not 1 <= expires_in <= 7 * 24 * 3600:
            raise ValueError("a presigned URL lives between 1 second and 7 days")
        return str(
            self._s3.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": self._object_key(key), "ContentType": content_type},
                ExpiresIn=expires_in,
                HttpMethod="PUT",
            )
        )
