"""HttpWebhookSender against real HTTP receivers on 127.0.0.1 run by these tests.

Each receiver is a real server (http.server in a thread, TLS for the certificate tests): what it saw is
what went over the wire. The rebinding tests bind 127.0.0.1 and 127.0.0.2 on the same port, so the
address a connection reaches shows which resolution it used.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ragline.adapters.http_webhooks import MAX_RESPONSE_BODY_BYTES, AttemptOutcome, HttpWebhookSender
from ragline.webhooks.signing import new_secret, webhook_headers
from ragline.webhooks.targets import RefusedTarget

SECRET = new_secret()
EVENT = {"id": "evt_1", "type": "document.indexed", "timestamp": "2026-03-01T12:00:00Z", "tenant_id": "t1"}
BODY = json.dumps({**EVENT, "data": {"document_id": "doc_1", "chunks": 3}}, separators=(",", ":")).encode()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    server_address: str


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    seen: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "/hook", *, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


# How a receiver answers: given the handler (to write raw bytes when it must) and what it read.
Answer = Callable[[BaseHTTPRequestHandler, Seen], None]

RELEASE = threading.Event()  # set at teardown, so handlers that hang give their threads back


def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
    def answer(handler: BaseHTTPRequestHandler, _seen: Seen) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        if status != 204:  # a 204 has no body, not even a length
            handler.send_header("content-length", str(len(body)))
        handler.end_headers()
        if status != 204:
            handler.wfile.write(body)

    return answer


def make_handler(receiver: Receiver, answer: Answer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            seen = Seen(
                method="POST",
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=self.rfile.read(length),
                server_address=self.connection.getsockname()[0],
            )
            receiver.seen.append(seen)
            self.close_connection = True  # one request per connection, as the sender makes
            try:
                answer(self, seen)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender hung up first: what these tests provoke

        def do_GET(self) -> None:
            self.do_POST()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[..., Receiver]]:
    servers: list[ThreadingHTTPServer] = []
    RELEASE.clear()

    def start(answer: Answer, *, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> Receiver:
        server = ThreadingHTTPServer((host, port), BaseHTTPRequestHandler)
        server.daemon_threads = True
        receiver = Receiver(server)
        server.RequestHandlerClass = make_handler(receiver, answer)
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: receiver.sni.append(name)  # type: ignore[assignment]
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return receiver

    yield start
    RELEASE.set()
    for server in servers:
        server.shutdown()
        server.server_close()


class SequenceResolver:
    """Answers each name from a list of answers, one per call, the last one repeating (DNS rebinding)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def resolve(self, host: str, port: int) -> list[str]:
        with self._lock:
            self.calls.append(host)
            sequence = self.answers.get(host)
            if sequence is None:
                raise RefusedTarget(f"cannot resolve host {host!r}")
            return sequence.pop(0) if len(sequence) > 1 else sequence[0]


def signed(body: bytes = BODY, msg_id: str = "evt_1") -> dict[str, str]:
    return webhook_headers([SECRET], msg_id, int(time.time()), body)


def sender(**kwargs: object) -> HttpWebhookSender:
    return HttpWebhookSender(**{"allow_private": True, "timeout_seconds": 5.0, **kwargs})  # type: ignore[arg-type]


def verifying(handler: BaseHTTPRequestHandler, seen: Seen) -> None:
    try:
        Webhook(SECRET).verify(seen.body, seen.headers)
    except WebhookVerificationError as exc:
        reply(400, str(exc).encode())(handler, seen)
    else:
        reply(204)(handler, seen)


def test_a_delivery_verifies_with_the_standardwebhooks_library(serve: Callable[..., Receiver]) -> None:
    receiver = serve(verifying)
    outcome = sender().send(receiver.url("/in?tenant=t1"), signed(), BODY)
    assert outcome == AttemptOutcome(204, None, outcome.latency_ms, "", None)
    assert outcome.succeeded and not outcome.gone
    assert 0 < outcome.latency_ms < 5000
    [seen] = receiver.seen
    assert (seen.method, seen.path, seen.body) == ("POST", "/in?tenant=t1", BODY)
    assert seen.headers["webhook-id"] == "evt_1"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert seen.headers["content-length"] == str(len(BODY))
    assert "cookie" not in seen.headers


def test_a_tampered_delivery_is_refused_by_the_verifying_receiver(serve: Callable[..., Receiver]) -> None:
    receiver = serve(verifying)
    outcome = sender().send(receiver.url(), signed(), BODY.replace(b"doc_1", b"doc_2"))
    assert outcome.status_code == 400 and not outcome.succeeded
    assert "No matching signature" in outcome.response_body


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_success(serve: Callable[..., Receiver], status: int) -> None:
    outcome = sender().send(serve(reply(status, b"ok")).url(), signed(), BODY)
    assert outcome.succeeded and outcome.status_code == status and outcome.error is None


