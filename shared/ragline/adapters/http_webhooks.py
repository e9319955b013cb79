"""The webhook sender: the only code that makes HTTP requests to tenants' endpoints.

Every attempt checks its URL again (``check_target``, re-resolving the host) and then connects to the very
address it checked: the network backend below dials that address whatever host the URL names, while the
URL, the Host header, TLS SNI and certificate verification keep the hostname. A DNS answer that changes
between the check and the connection (rebinding) therefore cannot steer a delivery to an internal address.

One attempt is one POST on a fresh connection: no redirects (a 3xx is an answer, and a failure), no
proxies from the environment (a proxy would resolve the name itself), no cookies, at most ``timeout_seconds``
for connecting, sending and receiving together, and at most the first 1 KB of the response body read.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import httpcore
import httpx

from ragline.webhooks.models import AttemptOutcome
from ragline.webhooks.schedule import retry_after_seconds
from ragline.webhooks.targets import RefusedTarget, Resolver, SystemResolver, Target, check_target

# The log keeps the first 1 KB of a response body; no more is ever read off the network.
MAX_RESPONSE_BODY_BYTES = 1024
# Retry-After means something only on these (RFC 9110: 503; RFC 6585: 429).
RETRY_AFTER_STATUSES = frozenset({429, 503})
USER_AGENT = "Ragline-Webhooks/1.0"
# Error texts are logged per attempt and shown to the tenant: one short line.
MAX_ERROR_LENGTH = 200


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake ends by one deadline.

    httpcore's timeouts are per operation, so a receiver sending a byte every few seconds would hold a
    delivery forever; here the time left until the deadline bounds each operation instead.
    """

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None, expired: type[httpcore.TimeoutException]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise expired("the attempt's deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout=self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # Not the inner stream's write: it sends in a loop with a fresh timeout per send, which a receiver
        # that reads slowly could stretch without end.
        sock: socket.socket = self._inner.get_extra_info("socket")
        view = memoryview(buffer)
        while view:
            try:
                sock.settimeout(self._left(timeout, httpcore.WriteTimeout))
                sent = sock.send(view)
            except TimeoutError as exc:  # socket.timeout
                raise httpcore.WriteTimeout(str(exc)) from exc
            except OSError as exc:
                raise httpcore.WriteError(str(exc)) from exc
            view = view[sent:]

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname=server_hostname, timeout=self._left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Dials the checked address, whatever host httpcore asks for (the URL's, which it keeps for SNI and Host)."""

    def __init__(self, target: Target, deadline: float) -> None:
        self._target = target
        self._deadline = deadline
        self._sync = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the attempt's deadline passed")
        stream = self._sync.connect_tcp(
            self._target.addresses[0],
            self._target.port,
            timeout=left if timeout is None else min(timeout, left),
            local_address=local_address,
            socket_options=socket_options,
        )
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are never delivered over a unix socket")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def _connection_error(exc: httpcore.NetworkError | httpcore.ProtocolError) -> str:
    # httpcore wraps the socket's error as the first argument (its pool re-raises "from None").
    cause = exc.__cause__ or next((arg for arg in exc.args if isinstance(arg, BaseException)), None)
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return _short(f"TLS certificate verification failed: {cause.verify_message or cause}")
    if isinstance(cause, ssl.SSLError):
        return _short(f"TLS error: {cause.reason or cause}")
    if isinstance(exc, httpcore.RemoteProtocolError):
        return _short(f"bad response: {exc}")
    return _short(f"connection error: {exc or type(cause or exc).__name__}")


class HttpWebhookSender:
    """Sends webhook attempts; safe to share between threads (each send has its own connection)."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver | None = None,
        timeout_seconds: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self._allow_private = allow_private
        self._resolver = resolver if resolver is not None else SystemResolver()
        self._timeout = timeout_seconds
        # Built once: loading the CA bundle takes milliseconds, and an SSLContext may be shared by threads.
        self._ssl_context = ssl_context if ssl_context is not None else httpx.create_ssl_context()

    def send(self, url: str, headers: dict[str, str], body: bytes) -> AttemptOutcome:
        started = time.monotonic()

        def outcome(
            status: int | None = None, error: str | None = None, text: str = "", retry_after: float | None = None
        ) -> AttemptOutcome:
            latency_ms = round((time.monotonic() - started) * 1000, 3)
            return AttemptOutcome(status, error, latency_ms, text, retry_after)

        try:
            target = check_target(url, allow_private=self._allow_private, resolver=self._resolver)
            request = self._request(target, headers, body)
        except RefusedTarget as refused:
            return outcome(error=f"blocked: {refused.reason}")

        deadline = time.monotonic() + self._timeout
        pool = httpcore.ConnectionPool(
            ssl_context=self._ssl_context,
            max_connections=1,
            retries=0,
            network_backend=_PinnedBackend(target, deadline),
        )
        try:
            with pool:
                response = pool.handle_request(request)
                try:
                    status = response.status
                    text = self._read_start(response)
                finally:
                    response.close()
        except httpcore.TimeoutException:
            return outcome(error="timeout")
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            return outcome(error=_connection_error(exc))

        retry_after = None
        if status in RETRY_AFTER_STATUSES:
            value = next((v for k, v in response.headers if k.lower() == b"retry-after"), None)
            retry_after = retry_after_seconds(
                None if value is None else value.decode("latin-1"), datetime.now(timezone.utc)
            )
        return outcome(status, text=text, retry_after=retry_after)

    def _request(self, target: Target, headers: dict[str, str], body: bytes) -> httpcore.Request:
        try:
            prepared = httpx.Request("POST", target.url, headers={"user-agent": USER_AGENT, **headers}, content=body)
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise RefusedTarget(f"the URL is malformed: {exc}") from exc
        # Belt and braces: the client must read the URL's host as the guard did, or SNI and Host would
        # name another host than the one checked (the connection itself goes to the checked address anyway).
        if target.host.isascii() and prepared.url.host != target.host:
            raise RefusedTarget("the URL's host is read differently by the HTTP client")
        timeout = {"connect": self._timeout, "read": self._timeout, "write": self._timeout, "pool": self._timeout}
        return httpcore.Request(
            method=b"POST",
            url=httpcore.URL(
                scheme=prepared.url.raw_scheme,
                host=prepared.url.raw_host,
                port=prepared.url.port,
                target=prepared.url.raw_path,
            ),
            headers=prepared.headers.raw,
            content=body,
            extensions={"timeout": timeout},
        )

    @staticmethod
    def _read_start(response: httpcore.Response) -> str:
        """The first 1 KB of the body; the rest is never read (closing the connection drops it).

        The status is the receiver's answer: once it has arrived, a body cut short (deadline, reset) only
        shortens what is logged.
        """
        start = bytearray()
        try:
            for chunk in response.iter_stream():
                start += chunk
                if len(start) >= MAX_RESPONSE_BODY_BYTES:
                    break
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError):
            pass
        return bytes(start[:MAX_RESPONSE_BODY_BYTES]).decode("utf-8", errors="replace")
