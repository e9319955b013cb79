"""boto3 clients built once per process and configuration, never at import time.

A Lambda container keeps its clients across invocations; tests under moto's ``mock_aws`` get
fresh ones because nothing is built before the first call (and ``reset_clients`` drops the cache).

Endpoints: an explicit ``endpoint_url`` wins; otherwise ``AWS_ENDPOINT_URL_<SERVICE>`` and then
``AWS_ENDPOINT_URL`` (the variables boto3 ≥ 1.28 honours itself). They are resolved here, before
the cache, so a changed environment gets a new client instead of a stale cached one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ragline.errors import DependencyUnavailable

CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 15.0
MAX_ATTEMPTS = 4  # the first call and three retries, with standard-mode backoff and jitter

# Error codes that mean "try later", whatever their HTTP status (most throttling answers are 400).
TRANSIENT_ERROR_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "SlowDown",
        "TransactionConflictException",
        "TransactionInProgressException",
        "KMSThrottlingException",
    }
)


def resolve_endpoint_url(service: str, endpoint_url: str | None = None) -> str | None:
    if endpoint_url:
        return endpoint_url
    service_variable = f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}"
    return os.environ.get(service_variable) or os.environ.get("AWS_ENDPOINT_URL") or None


def resolve_region(region: str | None = None) -> str | None:
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def client_config(service: str, endpoint_url: str | None) -> Config:
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
    )
    if service == "s3":
        # SigV4 everywhere, presigned URLs included (botocore may still presign with SigV2).
        config = config.merge(Config(signature_version="s3v4"))
    if service == "s3" and endpoint_url:
        # Emulators on 127.0.0.1 cannot serve bucket-named hosts.
        config = config.merge(Config(s3={"addressing_style": "path"}))
    return config


def client(service: str, *, region: str | None = None, endpoint_url: str | None = None) -> Any:
    """The process-wide client for a service (typed ``Any``: boto3 clients are generated classes)."""
    return _cached_client(service, resolve_region(region), resolve_endpoint_url(service, endpoint_url))


class ServiceClient:
    """The client an adapter calls: the one it was given (tests), else the process-wide one for its
    service, region and endpoint, looked up on each use so a reset or a new environment applies."""

    def __init__(
        self, service: str, *, region: str | None = None, endpoint_url: str | None = None, given: Any = None
    ) -> None:
        self.service = service
        self.region = region
        self.endpoint_url = endpoint_url
        self.given = given

    def __call__(self) -> Any:
        return self.given or client(self.service, region=self.region, endpoint_url=self.endpoint_url)


def resource(service: str, *, region: str | None = None, endpoint_url: str | None = None) -> Any:
    """The process-wide boto3 resource for a service (same caching and endpoint rules as ``client``)."""
    return _cached_resource(service, resolve_region(region), resolve_endpoint_url(service, endpoint_url))


# One session for all clients: it loads service models and resolves credentials once. Building
# clients from a shared session is not thread-safe, hence the lock (clients themselves are).
_building = threading.Lock()


@lru_cache(maxsize=1)
def _session() -> boto3.session.Session:
    return boto3.session.Session()


# Every client built here (a resource's too), so their connections can be closed together.
_built: list[BaseClient] = []


@lru_cache(maxsize=32)
def _cached_client(service: str, region: str | None, endpoint_url: str | None) -> BaseClient:
    with _building:
        built = _session().client(
            service, region_name=region, endpoint_url=endpoint_url, config=client_config(service, endpoint_url)
        )
        _built.append(built)
        return built


@lru_cache(maxsize=32)
def _cached_resource(service: str, region: str | None, endpoint_url: str | None) -> Any:
    with _building:
        built = _session().resource(
            service, region_name=region, endpoint_url=endpoint_url, config=client_config(service, endpoint_url)
        )
        _built.append(built.meta.client)
        return built


def close_connections() -> None:
    """Close the pooled connections of every client built so far; each opens new ones on its next
    call. After a SnapStart restore, those sockets were opened on the snapshot's machine: reusing
    one could hang until the read timeout instead of failing fast."""
    with _building:
        for built in _built:
            built.close()


def reset_clients() -> None:
    """Forget the session and every cached client (for tests that change credentials or endpoints)."""
    with _building:
        _built.clear()
    _cached_client.cache_clear()
    _cached_resource.cache_clear()
    _session.cache_clear()


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def is_transient(exc: ClientError) -> bool:
    return http_status(exc) >= 500 or error_code(exc) in TRANSIENT_ERROR_CODES


@contextmanager
def unavailable_when_down(what: str) -> Iterator[None]:
    """Turn "unreachable, 5xx or throttled after botocore's retries" into DependencyUnavailable (503).

    Other client errors (bad request, missing permission, missing resource) are bugs or bad
    configuration and pass through unchanged.
    """
    try:
        yield
    except (BotoConnectionError, HTTPClientError) as exc:
        raise DependencyUnavailable(f"{what} is unreachable: {exc}", error="Dependency unavailable") from exc
    except ClientError as exc:
        if not is_transient(exc):
            raise
        raise DependencyUnavailable(
            f"{what} answered {http_status(exc)} {error_code(exc)}: {exc}", error="Dependency unavailable"
        ) from exc
