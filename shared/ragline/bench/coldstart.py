"""`ragline bench coldstart` and `ragline bench package`: what a Lambda cold start and the
deployment package cost, measured here.

coldstart: a moto server (in this process) stands in for S3, SQS, SNS and DynamoDB, with the
stack's resources, an API key and one indexed document. Each function then starts in a FRESH
interpreter, N times: import of its handler module (Lambda's init: container, clients, app), the
embedding-model load inside it (ONNX session creation, timed on its own), the first invocation
with a real event, a second (warm) one, and the process's peak RSS (ru_maxrss). The stream-chat
function is started as Lambda would start it, through run.sh (uvicorn): init is "spawned → /health
answers" (the Web Adapter's readiness check), the first invocation a whole SSE answer.
`chat+claude` is the chat function with Claude configured (against the fake Messages API of the
test suite): the difference is what importing and building the Claude adapter costs (the Messages
API over httpx; there is no anthropic SDK).

package: what is shipped, measured where `make sam-build` put it (.aws-sam/build): each built
layer and each function with its layers (per the built template), unzipped, against Lambda's
262,144,000-byte limit. The size code is infra/layers/smoke.py's (`smoke.py --sizes`), not a copy.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline.bench.common import BenchError, Report, at_most, make_table, median

if TYPE_CHECKING:
    from rich.console import Console

REPO = Path(__file__).resolve().parents[3]
FUNCTIONS_DIR = REPO / "functions"
REGION = "us-east-1"
ACCOUNT = "123456789012"
API_ID = "benchapi01"
STAGE = "bench"
TENANT = "bench"
TABLE = "ragline-bench"
BUCKET = "ragline-bench-documents"
INIT_TARGET_S = 0.6  # search and chat: init + first invocation, without the model load
MODEL_TARGET_S = 0.5
RESULT_MARK = "RAGLINE_COLDSTART "
SEED_TEXT = (
    "Refunds are issued within fourteen days of a return, to the original payment method. "
    "Shipping to Iceland takes five working days. Support answers on weekdays from nine to five."
)


# ---- real event shapes ------------------------------------------------------------------------------
def rest_event(
    method: str, path: str, *, key: str | None = None, body: Any = None, authorizer: dict[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway REST Lambda-proxy event (payload 1.0), with the authorizer's context when given."""
    headers = {"Host": f"{API_ID}.execute-api.{REGION}.amazonaws.com", "User-Agent": "ragline-bench",
               "X-Forwarded-Proto": "https"}
    if key:
        headers["x-api-key"] = key
    text = None if body is None else json.dumps(body)
    if text is not None:
        headers["Content-Type"] = "application/json"
    return {
        "resource": "/{proxy+}", "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": None,
        "multiValueQueryStringParameters": None, "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None, "body": text, "isBase64Encoded": False,
        "requestContext": {"accountId": ACCOUNT, "apiId": API_ID, "httpMethod": method, "path": f"/{STAGE}{path}",
                           "stage": STAGE, "requestId": "bench-request", "resourcePath": "/{proxy+}",
                           "identity": {"sourceIp": "127.0.0.1"},
                           **({"authorizer": {**authorizer, "principalId": authorizer["key_id"]}} if authorizer else {})},
    }


def authorizer_event(key: str) -> dict[str, Any]:
    event = rest_event("POST", "/v1/kb/search", key=key)
    return {"type": "REQUEST", "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/POST/v1/kb/search",
            **{k: event[k] for k in ("resource", "path", "httpMethod", "headers", "multiValueHeaders",
                                     "pathParameters", "requestContext")}}


@dataclass
class Function:
    name: str
    directory: str
    event: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    budget: bool = False  # search and chat carry the ≤ 0.6 s target


# ---- the child: one cold start in a fresh interpreter --------------------------------------------
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
def peak_mb():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so it would report the parent's peak.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
spec = json.loads(sys.argv[1])
import importlib.util
import ragline.container as container_module
model = {"s": 0.0}
_build = container_module.build_embedder
def _timed_build(settings):
    started = time.perf_counter()
    try:
        return _build(settings)
    finally:
        model["s"] += time.perf_counter() - started