@pytest.mark.parametrize("status", [400, 404, 408, 500, 502])
def test_other_statuses_are_failures_with_their_body(serve: Callable[..., Receiver], status: int) -> None:
    outcome = sender().send(serve(reply(status, "nope ✗".encode())).url(), signed(), BODY)
    assert not outcome.succeeded and not outcome.gone
    assert (outcome.status_code, outcome.error, outcome.response_body) == (status, None, "nope ✗")
    assert outcome.retry_after is None


def test_410_is_gone(serve: Callable[..., Receiver]) -> None:
    outcome = sender().send(serve(reply(410, b"endpoint removed")).url(), signed(), BODY)
    assert outcome.gone and not outcome.succeeded
    assert (outcome.status_code, outcome.response_body) == (410, "endpoint removed")


def test_a_redirect_is_not_followed(serve: Callable[..., Receiver]) -> None:
    elsewhere = serve(reply(200))
    redirecting = serve(reply(302, b"", {"location": elsewhere.url("/stolen")}))
    outcome = sender().send(redirecting.url(), signed(), BODY)
    assert outcome.status_code == 302 and not outcome.succeeded and outcome.error is None
    assert len(redirecting.seen) == 1
    time.sleep(0.2)
    assert elsewhere.seen == []


def hang(handler: BaseHTTPRequestHandler, seen: Seen) -> None:
    RELEASE.wait(30)


def test_a_receiver_that_hangs_times_out(serve: Callable[..., Receiver]) -> None:
    receiver = serve(hang)
    started = time.monotonic()
    outcome = sender(timeout_seconds=1.0).send(receiver.url(), signed(), BODY)
    elapsed = time.monotonic() - started
    assert (outcome.status_code, outcome.error) == (None, "timeout")
    assert 0.9 <= elapsed < 2.0, elapsed
    assert 900 <= outcome.latency_ms < 2000
    assert len(receiver.seen) == 1  # it did arrive; the receiver never answered


def trickle(data: bytes, every: float) -> Answer:
    def answer(handler: BaseHTTPRequestHandler, _seen: Seen) -> None:
        for byte in data:
            if RELEASE.wait(every):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()

    return answer


def test_a_receiver_trickling_its_status_line_still_times_out(serve: Callable[..., Receiver]) -> None:
    # A byte every 0.1 s: each read succeeds well within any per-read timeout; only a deadline ends it.
    receiver = serve(trickle(b"HTTP/1.1 200 OK\r\n" + b"x-padding: " + b"a" * 200 + b"\r\n\r\n", 0.1))
    started = time.monotonic()
    outcome = sender(timeout_seconds=1.0).send(receiver.url(), signed(), BODY)
    elapsed = time.monotonic() - started
    assert (outcome.status_code, outcome.error) == (None, "timeout")
    assert 0.9 <= elapsed < 2.0, elapsed


def test_a_receiver_trickling_its_body_is_cut_at_the_deadline_and_its_status_kept(
    serve: Callable[..., Receiver],
) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n"
    receiver = serve(lambda handler, seen: (handler.wfile.write(head), trickle(b"b" * 500, 0.1)(handler, seen)))
    started = time.monotonic()
    outcome = sender(timeout_seconds=1.0).send(receiver.url(), signed(), BODY)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.0, elapsed
    assert outcome.status_code == 200 and outcome.succeeded and outcome.error is None
    assert 0 < len(outcome.response_body) < 20 and set(outcome.response_body) == {"b"}


def test_a_receiver_that_never_reads_the_body_times_out_while_sending() -> None:
    # Listening, never accepting: the kernel takes the connection and a few buffers, then sending blocks.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        body = b"x" * (32 * 1024 * 1024)
        started = time.monotonic()
        outcome = sender(timeout_seconds=1.0).send(f"http://127.0.0.1:{port}/hook", signed(body), body)
        elapsed = time.monotonic() - started
    assert (outcome.status_code, outcome.error) == (None, "timeout")
    assert 0.9 <= elapsed < 2.0, elapsed


def hang_up(handler: BaseHTTPRequestHandler, _seen: Seen) -> None:
    handler.connection.shutdown(socket.SHUT_RDWR)


def garbage(handler: BaseHTTPRequestHandler, _seen: Seen) -> None:
    handler.wfile.write(b"SMTP ready\r\n\r\n")


