"""What a request pays for its key: `python -m ragline_bench.auth_overhead [--requests N]`.

Two figures, same process, same data (local backend, a temporary data dir):
- the key path alone: `authenticate` (one SQLite read by hash) + `UsageRecorder.record` (a dict update
  under a lock), p50/p95 over N calls;
- `POST /v1/kb/search` through the whole app (in-process ASGI), with the activity middleware (usage and
  audit) and without it, interleaved request by request, p50 of each and the difference.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from starlette.middleware import Middleware

from ragline.api.activity import ActivityMiddleware
from ragline.api.app import create_app
from ragline.config import Settings
from ragline.container import build_container
from ragline.keys import authenticate, create_key


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        container = build_container(Settings(data_dir=Path(tmp)), snapshot_interval_seconds=0)
        key, _ = create_key(container.store, "bench")
        for n in range(20):
            container.ingest.accept(
                "bench", f"Refund policy number {n}: returns within {n} days.".encode(), filename=f"{n}.txt"
            )
        while (job := container.store.claim()) is not None:
            container.ingest.process(job)

        path: list[float] = []
        for _ in range(args.requests * 4):
            start = time.perf_counter()
            principal = authenticate(container.store, key)
            container.usage.record(principal.key_id, principal.tenant_id, "POST /v1/kb/search", 200, "127.0.0.1")
            path.append((time.perf_counter() - start) * 1000)

        with_activity = create_app(container, routers=("search",))
        without = create_app(container, routers=("search",))
        without.user_middleware = [m for m in without.user_middleware if m.cls is not ActivityMiddleware]
        assert all(isinstance(m, Middleware) for m in without.user_middleware)
        timings: dict[str, list[float]] = {"with": [], "without": []}
        body = {"query": "refund policy returns"}
        with TestClient(with_activity) as on, TestClient(without) as off:
            for client in (on, off):  # warm up: query cache, model buffers
                for _ in range(20):
                    client.post("/v1/kb/search", json=body, headers={"x-api-key": key})
            for n in range(args.requests):
                # Alternate which goes first, and a new query each time for each: the query-vector
                # cache never answers, so both arms embed every query.
                arms = (("with", on), ("without", off)) if n % 2 else (("without", off), ("with", on))
                for name, client in arms:
                    query = {"query": f"refund policy returns {n} {name}"}
                    start = time.perf_counter()
                    response = client.post("/v1/kb/search", json=query, headers={"x-api-key": key})
                    timings[name].append((time.perf_counter() - start) * 1000)
                    assert response.status_code == 200, response.text
        container.close()
    print(
        f"key path (authenticate + record usage), {len(path)} calls: "
        f"p50 {_p(path, 50):.3f} ms, p95 {_p(path, 95):.3f} ms"
    )
    for name, values in timings.items():
        print(
            f"POST /v1/kb/search {name} the activity middleware, {len(values)} requests: "
            f"p50 {_p(values, 50):.2f} ms, p95 {_p(values, 95):.2f} ms"
        )
    print(f"difference of the p50s: {_p(timings['with'], 50) - _p(timings['without'], 50):+.3f} ms")


if __name__ == "__main__":
    main()
