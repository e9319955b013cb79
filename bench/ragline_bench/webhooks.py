"""`ragline bench webhooks`: how long an event takes to reach every webhook endpoint, locally.

In process, with the real components: a Container on a temporary data directory (private targets
allowed), `--endpoints` endpoints registered through WebhookService for one tenant (events ``*``),
each pointing at its own HTTP receiver on 127.0.0.1 (a ThreadingHTTPServer that notes when each
request arrives and answers 204), and the webhook dispatcher started as `ragline serve` starts it
(ragline.background). `--events` ``document.indexed``-like events are published through
``container.events.publish``; for every (event, endpoint) the latency is event published → request
received (``time.monotonic``: CLOCK_MONOTONIC, one clock for every process of the machine). The ``webhook-id`` header (the event id)
and the receiver tell each delivery apart, so duplicates and losses are counted, not assumed away.

Two scenarios, each on a fresh data directory: 1. the healthy endpoints only; 2. the same plus one
endpoint that accepts connections and never answers (each attempt ends at the sender's timeout,
`--hang-timeout`, 15 s by default as RAGLINE_WEBHOOK_TIMEOUT_SECONDS), of which only the healthy
endpoints' deliveries are measured. Each runs with two publishing patterns: a burst (all events
back to back) and paced at `--rate` events/s.

The receivers run in a child process (`python -m ragline_bench.webhooks --receivers …`), as real
receivers would be elsewhere: in this process they would take about a third of the GIL (a thread per
request, http.server's parsing) from the dispatcher being measured. `--receivers-in-process` runs them
here instead; the machine's cores are shared either way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ragline_bench.common import (
    BenchError,
    Report,
    at_most,
    bench_data_dir,
    make_table,
    percentile,
    progress_bar,
)

if TYPE_CHECKING:
    from rich.console import Console

TENANT = "bench-webhooks"
TARGET_P99_MS = 1000.0
# "Unchanged within noise": the healthy endpoints' p99 with a hanging endpoint beside them, at most
# this many times their p99 without it (this 2-core machine's run-to-run spread is ~±20 %).
TARGET_HANG_RATIO = 1.5


# ---- the receivers ---------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        arrived = time.monotonic()
        if self.server.hang:
            # Accepted and read, never answered: the sender waits out its timeout.
            self.server.release.wait()
            self.close_connection = True
            return
        self.server.record(self.headers.get("webhook-id") or "", body, arrived)
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass


class Receiver(ThreadingHTTPServer):
    """One endpoint's receiver on 127.0.0.1: (webhook-id, event sequence number, arrival time) per request."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, *, hang: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hang = hang
        self.release = threading.Event()
        self.arrivals: list[tuple[str, int, float]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def record(self, webhook_id: str, body: bytes, arrived: float) -> None:
        try:
            seq = int(json.loads(body)["data"]["seq"])
        except (ValueError, KeyError, TypeError):
            seq = -1
        with self._lock:
            self.arrivals.append((webhook_id, seq, arrived))

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class Receivers(Protocol):
    """The healthy receivers (then the hanging one, if any): their URLs, how many requests they have had,
    and at the end every arrival as (receiver number, webhook-id, event sequence number, time)."""

    urls: list[str]

    def count(self) -> int: ...
    def release(self) -> None: ...
    def close(self) -> list[tuple[int, str, int, float]]: ...


class LocalReceivers:
    """Receivers on threads of this process."""

    def __init__(self, healthy: int, hang: bool) -> None:
        self.healthy = [Receiver().start() for _ in range(healthy)]
        self.hanging = [Receiver(hang=True).start()] if hang else []
        self.urls = [r.url for r in [*self.healthy, *self.hanging]]

    def count(self) -> int:
        return sum(r.count() for r in self.healthy)

    def release(self) -> None:
        for receiver in self.hanging:
            receiver.release.set()  # the senders stuck on it get their answer (a closed connection)

    def close(self) -> list[tuple[int, str, int, float]]:
        for receiver in [*self.healthy, *self.hanging]:
            receiver.close()
        return [(n, *a) for n, r in enumerate(self.healthy) for a in r.arrivals]


class ChildReceivers:
    """Receivers in a child process, driven over its stdin/stdout one line per command."""

    def __init__(self, healthy: int, hang: bool) -> None:
        command = [sys.executable, "-m", "ragline_bench.webhooks", "--receivers", str(healthy)]
        self.process = subprocess.Popen(
            [*command, *(["--hang"] if hang else [])], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._lock = threading.Lock()
        try:
            self.urls = json.loads(self._readline())
        except (ValueError, BenchError):
            self.process.kill()
            raise BenchError(f"the receivers' process did not start (exit code {self.process.wait()})") from None

    def _readline(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise BenchError("the receivers' process ended early")
        return line

    def _ask(self, command: str) -> str:
        assert self.process.stdin is not None
        with self._lock:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
            return self._readline()

    def count(self) -> int:
        return int(self._ask("count"))

    def release(self) -> None:
        self._ask("release")

    def close(self) -> list[tuple[int, str, int, float]]:
        try:
            arrivals = json.loads(self._ask("close"))
        finally:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return [tuple(a) for a in arrivals]  # type: ignore[misc]


def _receivers_main(argv: list[str]) -> int:
    """The child of ChildReceivers: prints the URLs, then answers count / release / close on stdin."""
    parser = argparse.ArgumentParser(prog="python -m ragline_bench.webhooks")
    parser.add_argument("--receivers", type=int, required=True)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args(argv)
    receivers = LocalReceivers(args.receivers, args.hang)
    print(json.dumps(receivers.urls), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "count":
            print(receivers.count(), flush=True)
        elif command == "release":
            receivers.release()
            print("ok", flush=True)
        elif command == "close":
            print(json.dumps(receivers.close()), flush=True)
            return 0
    receivers.close()
    return 0


# ---- one scenario ----------------------------------------------------------------------------------
@contextmanager
def _world(
    data_dir: Path, endpoints: int, hang: bool, timeout: float, in_process: bool
) -> Iterator[tuple[Any, Receivers]]:
    """A Container with its endpoints registered and the dispatcher running; the receivers."""
    from ragline.background import _webhook_dispatcher
    from ragline.config import Settings
    from ragline.container import Container

    settings = Settings(
        data_dir=data_dir, backend="local", webhooks_allow_private_targets=True, webhook_timeout_seconds=timeout
    )
    container = Container(settings)
    receivers: Receivers = LocalReceivers(endpoints, hang) if in_process else ChildReceivers(endpoints, hang)
    try:
        for number, url in enumerate(receivers.urls):
            label = "hangs" if number >= endpoints else f"receiver {number}"
            container.webhooks.create(TENANT, url, ["*"], f"bench: {label}", True)
        dispatcher = _webhook_dispatcher(container)
        dispatcher.start()
        try:
            yield container, receivers
        finally:
            receivers.release()
            dispatcher.stop()
    except BaseException:
        receivers.close()
        raise


def run_scenario(
    data_dir: Path,
    *,
    events: int,
    endpoints: int,
    rate: float | None,
    hang: bool,
    timeout: float,
    console: Console | None = None,
    label: str = "",
    stall_seconds: float = 30.0,
    receivers_in_process: bool = False,
) -> dict[str, Any]:
    """Publish `events` events (back to back when `rate` is None, else `rate` per second) and wait for the
    healthy receivers to have every delivery (or for no new one to arrive in `stall_seconds`)."""
    expected = events * endpoints
    published: list[float] = [0.0] * events
    with _world(data_dir, endpoints, hang, timeout, receivers_in_process) as (container, receivers):
        started = time.monotonic()
        for seq in range(events):
            if rate:
                pause = started + seq / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            published[seq] = time.monotonic()
            data = {"document_id": f"doc_bench{seq:06d}", "chunk_count": 12, "page_count": 3, "version": 1, "seq": seq}
            container.events.publish("document.indexed", TENANT, data)
        publish_s = time.monotonic() - started

        last_count, last_change = -1, time.monotonic()
        with _maybe_progress(console, label, expected) as advance:
            while True:
                count = receivers.count()
                advance(count)
                if count >= expected:
                    break
                if count != last_count:
                    last_count, last_change = count, time.monotonic()
                elif time.monotonic() - last_change > stall_seconds:
                    break
                time.sleep(0.05)
        time.sleep(0.2)  # a repeat of a delivery would arrive just after it: give it the chance
    arrivals = receivers.close()
    return summarize(arrivals, published, events, endpoints, rate, publish_s, hang)


@contextmanager
def _maybe_progress(console: Console | None, label: str, total: int) -> Iterator[Any]:
    if console is None:
        yield lambda completed: None
        return
    with progress_bar(console) as progress:
        task = progress.add_task(label, total=total)
        yield lambda completed: progress.update(task, completed=completed)


def summarize(
    arrivals: list[tuple[int, str, int, float]],
    published: list[float],
    events: int,
    endpoints: int,
    rate: float | None,
    publish_s: float,
    hang: bool,
) -> dict[str, Any]:
    """Latency per (event, endpoint) from its first arrival; repeats and losses counted."""
    per_delivery = Counter((receiver, webhook_id) for receiver, webhook_id, _, _ in arrivals)
    first: dict[tuple[int, str], tuple[int, float]] = {}
    for receiver, webhook_id, seq, arrived in sorted(arrivals, key=lambda a: a[3]):
        first.setdefault((receiver, webhook_id), (seq, arrived))
    latencies = sorted(arrived - published[seq] for seq, arrived in first.values() if 0 <= seq < events)
    events_seen = Counter(seq for seq, _ in first.values())
    expected = events * endpoints
    span = (max(a for _, a in first.values()) - published[0]) if first else float("nan")
    ms = [s * 1000 for s in latencies]
    return {
        "pattern": "burst" if not rate else f"paced {rate:g}/s",
        "rate": rate,
        "hanging_endpoint": hang,
        "events": events,
        "endpoints": endpoints,
        "expected": expected,
        "requests": len(arrivals),
        "delivered": len(first),
        "duplicates": sum(n - 1 for n in per_delivery.values()),
        "missing": expected - len(first),
        "events_short": sum(1 for seq in range(events) if events_seen[seq] != endpoints),
        "unknown_bodies": sum(1 for _, _, seq, _ in arrivals if not 0 <= seq < events),
        "publish_s": round(publish_s, 3),
        "span_s": round(span, 3),
        "deliveries_per_s": round(len(first) / span, 1) if first and span > 0 else float("nan"),
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1) if ms else float("nan"),
    }


# ---- the benchmark ---------------------------------------------------------------------------------
def run(args: argparse.Namespace, console: Console) -> Report:
    if args.events < 1 or args.endpoints < 1:
        raise BenchError("--events and --endpoints must be at least 1")
    if args.endpoints > 19:
        raise BenchError("--endpoints: at most 19 (a tenant has at most 20 endpoints; one more hangs)")
    rates = list(args.rate) if isinstance(args.rate, (list, tuple)) else [args.rate]
    patterns: list[tuple[str, float | None]] = []
    if args.pattern in ("both", "burst"):
        patterns.append(("burst", None))
    if args.pattern in ("both", "paced"):
        patterns += [(f"paced {rate:g}/s", rate) for rate in rates]
    report = Report("webhooks")
    results: dict[str, dict[str, Any]] = {}
    with bench_data_dir(args.data_dir, "webhooks") as data_dir:
        for name, rate in patterns:
            for hang in (False, True):
                key = f"{name}{' + hang' if hang else ''}"
                label = f"{name}: {args.endpoints} endpoints" + (" + 1 hanging" if hang else "")
                results[key] = run_scenario(
                    data_dir / f"{len(results)}",
                    events=args.events,
                    endpoints=args.endpoints,
                    rate=rate,
                    hang=hang,
                    timeout=args.hang_timeout,
                    console=console,
                    label=label,
                    receivers_in_process=args.receivers_in_process,
                )
    report.figures = {
        "events": args.events,
        "endpoints": args.endpoints,
        "rates": rates,
        "receivers": "this process" if args.receivers_in_process else "a child process",
        "scenarios": results,
    }
    for name, _ in patterns:
        healthy, hung = results[name], results[f"{name} + hang"]
        ratio = hung["p99_ms"] / healthy["p99_ms"] if healthy["p99_ms"] else float("nan")
        healthy["hang_p99_ratio"] = hung["hang_p99_ratio"] = round(ratio, 2)
        report.targets.append(at_most(f"{name}: event → delivery p99", healthy["p99_ms"], TARGET_P99_MS, "ms"))
        report.targets.append(
            at_most(f"{name}: healthy p99 with a hanging endpoint ÷ without", round(ratio, 2), TARGET_HANG_RATIO, "×")
        )
        for figures in (healthy, hung):
            if figures["duplicates"] or figures["missing"]:
                report.notes.append(
                    f"{figures['pattern']}{' + hanging' if figures['hanging_endpoint'] else ''}: "
                    f"{figures['duplicates']} duplicate(s), {figures['missing']} missing"
                )
    print_report(report.figures, console)
    for note in report.notes:
        console.print(f"[red]{note}[/]")
    return report


def print_report(figures: dict[str, Any], console: Console) -> None:
    rows = []
    for s in figures["scenarios"].values():
        rows.append(
            (
                s["pattern"],
                f"{s['endpoints']} + 1 hanging" if s["hanging_endpoint"] else f"{s['endpoints']}",
                f"{s['delivered']:,}/{s['expected']:,}",
                s["duplicates"],
                s["deliveries_per_s"],
                s["p50_ms"],
                s["p95_ms"],
                s["p99_ms"],
                s["max_ms"],
                s["hang_p99_ratio"] if s["hanging_endpoint"] else None,
                s["publish_s"],
            )
        )
    console.print(
        make_table(
            f"webhooks: {figures['events']:,} events × {figures['endpoints']} endpoints, event published → "
            "request received (healthy endpoints only)",
            (
                "publishing",
                "endpoints",
                "delivered once",
                "dupes",
                "deliveries/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "p99 ÷ no hang",
                "publish s",
            ),
            rows,
            caption="burst: every event published back to back (publish() writes the deliveries to SQLite "
            "before it returns); paced: at the given rate. deliveries/s: delivered ÷ (last arrival − first "
            f"publish). Targets: p99 ≤ {TARGET_P99_MS:g} ms; p99 with a hanging endpoint ≤ {TARGET_HANG_RATIO:g}× "
            "without. Receivers in " + figures["receivers"] + "; everything shares the machine's cores.",
        )
    )


if __name__ == "__main__":
    sys.exit(_receivers_main(sys.argv[1:]))