@pytest.mark.parametrize(
    "answer, error",
    [
        (hang_up, "bad response: Server disconnected without sending a response."),
        (garbage, "bad response: "),
    ],
)
def test_a_receiver_that_does_not_speak_http_is_a_short_error(
    serve: Callable[..., Receiver], answer: Answer, error: str
) -> None:
    outcome = sender().send(serve(answer).url(), signed(), BODY)
    assert outcome.status_code is None and not outcome.succeeded
    assert outcome.error is not None and outcome.error.startswith(error) and len(outcome.error) <= 200


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def test_nothing_listening_is_connection_refused() -> None:
    started = time.monotonic()
    outcome = sender().send(f"http://127.0.0.1:{free_port()}/hook", signed(), BODY)
    assert (outcome.status_code, outcome.error, outcome.response_body) == (None, "connection refused", "")
    assert not outcome.succeeded and time.monotonic() - started < 1.0


def test_a_huge_response_body_is_not_read_whole(serve: Callable[..., Receiver]) -> None:
    huge = ("é" * 2_500_000).encode()  # 5 MB; a 2-byte character straddles the 1 KB cut
    receiver = serve(reply(500, huge))
    outcome = sender().send(receiver.url(), signed(), BODY)
    assert outcome.status_code == 500
    assert len(outcome.response_body.encode()) <= MAX_RESPONSE_BODY_BYTES + 2
    assert outcome.response_body == "é" * 512
    assert outcome.latency_ms < 2000


def test_a_body_cut_mid_character_is_decoded_with_replacement(serve: Callable[..., Receiver]) -> None:
    outcome = sender().send(serve(reply(200, b"a" + "é".encode() * 600)).url(), signed(), BODY)
    assert outcome.response_body == "a" + "é" * 511 + "\ufffd"


@pytest.mark.parametrize(
    "status, value, expected",
    [
        (429, "120", 120.0),
        (503, "7", 7.0),
        (429, "999999", 86400.0),
        (503, "+++", None),
        (500, "120", None),  # honoured only on 429 and 503
        (200, "120", None),
    ],
)
def test_retry_after_is_read_on_429_and_503(
    serve: Callable[..., Receiver], status: int, value: str, expected: float | None
) -> None:
    outcome = sender().send(serve(reply(status, b"slow down", {"retry-after": value})).url(), signed(), BODY)
    assert outcome.status_code == status
    assert outcome.retry_after == expected


def test_retry_after_as_an_http_date(serve: Callable[..., Receiver]) -> None:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=90)
    header = format_datetime(when, usegmt=True)
    outcome = sender().send(serve(reply(503, b"", {"Retry-After": header})).url(), signed(), BODY)
    assert outcome.retry_after is not None and 85 <= outcome.retry_after <= 90


def test_private_targets_are_blocked_unless_allowed(serve: Callable[..., Receiver]) -> None:
    receiver = serve(verifying)
    strict = HttpWebhookSender(allow_private=False, timeout_seconds=5.0)
    refused = strict.send(receiver.url(scheme="https"), signed(), BODY)
    assert refused.error == "blocked: 127.0.0.1 is a loopback address"
    assert (refused.status_code, refused.response_body, refused.succeeded) == (None, "", False)
    assert strict.send(receiver.url(), signed(), BODY).error == "blocked: the URL must use https"
    mapped = strict.send(f"https://[::ffff:127.0.0.1]:{receiver.port}/hook", signed(), BODY)
    assert mapped.error is not None and mapped.error.startswith("blocked: ") and "loopback" in mapped.error
    time.sleep(0.2)
    assert receiver.seen == []


def test_the_metadata_address_is_blocked_even_when_private_targets_are_allowed() -> None:
    resolver = SequenceResolver({"metadata.test": [["169.254.169.254"]]})
    outcome = sender(resolver=resolver).send("http://metadata.test/latest/meta-data/", signed(), BODY)
    assert outcome.error == "blocked: host 'metadata.test' resolves to 169.254.169.254, a cloud metadata address"
    outcome = sender().send("http://169.254.169.254/latest/meta-data/", signed(), BODY)
    assert outcome.error == "blocked: 169.254.169.254 is a cloud metadata address"


def test_the_url_is_checked_again_at_every_attempt(serve: Callable[..., Receiver]) -> None:
    receiver = serve(reply(204))
    resolver = SequenceResolver({"hooks.test": [["127.0.0.1"], ["169.254.169.254"]]})
    webhooks = sender(resolver=resolver)
    url = receiver.url(host="hooks.test")
    assert webhooks.send(url, signed(), BODY).succeeded
    second = webhooks.send(url, signed(), BODY)
    assert second.error == "blocked: host 'hooks.test' resolves to 169.254.169.254, a cloud metadata address"
    assert resolver.calls == ["hooks.test", "hooks.test"]
    assert len(receiver.seen) == 1


