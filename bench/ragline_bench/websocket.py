"""`ragline bench ws`: the WebSocket chat's first token comes no later than the SSE stream's (same questions, same run).

A real server (`ragline serve` on 127.0.0.1, a free port, its own data directory) answers with "Claude", the fake of
the Messages API on 127.0.0.1 (ragline_emulator.anthropic_server, answering at once), so that an answer takes the
streaming path of a deployment with a model: retrieval, the prompt, the model's HTTP stream, the citation filter.
The corpus is SciFact abstracts; the questions are SciFact claims. The answer cache is off and the answer floor 0,
so every question is retrieved and sent to the model.

For each question, in turn (the arms' order rotating from one question to the next, so neither always goes first):

- **sse**: POST /v1/kb/chat/stream on a kept-alive HTTP connection; the time from sending the request to the first
  `message` event;
- **ws**: a `query` on one WebSocket opened (and authenticated by header) before the run; the time from sending it
  to the first `token`;
- **ws, new connection**: the upgrade, then the query, on a fresh connection per question; the time from opening
  the TCP connection to the first `token` (what a client that connects per question waits).

The WebSocket client offers permessage-deflate as browsers do (`--compression none` to leave it out): the server
accepts it, and compressing the `sources` message (the passages' text) is part of what a client waits for.

Reported: p50/p90/mean time to first token per arm, and ws p50 ÷ sse p50 against the target (at most 1).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ragline_bench.common import (
    BenchError,
    RaglineServer,
    Report,
    at_most,
    bench_data_dir,
    create_api_key,
    load_beir,
    make_table,
    percentile,
    progress_bar,
    resolve_shared,
)
from ragline_bench.fairness import seed_corpus

if TYPE_CHECKING:
    import httpx
    from rich.console import Console
    from websockets.sync.client import ClientConnection

TENANT = "bench-ws"
ARMS = ("sse", "ws", "ws, new connection")
TARGET_RATIO = 1.0  # WebSocket p50 first token at most SSE's
ANSWER = "The claim is supported by the abstract [1], which reports the measured effect in detail [2]."


def sse_first_token(client: httpx.Client, question: str) -> float:
    started = time.perf_counter()
    with client.stream("POST", "/v1/kb/chat/stream", json={"query": question}) as response:
        if response.status_code != 200:
            raise BenchError(f"the SSE stream answered {response.status_code}: {response.read()[:200]!r}")
        for line in response.iter_lines():
            if line.startswith("data: {") and json.loads(line[len("data: ") :])["event"] == "message":
                return time.perf_counter() - started
    raise BenchError(f"the SSE stream ended without a token for {question!r}")


def ws_first_token(ws: ClientConnection, question: str, started: float | None = None) -> float:
    """Ask on ``ws``; seconds from ``started`` (default: the send) to the first token. Reads the answer to its end."""
    started = time.perf_counter() if started is None else started
    ws.send(json.dumps({"type": "query", "query": question}))
    first: float | None = None
    while True:
        message = json.loads(ws.recv(timeout=60))
        if message["type"] == "token" and first is None:
            first = time.perf_counter() - started
        elif message["type"] == "error":
            raise BenchError(f"the WebSocket answered an error: {message}")
        elif message["type"] == "done":
            break
    if first is None:
        raise BenchError(f"the WebSocket answer had no token for {question!r}")
    return first


def ws_new_connection_first_token(url: str, key: str, question: str, compression: str | None) -> float:
    started = time.perf_counter()
    with open_ws(url, key, compression) as ws:
        return ws_first_token(ws, question, started)


def open_ws(url: str, key: str, compression: str | None) -> ClientConnection:
    from websockets.sync.client import connect

    return connect(url, additional_headers={"x-api-key": key}, proxy=None, open_timeout=30, compression=compression)


def run(args: argparse.Namespace, console: Console) -> Report:
    import httpx

    from ragline_emulator.anthropic_server import FakeAnthropic

    shared = resolve_shared(args.shared)
    scifact = load_beir(shared, "scifact")
    claims = list(scifact.queries.values())
    needed = args.warmup + args.questions
    if len(claims) < needed:
        raise BenchError(f"only {len(claims)} SciFact claims for {needed} questions")
    warmup, questions = claims[: args.warmup], claims[args.warmup : needed]
    corpus = [(doc.title, doc.text) for doc in scifact.corpus[: args.corpus_docs]]
    report = Report("ws")
    compression = None if args.compression == "none" else args.compression
    timings: dict[str, list[float]] = {arm: [] for arm in ARMS}
    with FakeAnthropic() as fake, bench_data_dir(args.data_dir, "ws") as data_dir:
        fake.script(answer=ANSWER)
        server_dir = data_dir / "server"
        key = create_api_key(server_dir, TENANT)
        env = {
            "ANTHROPIC_API_KEY": fake.api_key,
            "ANTHROPIC_BASE_URL": fake.url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "RAGLINE_LOG_LEVEL": "WARNING",
            "RAGLINE_ANSWER_CACHE_ENABLED": "false",  # every question retrieved and answered by the model
            "RAGLINE_CHAT_ANSWER_FLOOR": "0",
        }
        with RaglineServer(server_dir, data_dir / "ws-server.log", env=env) as server:
            console.print(
                f"server on {server.url} (pid {server.pid}), log {server.log_path}; fake Claude on {fake.url}"
            )
            ws_url = server.url.replace("http://", "ws://") + "/v1/kb/chat/ws"
            with (
                httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=120, trust_env=False) as client,
                open_ws(ws_url, key, compression) as ws,
            ):
                seed_corpus(client, corpus, console)
                for question in warmup:  # the query-embedding and connection paths warm, not timed
                    sse_first_token(client, question)
                    ws_first_token(ws, question)
                arms: dict[str, Callable[[str], float]] = {
                    "sse": lambda q: sse_first_token(client, q),
                    "ws": lambda q: ws_first_token(ws, q),
                    "ws, new connection": lambda q: ws_new_connection_first_token(ws_url, key, q, compression),
                }
                with progress_bar(console) as progress:
                    task = progress.add_task("questions, each asked over SSE and WebSocket", total=len(questions))
                    for number, question in enumerate(questions):
                        order = ARMS[number % len(ARMS) :] + ARMS[: number % len(ARMS)]
                        for arm in order:
                            timings[arm].append(arms[arm](question))
                        progress.advance(task)
    summary = {arm: _summary(seconds) for arm, seconds in timings.items()}
    ratio = summary["ws"]["p50_ms"] / summary["sse"]["p50_ms"]
    new_ratio = summary["ws, new connection"]["p50_ms"] / summary["sse"]["p50_ms"]
    report.figures = {
        "questions": len(questions),
        "compression": args.compression,
        "corpus_docs": len(corpus),
        "time_to_first_token": summary,
        "ws_p50_over_sse_p50": round(ratio, 3),
        "ws_new_connection_p50_over_sse_p50": round(new_ratio, 3),
    }
    report.targets = [
        at_most("WebSocket first-token p50 ÷ SSE first-token p50, same questions", round(ratio, 3), TARGET_RATIO),
        at_most(
            "WebSocket (a new connection per question) first-token p50 ÷ SSE p50",
            round(new_ratio, 3),
            TARGET_RATIO,
            kind="reference",
        ),
    ]
    rows = [[arm, s["n"], s["p50_ms"], s["p90_ms"], s["mean_ms"]] for arm, s in summary.items()]
    console.print(make_table("time to first token (ms)", ["arm", "n", "p50", "p90", "mean"], rows))
    console.print(f"ws p50 ÷ sse p50 = {ratio:.3f}; ws (new connection) p50 ÷ sse p50 = {new_ratio:.3f}")
    return report


def _summary(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
    }
