"""What Idempotency-Key costs a request, locally: a real `ragline serve` (SQLite) answering
`POST /v1/kb/uploads` (a presigned-upload ticket: no model, no write of its own, so the difference is
the middleware's) without the header, with a new key each time (authenticate + claim + complete) and
with a key already answered (authenticate + claim + replay), interleaved in the same run; and, in
process, the middleware's pass-through on a request without the header against the bare app.

    python -m ragline_bench.idempotency [--requests 500] [--out path.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ragline_bench.common import RaglineServer, create_api_key, latency_summary

BODY = {"filename": "report.txt", "content_type": "text/plain"}


def over_http(requests: int) -> dict[str, Any]:
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        key = create_api_key(data_dir, "bench")
        with (
            RaglineServer(data_dir, Path(tmp) / "server.log", env={"RAGLINE_LOG_LEVEL": "WARNING"}) as server,
            httpx.Client(base_url=server.url, headers={"x-api-key": key}, trust_env=False, timeout=30) as client,
        ):
            answered = "bench-replayed-key"
            assert client.post("/v1/kb/uploads", json=BODY, headers={"Idempotency-Key": answered}).status_code == 200
            kinds = {
                "without header": lambda: client.post("/v1/kb/uploads", json=BODY),
                "new key": lambda: client.post(
                    "/v1/kb/uploads", json=BODY, headers={"Idempotency-Key": str(uuid.uuid4())}
                ),
                "replay": lambda: client.post("/v1/kb/uploads", json=BODY, headers={"Idempotency-Key": answered}),
            }
            for call in kinds.values():  # warm up: connections, the SQLite files, the code paths
                for _ in range(30):
                    call()
            seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
            for _ in range(requests):
                for kind, call in kinds.items():  # interleaved, so drift hits every kind alike
                    started = time.perf_counter()
                    response = call()
                    seconds[kind].append(time.perf_counter() - started)
                    if response.status_code != 200:
                        raise SystemExit(f"{kind}: {response.status_code} {response.text}")
                    if kind == "replay" and response.headers.get("idempotent-replayed") != "true":
                        raise SystemExit("the replay was not replayed")
    return {kind: latency_summary(values) for kind, values in seconds.items()}


def pass_through(calls: int) -> dict[str, Any]:
    """The middleware around a do-nothing app, on a POST without the header, against that app alone."""
    from ragline.api.idempotency import IdempotencyMiddleware, IdempotencyPolicy

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        return None

    def never(*_: Any) -> Any:
        raise AssertionError("a request without the header must not reach the store or the key check")

    wrapped = IdempotencyMiddleware(bare, store=never, authenticate=never, policy=IdempotencyPolicy(86400, 900))
    headers = [(b"host", b"x"), (b"x-api-key", b"rl_x"), (b"content-type", b"application/json")]
    scope = {"type": "http", "method": "POST", "path": "/v1/kb/documents", "headers": headers}

    async def run(app: Any) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await app(scope, None, None)
        return (time.perf_counter() - started) / calls

    async def both() -> tuple[float, float]:
        await run(wrapped)
        return await run(bare), await run(wrapped)

    alone, with_middleware = asyncio.run(both())
    return {
        "calls": calls,
        "bare_us": round(alone * 1e6, 3),
        "with_middleware_us": round(with_middleware * 1e6, 3),
        "added_us": round((with_middleware - alone) * 1e6, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="requests of each kind over HTTP")
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args(argv)
    results = {"http_post_v1_kb_uploads": over_http(args.requests), "in_process_pass_through": pass_through(200_000)}
    http = results["http_post_v1_kb_uploads"]
    base = http["without header"]["p50_ms"]
    results["added_p50_ms"] = {kind: round(http[kind]["p50_ms"] - base, 3) for kind in ("new key", "replay")}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