def loopback_two_available() -> bool:
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not loopback_two_available(), reason="127.0.0.2 cannot be bound here")
def test_rebinding_cannot_steer_the_connection_away_from_the_checked_address(
    serve: Callable[..., Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = serve(reply(200, b"checked"))
    trap = serve(reply(200, b"trap"), host="127.0.0.2", port=checked.port)
    # Any resolution besides the resolver seam's would reach the trap.
    real_getaddrinfo = socket.getaddrinfo

    def rebound(host: object, *args: object, **kwargs: object) -> object:
        if host == "rebind.test":
            return real_getaddrinfo("127.0.0.2", *args, **kwargs)  # type: ignore[arg-type]
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    resolver = SequenceResolver({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    webhooks = sender(resolver=resolver)
    url = checked.url(host="rebind.test")

    first = webhooks.send(url, signed(), BODY)
    assert (first.status_code, first.response_body) == (200, "checked")
    assert [seen.server_address for seen in checked.seen] == ["127.0.0.1"]
    assert checked.seen[0].headers["host"] == f"rebind.test:{checked.port}"  # the URL keeps its hostname
    assert trap.seen == []

    # The next attempt checks again and goes where that check said: the connection follows the check.
    second = webhooks.send(url, signed(), BODY)
    assert (second.status_code, second.response_body) == (200, "trap")
    assert [seen.server_address for seen in trap.seen] == ["127.0.0.2"]
    assert resolver.calls == ["rebind.test", "rebind.test"]
    assert len(checked.seen) == 1


def test_concurrent_sends_from_ten_threads_all_succeed(serve: Callable[..., Receiver]) -> None:
    receiver = serve(verifying)
    webhooks = sender()
    start = threading.Barrier(10)

    def deliver(n: int) -> list[AttemptOutcome]:
        start.wait(5)
        body = json.dumps({**EVENT, "id": f"evt_{n}", "data": {"n": n}}).encode()
        return [webhooks.send(receiver.url(f"/t{n}"), signed(body, f"evt_{n}"), body) for _ in range(5)]

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = [outcome for batch in pool.map(deliver, range(10)) for outcome in batch]
    assert len(outcomes) == 50
    assert all(outcome.status_code == 204 for outcome in outcomes), {o.status_code or o.error for o in outcomes}
    assert sorted(seen.headers["webhook-id"] for seen in receiver.seen) == sorted(
        f"evt_{n}" for n in range(10) for _ in range(5)
    )


# TLS: the connection is pinned to an address, yet SNI and certificate verification keep the hostname.


@dataclass(frozen=True)
class Pki:
    ca_pem: bytes
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ragline test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("pki")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Pki(ca.public_bytes(serialization.Encoding.PEM), cert_file, key_file)


def tls_receiver(serve: Callable[..., Receiver], pki: Pki) -> Receiver:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    return serve(verifying, tls=context)


def trusting(pki: Pki, names: dict[str, list[list[str]]]) -> HttpWebhookSender:
    client = ssl.create_default_context(cadata=pki.ca_pem.decode())
    return sender(resolver=SequenceResolver(names), ssl_context=client)


def test_tls_to_a_pinned_address_keeps_the_hostname_for_sni_and_verification(
    serve: Callable[..., Receiver], pki: Pki
) -> None:
    receiver = tls_receiver(serve, pki)
    webhooks = trusting(pki, {"hooks.test": [["127.0.0.1"]]})
    outcome = webhooks.send(receiver.url(host="hooks.test", scheme="https"), signed(), BODY)
    assert (outcome.status_code, outcome.error) == (204, None)
    assert receiver.sni == ["hooks.test"]
    assert receiver.seen[0].headers["host"] == f"hooks.test:{receiver.port}"


def test_tls_to_the_same_address_under_another_name_fails_verification(
    serve: Callable[..., Receiver], pki: Pki
) -> None:
    receiver = tls_receiver(serve, pki)
    webhooks = trusting(pki, {"other.test": [["127.0.0.1"]]})
    outcome = webhooks.send(receiver.url(host="other.test", scheme="https"), signed(), BODY)
    assert outcome.status_code is None
    assert outcome.error is not None and outcome.error.startswith("TLS certificate verification failed")
    assert "other.test" in outcome.error
    assert receiver.seen == []


def test_tls_with_the_default_trust_store_refuses_a_private_ca(serve: Callable[..., Receiver], pki: Pki) -> None:
    receiver = tls_receiver(serve, pki)
    webhooks = sender(resolver=SequenceResolver({"hooks.test": [["127.0.0.1"]]}))
    outcome = webhooks.send(receiver.url(host="hooks.test", scheme="https"), signed(), BODY)
    assert outcome.error is not None and outcome.error.startswith("TLS certificate verification failed")
    assert receiver.seen == []
