"""`ragline bench fairness`: one tenant's flood must not stall another tenant's searches.

A real server (`ragline serve` on 127.0.0.1, a free port, its own data directory) gets two keys,
tenants A and B. B's corpus is SciFact abstracts, uploaded over HTTP and indexed. B then sends a
fixed search load (`--requests` POST /v1/kb/search at `--concurrency`) twice: once while the
server is quiet, once while A floods it from another process with

- adversarial uploads (ragline_bench.adversarial: backtracking-bait Markdown and text, quadratic and
  deeply nested HTML, padded headings), each made unique so that none is a duplicate;
- big uploads (`--big-mb` MB of text, multipart);
- chat streams (POST /v1/kb/chat/stream) dropped after their first bytes.

Each phase sends SciFact claims the server has not seen, so the query-embedding cache answers none.
Reported: B's p50/p99/mean, count and errors per phase, p99 flood ÷ p99 quiet against the target
(at most 2), and A's requests per kind and answer.

`Flood` runs A's workers on threads; the benchmark runs it in a child process
(`python -m ragline_bench.fairness --flood …`) so that A's client work does not share the GIL with
B's client, and the stress test (tests/security/test_fairness_stress.py) runs it on threads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ragline_bench.adversarial import upload_files
from ragline_bench.common import (
    BenchError,
    RaglineServer,
    Report,
    at_most,
    bench_data_dir,
    create_api_key,
    fmt,
    latency_summary,
    load_beir,
    make_table,
    progress_bar,
    resolve_shared,
)

if TYPE_CHECKING:
    import httpx
    from rich.console import Console

TENANT_A, TENANT_B = "tenant-a", "tenant-b"
TOP_K = 10
TARGET_RATIO = 2.0  # B's p99 under the flood at most this many times its quiet p99
KINDS = ("adversarial", "big", "stream")
WORDS = "return policy refund parcel warehouse invoice shipping order customer account delivery".split()


# ---- tenant A's flood ------------------------------------------------------------------------------
def _unique(filename: str, data: bytes) -> bytes:
    """The same hostile content with a unique first line, so that no upload is a duplicate."""
    nonce = uuid.uuid4().hex
    if filename.endswith(".html"):
        return f"<!-- {nonce} -->".encode() + data
    return f"{nonce}\n\n".encode() + data


def big_text(megabytes: float) -> bytes:
    """About `megabytes` MB of plain sentences (1 MB = 10^6 bytes)."""
    line = (" ".join(WORDS[(n * 7) % len(WORDS)] for n in range(60)) + ".\n").encode()
    return line * max(1, int(megabytes * 1e6) // len(line))


class Flood:
    """Tenant A's workers, each on its own thread, sending requests back to back until stop().

    `adversarial`, `big` and `streams` are how many threads send each kind; counts per kind and
    answer (HTTP status, or the transport error's name) are kept, with the bytes uploaded."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        adversarial: int = 2,
        big: int = 1,
        streams: int = 2,
        big_mb: float = 20.0,
        timeout: float = 120.0,
    ) -> None:
        self.url = url
        self.api_key = api_key
        self.workers = {"adversarial": adversarial, "big": big, "stream": streams}
        self.files = upload_files() if adversarial else []
        self.big = big_text(big_mb) if big else b""
        self.timeout = timeout
        self.counts: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
        self.uploaded_bytes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Flood:
        for kind, count in self.workers.items():
            for number in range(count):
                thread = threading.Thread(target=self._run, args=(kind, number), name=f"flood-{kind}-{number}")
                thread.daemon = True
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "workers": dict(self.workers),
                "big_upload_bytes": len(self.big),
                "uploaded_bytes": self.uploaded_bytes,
                "requests": {kind: sum(c.values()) for kind, c in self.counts.items()},
                "answers": {kind: dict(sorted(c.items())) for kind, c in self.counts.items()},
                "server_errors": sum(n for c in self.counts.values() for a, n in c.items() if a.startswith("5")),
            }

    def _record(self, kind: str, answer: str, uploaded: int = 0) -> None:
        with self._lock:
            self.counts[kind][answer] += 1
            self.uploaded_bytes += uploaded

    def _run(self, kind: str, number: int) -> None:
        import httpx

        send: Callable[[httpx.Client, int], tuple[str, int]] = {
            "adversarial": self._adversarial,
            "big": self._big,
            "stream": self._stream,
        }[kind]
        sequence = number
        with httpx.Client(
            base_url=self.url, headers={"x-api-key": self.api_key}, timeout=self.timeout, trust_env=False
        ) as client:
            while not self._stop.is_set():
                try:
                    answer, uploaded = send(client, sequence)
                except httpx.TransportError as exc:
                    answer, uploaded = type(exc).__name__, 0
                self._record(kind, answer, uploaded)
                sequence += self.workers[kind]

    def _adversarial(self, client: httpx.Client, sequence: int) -> tuple[str, int]:
        filename, data = self.files[sequence % len(self.files)]
        data = _unique(filename, data)
        response = client.post("/v1/kb/documents", files={"file": (filename, data)})
        return str(response.status_code), len(data)

    def _big(self, client: httpx.Client, sequence: int) -> tuple[str, int]:
        data = _unique("big.txt", self.big)
        response = client.post("/v1/kb/documents", files={"file": (f"big-{sequence}.txt", data, "text/plain")})
        return str(response.status_code), len(data)

    def _stream(self, client: httpx.Client, sequence: int) -> tuple[str, int]:
        body = {"query": f"what is the return policy for order {sequence}?", "mode": "hybrid"}
        with client.stream("POST", "/v1/kb/chat/stream", json=body) as response:
            if response.status_code == 200:
                next(response.iter_bytes(), b"")  # the first bytes, then hang up: leaving the block closes it
            else:
                response.read()
            return str(response.status_code), 0