container_module.build_embedder = _timed_build
module_spec = importlib.util.spec_from_file_location("function_under_test", spec["path"])
module = importlib.util.module_from_spec(module_spec)
module_spec.loader.exec_module(module)
init_s = time.perf_counter() - t0
model_at_init = model["s"]
class Context:
    function_name = "ragline-bench"; memory_limit_in_mb = 1024; aws_request_id = "bench-0001"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ragline-bench"
    def get_remaining_time_in_millis(self): return 30000
started = time.perf_counter()
answer = module.handler(spec["event"], Context())
first_s = time.perf_counter() - started
model_in_first = model["s"] - model_at_init
started = time.perf_counter()
module.handler(spec["event"], Context())
warm_s = time.perf_counter() - started
status = answer.get("statusCode") or ("allow" if answer.get("principalId") else "?")
print("%s%s" % (spec["mark"], json.dumps({
    "init_s": init_s, "model_load_s": model["s"], "model_at_init": model_at_init > 0,
    "first_invoke_s": first_s, "model_in_first_invoke": model_in_first > 0, "warm_invoke_s": warm_s,
    "status": status, "ru_maxrss_mb": peak_mb(),
})), flush=True)
"""


def _child_run(function: Function, env: dict[str, str]) -> dict[str, Any]:
    spec = {"path": str(FUNCTIONS_DIR / function.directory / "app.py"), "event": function.event, "mark": RESULT_MARK}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env={**env, **function.env},
                          capture_output=True, text=True, timeout=300, check=False)
    wall = time.perf_counter() - started
    line = next((x for x in done.stdout.splitlines() if x.startswith(RESULT_MARK)), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"{function.name} cold start failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(line[len(RESULT_MARK):])
    result["process_wall_s"] = wall
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _stream_run(key: str, env: dict[str, str]) -> dict[str, Any]:
    """stream_chat as Lambda starts it: run.sh → uvicorn; the adapter's readiness check, then one SSE answer."""
    import httpx

    directory = FUNCTIONS_DIR / "stream_chat"
    port = _free_port()
    context = {"authorizer": {"tenant_id": TENANT, "scopes": "chat", "key_id": "bench"}, "stage": STAGE}
    child_env = {**env, "PORT": str(port), "LAMBDA_TASK_ROOT": str(directory), "RAGLINE_AUTH_MODE": "authorizer",
                 "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    started = time.perf_counter()
    process = subprocess.Popen(["bash", str(directory / "run.sh")], cwd=directory, env=child_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                if process.poll() is not None:
                    raise BenchError(f"stream_chat exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}")
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.01)
            init_s = time.perf_counter() - started
            timings = []
            for _ in range(2):
                begun = time.perf_counter()
                with client.stream("POST", "/v1/kb/chat/stream", json={"query": "How long do refunds take?"},
                                   headers={"x-amzn-request-context": json.dumps(context)}) as response:
                    lines = [line for line in response.iter_lines() if line.startswith("data: ")]
                    if response.status_code != 200 or lines[-1] != "data: [DONE]":
                        raise BenchError(f"stream_chat answered {response.status_code}: {lines[-3:]}")
                timings.append(time.perf_counter() - begun)
        return {"init_s": init_s, "model_load_s": None, "first_invoke_s": timings[0], "warm_invoke_s": timings[1],
                "status": 200, "ru_maxrss_mb": _peak_rss_mb(process.pid), "process_wall_s": time.perf_counter() - started}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


# ---- the emulated stack ---------------------------------------------------------------------------
@contextmanager
def _stack(data_dir: Path) -> Iterator[tuple[dict[str, str], str]]:
    """A moto server with the stack's resources, a key and one indexed document; yields (env, key)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from ragline.adapters.aws import clients
    from ragline.adapters.aws.dynamodb_store import table_definitions
    from ragline.config import Settings
    from ragline.container import Container
    from ragline.keys import create_key

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    saved = dict(os.environ)
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        aws = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="bench",
                          aws_secret_access_key="bench")
        s3.create_bucket(Bucket=BUCKET)
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="bench",
                           aws_secret_access_key="bench")
        queue_url = sqs.create_queue(QueueName="ragline-bench-ingest")["QueueUrl"]
        sns = boto3.client("sns", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="bench",
                           aws_secret_access_key="bench")
        topic_arn = sns.create_topic(Name="ragline-bench-events")["TopicArn"]
        dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="bench",
                                aws_secret_access_key="bench")
        for definition in table_definitions(TABLE):
            dynamodb.create_table(**definition)
        env = {
            **{k: v for k, v in saved.items() if not k.startswith(("RAGLINE_", "ANTHROPIC_", "OPENSEARCH_"))},
            **aws,
            "RAGLINE_BACKEND": "aws", "RAGLINE_DATA_DIR": str(data_dir), "RAGLINE_TABLE_NAME": TABLE,
            "RAGLINE_DOCUMENTS_BUCKET": BUCKET, "RAGLINE_INGEST_QUEUE_URL": queue_url,
            "RAGLINE_EVENTS_TOPIC_ARN": topic_arn, "RAGLINE_AUTH_MODE": "key", "RAGLINE_LOG_LEVEL": "WARNING",
            "POWERTOOLS_SERVICE_NAME": "ragline", "POWERTOOLS_METRICS_NAMESPACE": "RaglineBench",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "RAGLINE_EMBEDDING_FAST_LOAD": "true",  # as template.yaml sets it for the API functions
            # Inside Lambda, Powertools' Tracer is on and patches boto3 & co. through the X-Ray SDK:
            # these make it behave so here (segments go to an unheard UDP port).
            "AWS_LAMBDA_FUNCTION_NAME": "ragline-bench", "LAMBDA_TASK_ROOT": str(FUNCTIONS_DIR),
            "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
        }
        os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS_", "RAGLINE_"))})
        clients.reset_clients()
        container = Container(Settings())
        key, _ = create_key(container.store, TENANT)
        accepted = container.ingest.accept(TENANT, SEED_TEXT.encode(), filename="policies.txt", content_type="text/plain")
        job = container.store.claim(accepted.job_id)
        if job is None:
            raise BenchError("could not claim the seed document's job")
        container.ingest.process(job)
        container.close()  # writes the embedded index where the functions will open it
        yield env, key
    finally:
        os.environ.clear()
        os.environ.update(saved)
        clients.reset_clients()
        server.stop()


def _fake_claude() -> tuple[Any, dict[str, str]] | None:
    """The test suite's fake Messages API, when this is a checkout with tests/ (else no Claude variant)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from tests.fakes.anthropic_server import FakeAnthropic
    except ImportError:
        return None
    fake = FakeAnthropic()
    fake.__enter__()
    fake.script(answer="Refunds are issued within fourteen days [1].")
    return fake, {"ANTHROPIC_API_KEY": fake.api_key, "ANTHROPIC_BASE_URL": fake.url}


def functions(key: str) -> list[Function]:
    """The deployed configuration: the authorizer checks the key, the others trust its context."""
    query = {"query": "How long do refunds take?", "limit": 5}
    context = {"tenant_id": TENANT, "scopes": "chat,ingest,search", "key_id": "bench"}
    trusting = {"RAGLINE_AUTH_MODE": "authorizer"}

    def api(method: str, path: str, body: Any) -> dict[str, Any]:
        return rest_event(method, path, key=key, body=body, authorizer=context)

    return [
        Function("authorizer", "authorizer", authorizer_event(key)),
        Function("search", "search", api("POST", "/v1/kb/search", query), trusting, budget=True),
        Function("chat", "chat", api("POST", "/v1/kb/chat", query), trusting, budget=True),
        Function("documents", "documents",
                 api("POST", "/v1/kb/documents", {"text": SEED_TEXT + " Uploaded again.", "title": "Again"}), trusting),
    ]


def run(args: argparse.Namespace, console: Console) -> Report:
    report = Report("coldstart")
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="ragline-coldstart-") as tmp, _stack(Path(tmp) / "data") as (env, key):
        todo = functions(key)
        fake = _fake_claude() if "chat+claude" not in args.skip else None
        if fake is not None:
            todo.append(Function("chat+claude", "chat", todo[2].event, env={**todo[2].env, **fake[1]}, budget=True))
        try:
            for function in todo:
                if function.name in args.skip:
                    continue
                console.print(f"[dim]{function.name}: {args.runs} cold starts…[/]")
                runs[function.name] = [_child_run(function, env) for _ in range(args.runs)]
            if "stream_chat" not in args.skip:
                console.print(f"[dim]stream_chat (run.sh → uvicorn): {args.runs} cold starts…[/]")
                runs["stream_chat"] = [_stream_run(key, env) for _ in range(args.runs)]
        finally:
            if fake is not None:
                fake[0].__exit__(None, None, None)

    rows, summary = [], {}
    for name, samples in runs.items():
        def med(field_name: str, samples: list[dict[str, Any]] = samples) -> float | None:
            values = [s[field_name] for s in samples if s.get(field_name) is not None]
            return median(values) if values else None

        model = med("model_load_s")
        cold = (med("init_s") or 0.0) + (med("first_invoke_s") or 0.0)
        without_model = cold - (model or 0.0)
        summary[name] = {
            "runs": len(samples), "init_s": med("init_s"), "model_load_s": model,
            "first_invoke_s": med("first_invoke_s"), "cold_total_s": cold, "cold_without_model_s": without_model,
            "warm_invoke_s": med("warm_invoke_s"), "peak_rss_mb": max(s["ru_maxrss_mb"] for s in samples),
            "process_wall_s": med("process_wall_s"), "status": samples[0]["status"],
            "model_at_init": samples[0].get("model_at_init"), "samples": samples,
        }
        rows.append([name, med("init_s"), model, med("first_invoke_s"), without_model, cold,
                     med("warm_invoke_s"), summary[name]["peak_rss_mb"], str(samples[0]["status"])])
        if any(f.name == name and f.budget for f in functions(key)) or name == "chat+claude":
            report.targets.append(at_most(f"{name}: init + first invocation without the model load", without_model,
                                          INIT_TARGET_S, "s"))
        if model is not None:
            report.targets.append(at_most(f"{name}: embedding-model load", model, MODEL_TARGET_S, "s"))
    report.figures = {"runs": args.runs, "functions": summary}
    console.print(make_table(
        f"cold start, medians of {args.runs} fresh interpreters (moto server; seconds, MB)",
        ["function", "init (import)", "of which model", "1st invoke", "cold − model", "cold total", "warm invoke",
         "peak RSS MB", "status"],
        rows,
        caption="init = import of functions/<name>/app.py (container, clients, app; search/chat load the model "
                "here); stream_chat: run.sh spawned → /health answers, 1st invoke = a whole SSE answer.",
    ))
    report.notes.append("moto server on 127.0.0.1 stands in for AWS: network latency to real DynamoDB/S3/SQS "
                        "(~5-20 ms per call in-region) is not in these figures; CPU is this machine's, not Lambda's.")
    return report


