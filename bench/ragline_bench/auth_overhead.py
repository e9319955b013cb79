"""What a request pays for its key: `python -m ragline_bench.auth_overhead [--requests N]`.

Figures from one process, same data (local backend, a temporary data dir):
- the key path alone: `authenticate` (one SQLite read by hash) + the rate limiter's count (a dict
  update under a lock) + `UsageRecorder.record` (a dict update under a lock), p50/p95 over N calls;
- `POST /v1/kb/search` through the whole app (in-process ASGI), interleaved request by request, p50 of
  each arm and the differences:
  - "shipped": auth + rate limit (+ its headers) + the activity middleware (usage and audit);
  - "no limiter": the same app with `require` doing auth and scope only, and no RateLimit headers;
  - "no auth": `require` takes a fixed principal (no key read, no limiter, no headers; usage still counted);
  - "no activity": shipped without the activity middleware.
  "shipped" minus "no auth" is what the auth + rate-limit path adds (issue 12: at most 1 ms p50).
The bench key's limit is far above the requests made: every request is counted and served.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.middleware import Middleware

from ragline.api import dependencies
from ragline.api.activity import ActivityMiddleware, note_principal
from ragline.api.app import create_app
from ragline.api.auth import current_principal
from ragline.api.rate_limit import RateLimitHeadersMiddleware, limited_principal
from ragline.config import Settings
from ragline.container import Container, build_container
from ragline.keys import authenticate, create_key
from ragline.models import Principal
from ragline.rate_limits import limit_for, window_at


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def _without(app: FastAPI, middleware: type) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not middleware]
    assert all(isinstance(m, Middleware) for m in app.user_middleware)
    return app


# Which path require() takes, per app (app.state.bench_arm). Swapped in for ragline.api.dependencies'
# limited_principal, so every arm has the same dependency graph and thread hop, and only the work
# differs (FastAPI's dependency_overrides would rebuild the override's signature on every request: ~0.3 ms).
def _switch(principal: Principal) -> object:
    def principal_for(c: Container, request: Request, key: str | None) -> Principal:
        arm = request.app.state.bench_arm
        if arm == "no auth":
            note_principal(request, principal)  # usage is still recorded: only auth and the limiter go
            return principal
        if arm == "no limiter":
            return current_principal(c, request, key)
        return limited_principal(c, request, key)

    return principal_for


def _arm(app: FastAPI, name: str) -> FastAPI:
    app.state.bench_arm = name
    if name in ("no limiter", "no auth"):
        _without(app, RateLimitHeadersMiddleware)
    if name == "no activity":
        _without(app, ActivityMiddleware)
    return app


def _dependency_path(container: Container, key: str, calls: int) -> dict[str, list[float]]:
    """What require() runs per request, called directly (a fresh request each call, as the server
    has): auth alone, and auth + the rate limiter; interleaved."""
    timings: dict[str, list[float]] = {"auth": [], "auth + rate limit": []}
    calls_by_name = {
        "auth": lambda request: current_principal(container, request, key),
        "auth + rate limit": lambda request: limited_principal(container, request, key),
    }
    for n in range(calls):
        for name in list(calls_by_name) if n % 2 else list(reversed(calls_by_name)):
            request = Request({"type": "http", "method": "POST", "path": "/v1/kb/search", "headers": [], "state": {}})
            start = time.perf_counter()
            calls_by_name[name](request)
            timings[name].append((time.perf_counter() - start) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), rate_limit_per_minute=10**9)
        container = build_container(settings, snapshot_interval_seconds=0)
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
            now = time.time()
            limit = limit_for(principal.rate_limit_per_minute, settings.rate_limit_per_minute)
            assert container.rate_limiter.acquire(principal.key_id, window_at(now, principal.key_id), limit)
            container.usage.record(principal.key_id, principal.tenant_id, "POST /v1/kb/search", 200, "127.0.0.1")
            path.append((time.perf_counter() - start) * 1000)

        dependency = _dependency_path(container, key, args.requests * 4)
        dependencies.limited_principal = _switch(authenticate(container.store, key))  # type: ignore[assignment]
        names = ("shipped", "no limiter", "no auth", "no activity")
        arms = {name: _arm(create_app(container, routers=("search",)), name) for name in names}
        timings: dict[str, list[float]] = {name: [] for name in arms}
        clients = {name: TestClient(app) for name, app in arms.items()}
        for name, client in clients.items():
            client.__enter__()
            for _ in range(20):  # warm up: query cache, model buffers
                response = client.post("/v1/kb/search", json={"query": "refund policy"}, headers={"x-api-key": key})
                assert response.status_code == 200, response.text
                assert ("ratelimit-limit" in response.headers) == (name in ("shipped", "no activity")), name
        order = list(arms)
        for n in range(args.requests):
            # Rotate which goes first, and a new query each time for each: the query-vector cache
            # never answers, so every arm embeds every query.
            for name in order[n % len(order) :] + order[: n % len(order)]:
                query = {"query": f"refund policy returns {n} {name}"}
                start = time.perf_counter()
                response = clients[name].post("/v1/kb/search", json=query, headers={"x-api-key": key})
                timings[name].append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, response.text
        for client in clients.values():
            client.__exit__(None, None, None)
        container.close()
    print(
        f"key path (authenticate + rate limit + record usage), {len(path)} calls: "
        f"p50 {_p(path, 50):.3f} ms, p95 {_p(path, 95):.3f} ms"
    )
    for name, values in timings.items():
        print(
            f"POST /v1/kb/search, {name}, {len(values)} requests: p50 {_p(values, 50):.2f} ms, p95 {_p(values, 95):.2f} ms"
        )
    for name, values in dependency.items():
        print(f"require() path, {name}, {len(values)} calls: p50 {_p(values, 50):.3f} ms, p95 {_p(values, 95):.3f} ms")
    p50 = {name: _p(values, 50) for name, values in timings.items()}
    for what, other in (("rate limiter", "no limiter"), ("auth + rate limit", "no auth"), ("activity", "no activity")):
        # Paired: the arms of one round ran back to back, so a burst of load on the machine hits both;
        # the median of the per-round differences is steadier than the difference of the p50s.
        paired = statistics.median(a - b for a, b in zip(timings["shipped"], timings[other], strict=True))
        print(
            f"{what} (shipped - {other}): difference of the p50s {p50['shipped'] - p50[other]:+.3f} ms, "
            f"median of the paired differences {paired:+.3f} ms"
        )


if __name__ == "__main__":
    main()