def _flood_main(argv: Sequence[str]) -> int:
    """The flood in a process of its own: runs until stdin closes, then prints its summary as JSON."""
    parser = argparse.ArgumentParser(prog="python -m ragline_bench.fairness --flood")
    parser.add_argument("--flood", action="store_true")
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--adversarial", type=int, default=2)
    parser.add_argument("--big", type=int, default=1)
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--big-mb", type=float, default=20.0)
    args = parser.parse_args(argv)
    flood = Flood(
        args.url, args.api_key, adversarial=args.adversarial, big=args.big, streams=args.streams, big_mb=args.big_mb
    )
    flood.start()
    print("started", flush=True)
    sys.stdin.read()  # the parent closes our stdin to stop us
    print(json.dumps(flood.stop()), flush=True)
    return 0


class FloodProcess:
    """Flood in a child process (`python -m ragline_bench.fairness --flood`), stopped by closing its stdin."""

    def __init__(self, url: str, api_key: str, args: argparse.Namespace) -> None:
        self.command = [
            sys.executable,
            "-m",
            "ragline_bench.fairness",
            "--flood",
            "--url",
            url,
            "--api-key",
            api_key,
            "--adversarial",
            str(args.adversarial_threads),
            "--big",
            str(args.big_threads),
            "--streams",
            str(args.stream_threads),
            "--big-mb",
            str(args.big_mb),
        ]
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "started":
            self.process.kill()
            raise BenchError(f"the flood process did not start (exit code {self.process.wait()})")

    def stop(self, timeout: float = 120.0) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        try:
            out, _ = self.process.communicate(timeout=timeout)  # closes stdin: the flood stops
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise BenchError(f"the flood process did not stop within {timeout:.0f} s") from None
        lines = out.strip().splitlines()
        if self.process.returncode != 0 or not lines:
            raise BenchError(f"the flood process failed (exit code {self.process.returncode})")
        return json.loads(lines[-1])

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# ---- tenant B --------------------------------------------------------------------------------------
def seed_corpus(client: httpx.Client, texts: Sequence[tuple[str, str]], console: Console) -> float:
    """Upload (title, text) documents as JSON and wait until none is queued or processing; the seconds it took."""
    started = time.perf_counter()
    with progress_bar(console) as progress:
        task = progress.add_task("tenant B: uploading its corpus", total=len(texts))
        for title, text in texts:
            response = client.post("/v1/kb/documents", json={"title": title, "text": text})
            if response.status_code != 202:
                raise BenchError(f"seeding tenant B: upload answered {response.status_code}: {response.text[:200]}")
            progress.advance(task)
        task = progress.add_task("tenant B: indexing", total=len(texts))
        deadline = time.monotonic() + 60 + len(texts)
        while time.monotonic() < deadline:
            pending = sum(
                len(client.get("/v1/kb/documents", params={"status": status, "limit": 500}).json()["documents"])
                for status in ("queued", "processing")
            )
            progress.update(task, completed=len(texts) - pending)
            if pending == 0:
                break
            time.sleep(0.5)
        else:
            raise BenchError("tenant B's corpus was not indexed in time")
    return time.perf_counter() - started


def search_load(
    client: httpx.Client, queries: Sequence[str], concurrency: int, console: Console, label: str
) -> dict[str, Any]:
    """POST /v1/kb/search for each query at `concurrency`: latency summary, answers and errors."""
    import httpx

    latencies: list[float] = []
    answers: Counter[str] = Counter()
    lock = threading.Lock()

    def one(query: str) -> None:
        started = time.perf_counter()
        try:
            answer = str(client.post("/v1/kb/search", json={"query": query, "limit": TOP_K}).status_code)
        except httpx.TransportError as exc:
            answer = type(exc).__name__
        elapsed = time.perf_counter() - started
        with lock:
            answers[answer] += 1
            if answer == "200":
                latencies.append(elapsed)

    started = time.perf_counter()
    with progress_bar(console) as progress, ThreadPoolExecutor(concurrency) as pool:
        task = progress.add_task(label, total=len(queries))
        for _ in pool.map(one, queries):
            progress.advance(task)
    wall = time.perf_counter() - started
    return {
        **latency_summary(latencies),
        "requests": len(queries),
        "errors": len(queries) - answers["200"],
        "answers": dict(sorted(answers.items())),
        "requests_per_s": round(len(queries) / wall, 1),
        "wall_s": round(wall, 1),
    }