# ---- package sizes -----------------------------------------------------------------------------------
SMOKE = REPO / "infra" / "layers" / "smoke.py"
BUILD_DIR = REPO / ".aws-sam" / "build"


def _smoke() -> Any:
    """infra/layers/smoke.py, the one place package sizes are computed (a script, not part of ragline)."""
    import importlib.util

    if not SMOKE.is_file():
        raise BenchError(f"{SMOKE} not found: `ragline bench package` needs the repository checkout")
    spec = importlib.util.spec_from_file_location("ragline_layers_smoke", SMOKE)
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot load {SMOKE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _newest_mtime(root: Path) -> float:
    return max((p.stat().st_mtime for p in root.rglob("*.py") if "__pycache__" not in p.parts), default=0.0)


def run_package(args: argparse.Namespace, console: Console) -> Report:
    report = Report("package")
    smoke = _smoke()
    build_dir = args.build_dir or BUILD_DIR
    try:
        template = smoke.load_built(build_dir)
    except smoke.BuildMissing as exc:
        raise BenchError(f"{exc} (it builds the functions and both layers for python3.12; needs PyPI access)") from exc
    built_at = (build_dir / "template.yaml").stat().st_mtime
    sources = [REPO / "shared" / "ragline", FUNCTIONS_DIR, REPO / "infra" / "layers"]
    if any(_newest_mtime(root) > built_at for root in sources if root.is_dir()):
        stale = f"{build_dir} is older than shared/ragline, functions/ or infra/layers: run `make sam-build` again"
        console.print(f"[yellow]warning:[/] {stale}")
        report.notes.append(stale)
    sizes = smoke.measure_sizes(template, build_dir, top=args.top)
    for line in smoke.size_lines(sizes):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    mib = 1024 * 1024
    largest_name, largest = max(sizes["functions"].items(), key=lambda item: item[1]["total_bytes"])
    report.figures = {"build_dir": str(build_dir), **sizes}
    report.targets.append(at_most(f"largest function + its layers ({largest_name}), unzipped",
                                  round(largest["total_bytes"] / mib, 1), sizes["limit_bytes"] / mib, "MiB"))
    return report
