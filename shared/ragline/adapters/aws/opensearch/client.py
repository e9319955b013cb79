"""How requests reach the cluster: one client per configuration and process, and the retries.

The client never retries by itself; ``Retrying`` does, with backoff, for 429, 5xx and connection
failures, and turns a cluster that stays down into ``DependencyUnavailable``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError

from ragline.adapters.aws.opensearch.settings import AuthMode, OpenSearchConfigError, OpenSearchSettings
from ragline.errors import DependencyUnavailable

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
T = TypeVar("T")


def _sigv4_auth(region: str, service: str) -> Any:
    import boto3  # only SigV4 deployments need boto3 (and pay for its import)
    from opensearchpy import Urllib3AWSV4SignerAuth

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise OpenSearchConfigError("SigV4 auth found no AWS credentials (environment, profile or role)")
    return Urllib3AWSV4SignerAuth(credentials, region, service)


@lru_cache(maxsize=8)
def opensearch_client(
    url: str,
    auth_mode: AuthMode,
    region: str | None,
    verify_certs: bool,
    timeout: float,
    username: str | None = None,
    password: str | None = None,
) -> OpenSearch:
    """One client per configuration and process (a Lambda container keeps it across invocations).

    The client itself never retries: the adapter does, with backoff, for 429 and 5xx answers.
    """
    http_auth: Any = None
    if auth_mode == "basic" and username is not None:
        http_auth = (username, password or "")
    elif auth_mode in ("sigv4-es", "sigv4-aoss"):
        if region is None:
            raise OpenSearchConfigError("SigV4 needs a region")
        http_auth = _sigv4_auth(region, "aoss" if auth_mode == "sigv4-aoss" else "es")
    return OpenSearch(
        hosts=[url],  # user:password in the URL become basic auth here
        http_auth=http_auth,
        verify_certs=verify_certs,
        timeout=timeout,
        max_retries=0,
        retry_on_status=(),
        retry_on_timeout=False,
    )


def client_for(settings: OpenSearchSettings) -> OpenSearch:
    password = settings.password.get_secret_value() if settings.password else None
    return opensearch_client(
        settings.url,
        settings.resolved_auth_mode,
        settings.region,
        settings.verify_certs,
        settings.timeout_seconds,
        settings.username,
        password,
    )


class Retrying:
    """Sends requests, retrying 429, 5xx and connection failures with exponential backoff."""

    def __init__(
        self,
        settings: OpenSearchSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.attempts = settings.retry_attempts
        self._initial_delay = settings.retry_initial_delay_seconds
        self._max_delay = settings.retry_max_delay_seconds
        self._sleep = sleep
        self._jitter = jitter

    def backoff(self, attempt: int) -> None:
        """Equal jitter: half of the delay is fixed, half random."""
        base = min(self._max_delay, self._initial_delay * 2**attempt)
        self._sleep(base / 2 + base / 2 * self._jitter())

    def call(self, what: str, request: Callable[[], T]) -> T:
        for attempt in range(self.attempts):
            try:
                return request()
            except OpenSearchConnectionError as exc:
                failure: TransportError = exc
            except TransportError as exc:
                if exc.status_code not in RETRYABLE_STATUSES:
                    raise
                failure = exc
            log.warning("OpenSearch %s failed (attempt %d of %d): %s", what, attempt + 1, self.attempts, failure)
            if attempt + 1 < self.attempts:
                self.backoff(attempt)
        raise DependencyUnavailable(
            f"OpenSearch {what} failed {self.attempts} times: {failure}", error="Search index unavailable"
        ) from failure