def run(args: argparse.Namespace, console: Console) -> Report:
    import httpx

    shared = resolve_shared(args.shared)
    scifact = load_beir(shared, "scifact")
    claims = list(scifact.queries.values())
    if len(claims) < 2 * args.requests + args.warmup:
        console.print(f"[yellow]only {len(claims)} SciFact claims: some queries repeat across phases[/]")
    phase_queries = [
        [claims[(args.warmup + phase * args.requests + n) % len(claims)] for n in range(args.requests)]
        for phase in range(2)
    ]
    corpus = [(doc.title, doc.text) for doc in scifact.corpus[: args.corpus_docs]]
    report = Report("fairness")
    with bench_data_dir(args.data_dir, "fairness") as data_dir:
        server_dir = data_dir / "server"
        keys = {tenant: create_api_key(server_dir, tenant) for tenant in (TENANT_A, TENANT_B)}
        server = RaglineServer(server_dir, data_dir / "fairness-server.log", env={"RAGLINE_LOG_LEVEL": "WARNING"})
        flood = FloodProcess(server.url, keys[TENANT_A], args)
        with server:
            console.print(f"server on {server.url} (pid {server.pid}), log {server.log_path}")
            limits = httpx.Limits(max_connections=args.concurrency + 2, max_keepalive_connections=args.concurrency + 2)
            with httpx.Client(
                base_url=server.url, headers={"x-api-key": keys[TENANT_B]}, timeout=120, limits=limits, trust_env=False
            ) as client:
                seed_s = seed_corpus(client, corpus, console)
                for query in claims[: args.warmup]:
                    client.post("/v1/kb/search", json={"query": query, "limit": TOP_K})
                quiet = search_load(client, phase_queries[0], args.concurrency, console, "tenant B, quiet")
                flood.start()
                try:
                    time.sleep(args.flood_warmup)
                    flooded = search_load(client, phase_queries[1], args.concurrency, console, "tenant B, A floods")
                finally:
                    try:
                        a = flood.stop()
                    finally:
                        flood.kill()
                health = client.get("/health").status_code
    ratio = flooded["p99_ms"] / quiet["p99_ms"] if quiet["p99_ms"] else float("nan")
    report.figures = {
        "corpus_docs": len(corpus),
        "seed_s": round(seed_s, 1),
        "concurrency": args.concurrency,
        "requests_per_phase": args.requests,
        "flood_warmup_s": args.flood_warmup,
        "quiet": quiet,
        "flood": flooded,
        "p99_ratio": round(ratio, 2),
        "p50_ratio": round(flooded["p50_ms"] / quiet["p50_ms"], 2) if quiet["p50_ms"] else None,
        "tenant_a": a,
        "health_after_flood": health,
    }
    report.targets.append(at_most("tenant B p99 under A's flood ÷ quiet p99", round(ratio, 2), TARGET_RATIO, "×"))
    print_report(report.figures, console)
    return report


def print_report(figures: dict[str, Any], console: Console) -> None:
    rows = [
        (
            phase,
            f[k]["requests"],
            f[k]["errors"],
            f[k]["p50_ms"],
            f[k]["p99_ms"],
            f[k]["mean_ms"],
            f[k]["requests_per_s"],
        )
        for phase, k, f in (("quiet", "quiet", figures), ("A floods", "flood", figures))
    ]
    console.print(
        make_table(
            f"tenant B: POST /v1/kb/search, hybrid top-{TOP_K}, concurrency {figures['concurrency']}, "
            f"{figures['corpus_docs']} SciFact abstracts",
            ("phase", "requests", "errors", "p50 ms", "p99 ms", "mean ms", "req/s"),
            rows,
            caption=f"p99 flood ÷ quiet = {fmt(figures['p99_ratio'])} (target ≤ {TARGET_RATIO:g}); "
            f"p50 ratio {fmt(figures['p50_ratio'])}. Client, flood and server share the machine's cores",
        )
    )
    a = figures["tenant_a"]
    console.print(
        make_table(
            "tenant A's flood, while B's flood phase ran",
            ("kind", "threads", "requests", "answers"),
            [
                (
                    kind,
                    a["workers"][key],
                    a["requests"][kind],
                    ", ".join(f"{k}: {v}" for k, v in a["answers"][kind].items()),
                )
                for kind, key in (("adversarial", "adversarial"), ("big", "big"), ("stream", "stream"))
            ],
            caption=f"uploaded {a['uploaded_bytes'] / 1e6:.0f} MB (big uploads of {a['big_upload_bytes'] / 1e6:.0f} MB); "
            f"5xx answers to A: {a['server_errors']}",
        )
    )


if __name__ == "__main__":
    sys.exit(_flood_main(sys.argv[1:]))
