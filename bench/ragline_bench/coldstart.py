"""`ragline bench coldstart` and `ragline bench package`: what a Lambda cold start and the
deployment package cost, measured here.

coldstart: a moto server (in this process) stands in for S3, SQS, SNS and DynamoDB, with the
stack's resources, an API key and one indexed document. Each function then starts in a FRESH
interpreter, N times: import of its handler module (Lambda's init: container, clients, app), the
embedding-model load inside it (ONNX session creation, timed on its own), the first invocation
with a real event, a second (warm) one, and the process's peak RSS (ru_maxrss). The stream-chat
function is started as Lambda would start it, through run.sh (uvicorn): init is "spawned → /health
answers" (the Web Adapter's readiness check), the first invocation a whole SSE answer.
`chat+claude` is the chat function with Claude configured (against the fake Messages API of
ragline_emulator): the difference is what importing and building the Claude adapter costs (the Messages
API over httpx; there is no anthropic SDK).

Two sources (--source): `built`, the deployed artifact (`make sam-build` → .aws-sam/build): each
function runs as Lambda runs it, `python3.12 -S` with only its code, its layers and a stand-in for
the runtime's boto3 on sys.path, its environment from the built template, and OpenSearch (a stub
on 127.0.0.1 holding the seed document, requests SigV4-signed) as its vector index. `venv`: the
functions' sources in the dev venv (python 3.11, site-packages) with the embedded engine (faiss).

package: what is shipped, measured where `make sam-build` put it (.aws-sam/build): each built
layer and each function with its layers (per the built template), unzipped, against Lambda's
262,144,000-byte limit. The size code is infra/layers/smoke.py's (`smoke.py --sizes`), not a copy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline_bench.common import BenchError, Report, at_most, make_table, median

if TYPE_CHECKING:
    from rich.console import Console

REPO = Path(__file__).resolve().parents[2]
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
    headers = {
        "Host": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
        "User-Agent": "ragline-bench",
        "X-Forwarded-Proto": "https",
    }
    if key:
        headers["x-api-key"] = key
    text = None if body is None else json.dumps(body)
    if text is not None:
        headers["Content-Type"] = "application/json"
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "body": text,
        "isBase64Encoded": False,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "requestId": "bench-request",
            "resourcePath": "/{proxy+}",
            "identity": {"sourceIp": "127.0.0.1"},
            **({"authorizer": {**authorizer, "principalId": authorizer["key_id"]}} if authorizer else {}),
        },
    }


def authorizer_event(key: str) -> dict[str, Any]:
    event = rest_event("POST", "/v1/kb/search", key=key)
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/POST/v1/kb/search",
        **{
            k: event[k]
            for k in (
                "resource",
                "path",
                "httpMethod",
                "headers",
                "multiValueHeaders",
                "pathParameters",
                "requestContext",
            )
        },
    }


@dataclass
class Function:
    name: str
    directory: str
    event: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    budget: bool = False  # search and chat carry the ≤ 0.6 s target


# ---- the child: one cold start in a fresh interpreter (both sources) -------------------------------
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
model = {"s": 0.0}
if spec["time_model"]:  # every function imports ragline.container anyway; the framework floor does not
    import ragline.container as container_module
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
status = answer.get("statusCode") or ("allow" if answer.get("principalId") else "ok" if "redelivered" in answer else "?")
print("%s%s" % (spec["mark"], json.dumps({
    "init_s": init_s, "model_load_s": model["s"], "model_at_init": model_at_init > 0,
    "first_invoke_s": first_s, "model_in_first_invoke": model_in_first > 0, "warm_invoke_s": warm_s,
    "status": status, "ru_maxrss_mb": peak_mb(), "python": sys.version.split()[0],
    "error_body": None if status in ("allow", "ok") or (isinstance(status, int) and status < 300) else answer.get("body"),
})), flush=True)
"""


def import_breakdown(importtime_log: str) -> dict[str, float]:
    """Seconds spent running each top-level package's modules, from ``python -X importtime`` output:
    every module's self time (its body, without the imports it started) is charged to its root package
    (the standard library's together), so the figures add up to the whole import time and FastAPI's
    model classes count as FastAPI's."""
    charged: dict[str, float] = {}
    for line in importtime_log.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        root = parts[2].strip().split(".")[0]
        if root in sys.stdlib_module_names:
            root = "(standard library)"
        charged[root] = charged.get(root, 0.0) + int(parts[0]) / 1e6
    return dict(sorted(charged.items(), key=lambda item: -item[1]))


# The stack every API function stands on, and nothing of Ragline: FastAPI, Mangum, pydantic-settings,
# boto3 and Powertools' Logger, Metrics and Tracer (patching botocore, as lambda_entry does). Started
# like search (same interpreter, layers and environment), it is the floor under search's and chat's init.
FRAMEWORK_FLOOR_APP = """
import fastapi, mangum, pydantic_settings, boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
Logger(); Metrics(); Tracer(patch_modules=("botocore",))
def handler(event, context):
    return {"statusCode": 200, "body": ""}
"""


@dataclass(frozen=True)
class Launch:
    """How one function's fresh interpreter starts: the interpreter (argv), its handler module, cwd, environment."""

    interpreter: list[str]
    app: Path
    env: dict[str, str]
    cwd: Path | None = None
    times_model: bool = True  # False: an app that is not Ragline's (the framework floor)


def _child_run(name: str, event: dict[str, Any], launch: Launch) -> dict[str, Any]:
    spec = {"path": str(launch.app), "event": event, "mark": RESULT_MARK, "time_model": launch.times_model}
    started = time.perf_counter()
    done = subprocess.run(
        [*launch.interpreter, "-c", CHILD, json.dumps(spec)],
        cwd=launch.cwd,
        env=launch.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    wall = time.perf_counter() - started
    line = next((x for x in done.stdout.splitlines() if x.startswith(RESULT_MARK)), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"{name} cold start failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(line[len(RESULT_MARK) :])
    if result["error_body"] is not None:
        result["error_body"] = f"{str(result['error_body'])[:500]} | stderr: {done.stderr[-1500:]}"
    else:
        del result["error_body"]
    result["process_wall_s"] = wall
    return result


def _import_run(name: str, event: dict[str, Any], launch: Launch) -> tuple[dict[str, Any], dict[str, float]]:
    """One more cold start under ``-X importtime`` (slower: not one of the timed samples)."""
    spec = {"path": str(launch.app), "event": event, "mark": RESULT_MARK, "time_model": launch.times_model}
    done = subprocess.run(
        [*launch.interpreter, "-X", "importtime", "-c", CHILD, json.dumps(spec)],
        cwd=launch.cwd,
        env=launch.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith(RESULT_MARK)), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"{name} import breakdown failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(line[len(RESULT_MARK) :]), import_breakdown(done.stderr)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _stream_run(key: str, directory: Path, env: dict[str, str]) -> dict[str, Any]:
    """stream_chat as Lambda starts it: run.sh → uvicorn; the adapter's readiness check, then one SSE answer.

    The request carries what reaches the function behind API Gateway and the Web Adapter: the key
    (RAGLINE_AUTH_MODE=key checks it) and the request context with the authorizer's (authorizer mode)."""
    import httpx

    port = _free_port()
    context = {"authorizer": {"tenant_id": TENANT, "scopes": "chat", "key_id": "bench"}, "stage": STAGE}
    started = time.perf_counter()
    process = subprocess.Popen(
        ["bash", str(directory / "run.sh")],
        cwd=directory,
        env={**env, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                if process.poll() is not None:
                    raise BenchError(
                        f"stream_chat exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}"
                    )
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.01)
            init_s = time.perf_counter() - started
            timings = []
            for _ in range(2):
                begun = time.perf_counter()
                with client.stream(
                    "POST",
                    "/v1/kb/chat/stream",
                    json={"query": "How long do refunds take?"},
                    headers={"x-api-key": key, "x-amzn-request-context": json.dumps(context)},
                ) as response:
                    lines = [line for line in response.iter_lines() if line.startswith("data: ")]
                    if response.status_code != 200 or not lines or lines[-1] != "data: [DONE]":
                        raise BenchError(f"stream_chat answered {response.status_code}: {lines[-3:]}")
                timings.append(time.perf_counter() - begun)
        return {
            "init_s": init_s,
            "model_load_s": None,
            "first_invoke_s": timings[0],
            "warm_invoke_s": timings[1],
            "status": 200,
            "ru_maxrss_mb": _peak_rss_mb(process.pid),
            "process_wall_s": time.perf_counter() - started,
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


# ---- the emulated stack ---------------------------------------------------------------------------
# What a built function takes from the bench's stack rather than from its template: the moto endpoint
# and credentials, the region, and the names of the stack's resources.
STACK_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "RAGLINE_TABLE_NAME",
    "RAGLINE_DOCUMENTS_BUCKET",
    "RAGLINE_INGEST_QUEUE_URL",
    "RAGLINE_EVENTS_TOPIC_ARN",
)
# Inside Lambda, Powertools' Tracer is on and patches botocore through the X-Ray SDK: these make it
# behave so here (segments go to an unheard UDP port).
LAMBDA_VARIABLES = {
    "AWS_LAMBDA_FUNCTION_NAME": "ragline-bench",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
}


def _default_deployment_fast_load() -> str:
    """RAGLINE_EMBEDDING_FAST_LOAD as template.yaml sets it for the API functions, parameters at their defaults."""
    from ragline_emulator.provision import Resolver, load_template

    template = load_template(REPO / "template.yaml")
    value = template["Globals"]["Function"]["Environment"]["Variables"]["RAGLINE_EMBEDDING_FAST_LOAD"]
    return str(Resolver(template, stack_name="bench", region=REGION, account_id=ACCOUNT).resolve(value)).lower()


@contextmanager
def _stack(data_dir: Path, seed_env: dict[str, str] | None = None) -> Iterator[tuple[dict[str, str], str]]:
    """A moto server with the stack's resources, a key and one indexed document; yields (env, key).

    The document is ingested in this process with `seed_env` added to the environment: nothing (the
    embedded engine, written where the venv's functions open it) or OPENSEARCH_URL of the stub."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    from ragline.adapters.aws import clients
    from ragline.adapters.aws.dynamodb.table import table_definitions
    from ragline.config import Settings
    from ragline.container import Container
    from ragline.keys import create_key

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    saved = dict(os.environ)
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        aws = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="bench", aws_secret_access_key="bench"
        )
        s3.create_bucket(Bucket=BUCKET)
        sqs = boto3.client(
            "sqs", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="bench", aws_secret_access_key="bench"
        )
        queue_url = sqs.create_queue(QueueName="ragline-bench-ingest")["QueueUrl"]
        sns = boto3.client(
            "sns", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="bench", aws_secret_access_key="bench"
        )
        topic_arn = sns.create_topic(Name="ragline-bench-events")["TopicArn"]
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        for definition in table_definitions(TABLE):
            dynamodb.create_table(**definition)
        env = {
            **{k: v for k, v in saved.items() if not k.startswith(("RAGLINE_", "ANTHROPIC_", "OPENSEARCH_"))},
            **aws,
            "RAGLINE_BACKEND": "aws",
            "RAGLINE_DATA_DIR": str(data_dir),
            "RAGLINE_TABLE_NAME": TABLE,
            "RAGLINE_DOCUMENTS_BUCKET": BUCKET,
            "RAGLINE_INGEST_QUEUE_URL": queue_url,
            "RAGLINE_EVENTS_TOPIC_ARN": topic_arn,
            "RAGLINE_AUTH_MODE": "key",
            "RAGLINE_LOG_LEVEL": "WARNING",
            "POWERTOOLS_SERVICE_NAME": "ragline",
            "POWERTOOLS_METRICS_NAMESPACE": "RaglineBench",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "RAGLINE_EMBEDDING_FAST_LOAD": _default_deployment_fast_load(),
            **LAMBDA_VARIABLES,
            "LAMBDA_TASK_ROOT": str(FUNCTIONS_DIR),
        }
        os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS_", "RAGLINE_"))})
        os.environ.update(seed_env or {})
        clients.reset_clients()
        container = Container(Settings())
        key, _ = create_key(container.store, TENANT)
        accepted = container.ingest.accept(
            TENANT, SEED_TEXT.encode(), filename="policies.txt", content_type="text/plain"
        )
        job = container.store.claim(accepted.job_id)
        if job is None:
            raise BenchError("could not claim the seed document's job")
        container.ingest.process(job)
        container.close()  # the embedded engine writes its index where the functions will open it
        yield env, key
    finally:
        os.environ.clear()
        os.environ.update(saved)
        clients.reset_clients()
        server.stop()


def _fake_claude() -> tuple[Any, dict[str, str]]:
    """The emulator's fake Messages API, started, and the variables that point the chat function at it."""
    from ragline_emulator.anthropic_server import FakeAnthropic

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
        Function(
            "documents",
            "documents",
            api("POST", "/v1/kb/documents", {"text": SEED_TEXT + " Uploaded again.", "title": "Again"}),
            trusting,
        ),
        Function("events_redelivery", "events_redelivery", {}),  # its schedule's (empty) input; nothing held
    ]


# ---- what is measured: the built package or the dev venv --------------------------------------------
# The bench's OpenSearch stands for a domain (VectorStore=domain, the template's default): SigV4 for es.
BUILT_OPENSEARCH_AUTH = "sigv4-es"


def default_python312(environ: dict[str, str] | os._Environ[str], home: Path) -> str:
    """PYTHON312, else pyenv's 3.12.1 (what `make sam-build` builds with), else python3.12 on PATH."""
    if environ.get("PYTHON312"):
        return environ["PYTHON312"]
    pyenv = home / ".pyenv" / "versions" / "3.12.1" / "bin" / "python3.12"
    return str(pyenv) if pyenv.exists() else "python3.12"


def resolve_source(requested: str | None, build_dir: Path) -> str:
    """--source, or `built` when a build is there, else `venv`."""
    if requested is not None:
        return requested
    return "built" if (build_dir / "template.yaml").exists() else "venv"


def built_function_name(directory: str) -> str:
    """functions/<directory> → its logical id in the template (stream_chat → StreamChatFunction)."""
    return "".join(part.title() for part in directory.split("_")) + "Function"


def built_environment(
    template_values: dict[str, str],
    *,
    pythonpath: str,
    code: Path,
    stack_env: dict[str, str],
    scratch: Path,
    overrides: dict[str, str] | None = None,
) -> dict[str, str]:
    """A built function's environment as Lambda gives it: nothing of this process's, its template's
    variables (made local, parameters at their defaults: smoke.template_env), the stack's endpoint,
    credentials and resource names, the Lambda variables, then the bench's per-function overrides
    (chat+claude's fake Messages API: by default the template sets no Anthropic key)."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "PYTHONDONTWRITEBYTECODE": "1",  # /var/task and /opt are read-only on Lambda: no .pyc kept between starts
        "PYTHONPATH": pythonpath,
        **template_values,
        **{name: stack_env[name] for name in STACK_VARIABLES if name in stack_env},
        "AWS_SESSION_TOKEN": "bench",  # role credentials on Lambda carry a session token (signed along)
        **LAMBDA_VARIABLES,
        "LAMBDA_TASK_ROOT": str(code),
        **(overrides or {}),
    }


def _python_version(python: str) -> str:
    try:
        done = subprocess.run(
            [python, "-S", "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BenchError(f"{python} does not run ({exc}): pass --python312 or set PYTHON312") from exc
    version = done.stdout.strip()
    if not version.startswith("3.12."):
        raise BenchError(f"{python} is Python {version}, not Lambda's 3.12: pass --python312 or set PYTHON312")
    return version


def _python_wrapper(python312: str, directory: Path) -> Path:
    """A `python` for run.sh (`exec python -m uvicorn`): python3.12 -S, like the other functions' children
    (this machine's site-packages are not the runtime's). Returns the directory to put first on PATH."""
    found = shutil.which(python312)
    if found is None:
        raise BenchError(f"{python312} not found")
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(found)} -S "$@"\n')
    wrapper.chmod(0o755)
    return directory


@dataclass
class BuiltPackage:
    """The built template's functions, run as Lambda runs them against the bench's stack and stub."""

    smoke: Any  # infra/layers/smoke.py
    build_dir: Path
    python312: str
    sdk: Path
    opensearch: Any  # smoke.StubOpenSearch, set up by the seed's ingestion
    scratch: Path

    def __post_init__(self) -> None:
        self.template = self.smoke.load_built(self.build_dir)
        self.functions = self.smoke.functions(self.template, self.build_dir)

    def built(self, directory: str) -> dict[str, Any]:
        name = built_function_name(directory)
        if name not in self.functions:
            raise BenchError(f"{name} is not in {self.build_dir / 'template.yaml'}")
        return self.functions[name]

    def environment(self, directory: str, stack_env: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
        fn = self.built(directory)
        template_values = self.smoke.template_env(
            fn, self.template, self.opensearch.url, BUILT_OPENSEARCH_AUTH, self.scratch / "ragline"
        )
        return built_environment(
            template_values,
            pythonpath=self.smoke.function_pythonpath(fn, self.sdk),
            code=fn["code"],
            stack_env=stack_env,
            scratch=self.scratch,
            overrides=overrides,
        )

    def launch(self, function: Function, stack_env: dict[str, str]) -> Launch:
        code = self.built(function.directory)["code"]
        return Launch(
            [self.python312, "-S"],
            code / "app.py",
            self.environment(function.directory, stack_env, function.env),
            cwd=code,
        )

    def stream(self, stack_env: dict[str, str]) -> tuple[Path, dict[str, str]]:
        env = self.environment("stream_chat", stack_env, {})
        wrapper_dir = _python_wrapper(self.python312, self.scratch / "bin")
        return self.built("stream_chat")["code"], {**env, "PATH": f"{wrapper_dir}{os.pathsep}{env['PATH']}"}


def _venv_launch(function: Function, env: dict[str, str]) -> Launch:
    return Launch([sys.executable], FUNCTIONS_DIR / function.directory / "app.py", {**env, **function.env})


def _venv_stream(env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    directory = FUNCTIONS_DIR / "stream_chat"
    return directory, {
        **env,
        "LAMBDA_TASK_ROOT": str(directory),
        "RAGLINE_AUTH_MODE": "authorizer",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    }


def _opensearch_checks(name: str, requests: list[str]) -> list[str]:
    """What a function's children sent the stub that a deployed one, on a set-up domain, would not."""
    problems = []
    if any(not request.endswith("(SigV4)") for request in requests):
        problems.append(f"{name}: unsigned OpenSearch requests")
    writes = sorted({r for r in requests if r.startswith(("PUT", "DELETE")) or "/_bulk" in r or "_delete" in r})
    if writes:
        problems.append(f"{name}: wrote to the set-up cluster: {', '.join(writes)}")
    return problems


def run(args: argparse.Namespace, console: Console) -> Report:
    report = Report("coldstart")
    source = resolve_source(getattr(args, "source", None), BUILD_DIR)
    python312 = getattr(args, "python312", None) or default_python312(os.environ, Path.home())
    runs: dict[str, list[dict[str, Any]]] = {}
    opensearch_seen: dict[str, list[str]] = {}
    breakdowns: dict[str, tuple[dict[str, Any], dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="ragline-coldstart-") as tmp, ExitStack() as stack:
        scratch = Path(tmp)
        package: BuiltPackage | None = None
        if source == "built":
            smoke = _smoke()
            if not (BUILD_DIR / "template.yaml").exists():
                raise BenchError(f"{BUILD_DIR / 'template.yaml'} not found: run `make sam-build` first")
            stale = _stale_note(BUILD_DIR)
            if stale:
                console.print(f"[yellow]warning:[/] {stale}")
                report.notes.append(stale)
            python_version = _python_version(python312)
            opensearch = stack.enter_context(smoke.StubOpenSearch())
            sdk = smoke.runtime_sdk(python312, BUILD_DIR.parent / "smoke-cache")
            package = BuiltPackage(smoke, BUILD_DIR, python312, sdk, opensearch, scratch)
            # The seed document reaches the stub through the real adapter, so the children meet a set-up
            # cluster (alias, index, pipeline, the seed's chunk as ingestion wrote it) and this process
            # never needs the embedded engine.
            seed_env = {"OPENSEARCH_URL": opensearch.url, "RAGLINE_OPENSEARCH_AUTH_MODE": "none"}
            label = f"built package, python {python_version} -S, OpenSearch stub (SigV4)"
            vector_index = "OpenSearch stub on 127.0.0.1 (set up; requests SigV4-signed, sigv4-es)"
        else:
            if getattr(args, "source", None) is None:
                console.print(
                    "[yellow]note:[/] no .aws-sam/build: these are figures of the dev venv (python "
                    f"{platform.python_version()}, site-packages) and the embedded engine, not of the "
                    "deployed package; run `make sam-build` for those"
                )
            seed_env = {}
            python_version = platform.python_version()
            label = f"dev venv, python {python_version}, embedded engine"
            vector_index = "embedded (faiss)"
        env, key = stack.enter_context(_stack(scratch / "data", seed_env))
        todo = functions(key)
        fake = _fake_claude() if "chat+claude" not in args.skip else None
        if fake is not None:
            stack.callback(fake[0].__exit__, None, None, None)
            todo.append(Function("chat+claude", "chat", todo[2].event, env={**todo[2].env, **fake[1]}, budget=True))
        for function in todo:
            if function.name in args.skip:
                continue
            console.print(f"[dim]{function.name}: {args.runs} cold starts…[/]")
            launch = package.launch(function, env) if package else _venv_launch(function, env)
            if package:
                package.opensearch.requests.clear()
            runs[function.name] = [_child_run(function.name, function.event, launch) for _ in range(args.runs)]
            if getattr(args, "breakdown", False) and function.budget:
                breakdowns[function.name] = _import_run(function.name, function.event, launch)
            if function.name == "search" and "framework floor" not in args.skip:
                floor_app = scratch / "framework_floor" / "app.py"
                floor_app.parent.mkdir(exist_ok=True)
                floor_app.write_text(FRAMEWORK_FLOOR_APP)
                console.print(f"[dim]framework floor (search's stack without Ragline): {args.runs} cold starts…[/]")
                floor = replace(launch, app=floor_app, times_model=False)
                runs["framework floor"] = [
                    _child_run("framework floor", function.event, floor) for _ in range(args.runs)
                ]
            if package:
                opensearch_seen[function.name] = list(package.opensearch.requests)
        if "stream_chat" not in args.skip:
            console.print(f"[dim]stream_chat (run.sh → uvicorn): {args.runs} cold starts…[/]")
            directory, stream_env = package.stream(env) if package else _venv_stream(env)
            if package:
                package.opensearch.requests.clear()
            runs["stream_chat"] = [_stream_run(key, directory, stream_env) for _ in range(args.runs)]
            if package:
                opensearch_seen["stream_chat"] = list(package.opensearch.requests)

    rows, summary = [], {}
    for name, samples in runs.items():

        def med(field_name: str, samples: list[dict[str, Any]] = samples) -> float | None:
            values = [s[field_name] for s in samples if s.get(field_name) is not None]
            return median(values) if values else None

        model = med("model_load_s")
        cold = (med("init_s") or 0.0) + (med("first_invoke_s") or 0.0)
        without_model = cold - (model or 0.0)
        summary[name] = {
            "runs": len(samples),
            "init_s": med("init_s"),
            "model_load_s": model,
            "first_invoke_s": med("first_invoke_s"),
            "cold_total_s": cold,
            "cold_without_model_s": without_model,
            "warm_invoke_s": med("warm_invoke_s"),
            "peak_rss_mb": max(s["ru_maxrss_mb"] for s in samples),
            "process_wall_s": med("process_wall_s"),
            "status": samples[0]["status"],
            "model_at_init": samples[0].get("model_at_init"),
            "samples": samples,
        }
        if name in opensearch_seen:
            summary[name]["opensearch_requests"] = sorted(set(opensearch_seen[name]))
            report.notes.extend(_opensearch_checks(name, opensearch_seen[name]))
        failed = next((s["error_body"] for s in samples if "error_body" in s), None)
        if failed is not None:
            report.notes.append(f"{name} answered {samples[0]['status']}: {failed}")
        rows.append(
            [
                name,
                med("init_s"),
                model,
                med("first_invoke_s"),
                without_model,
                cold,
                med("warm_invoke_s"),
                summary[name]["peak_rss_mb"],
                str(samples[0]["status"]),
            ]
        )
        if any(f.name == name and f.budget for f in functions(key)) or name == "chat+claude":
            report.targets.append(
                at_most(f"{name}: init + first invocation without the model load", without_model, INIT_TARGET_S, "s")
            )
        if model:  # the authorizer and documents load no model: no target to report
            report.targets.append(at_most(f"{name}: embedding-model load", model, MODEL_TARGET_S, "s"))
    report.figures = {
        "runs": args.runs,
        "source": source,
        "source_label": label,
        "python": python_version,
        "vector_index": vector_index,
        "functions": summary,
    }
    if package is not None:
        report.figures.update(
            {
                "build_dir": str(BUILD_DIR),
                "python312": python312,
                "runtime_sdk": f"{package.smoke.RUNTIME_SDK} (stand-in for the runtime's, byte-compiled)",
            }
        )
    app = (
        ".aws-sam/build/<Function>/app.py with only its layers and boto3 on sys.path"
        if package
        else "functions/<name>/app.py"
    )
    console.print(
        make_table(
            f"cold start: {label}; medians of {args.runs} fresh interpreters (moto server; seconds, MB)",
            [
                "function",
                "init (import)",
                "of which model",
                "1st invoke",
                "cold − model",
                "cold total",
                "warm invoke",
                "peak RSS MB",
                "status",
            ],
            rows,
            caption=f"measured: {label}. init = import of {app} (container, clients, app; search/chat load the model "
            "here); stream_chat: run.sh spawned → /health answers, 1st invoke = a whole SSE answer.",
        )
    )
    for name, (sample, charged) in breakdowns.items():
        imported = sum(charged.values())
        top = list(charged.items())[:12]
        rest = imported - sum(seconds for _, seconds in top)
        console.print(
            make_table(
                f"{name}: where init goes (one extra start under -X importtime, which slows imports a little)",
                ["part", "seconds"],
                [
                    *([package, seconds] for package, seconds in top),
                    ["other imports", rest],
                    ["init beyond imports (clients, model session, app)", max(sample["init_s"] - imported, 0.0)],
                    ["model load (its imports are in the rows above)", sample["model_load_s"]],
                    ["1st invocation", sample["first_invoke_s"]],
                ],
                caption="each module's own import time, charged to its root package (imports from the model load included)",
            )
        )
        summary[name]["import_breakdown_s"] = charged
        summary[name]["breakdown_sample"] = {k: sample[k] for k in ("init_s", "model_load_s", "first_invoke_s")}
    from rich.markup import escape

    for note in report.notes:
        if note.startswith(tuple(runs)):  # a function answered an error, or used OpenSearch unlike a deployed one
            console.print(f"[yellow]warning:[/] {escape(note)}")
    report.notes.append(
        "moto server on 127.0.0.1 stands in for AWS: network latency to real DynamoDB/S3/SQS "
        "(~5-20 ms per call in-region) is not in these figures; CPU is this machine's, not Lambda's."
    )
    if package is not None:
        report.notes.append(
            "OpenSearch is a stub on 127.0.0.1: a domain's round trips (alias, mapping and pipeline "
            "checks at init, then a k-NN, a keyword and a payload search per query) are not in "
            "these figures."
        )
    return report


# ---- package sizes -----------------------------------------------------------------------------------
SMOKE = REPO / "infra" / "layers" / "smoke.py"
BUILD_DIR = REPO / ".aws-sam" / "build"


def _smoke() -> Any:
    """infra/layers/smoke.py, the one place package sizes are computed (a script, not part of ragline)."""
    import importlib.util

    if not SMOKE.is_file():
        raise BenchError(
            f"{SMOKE} not found: `ragline bench package` and `coldstart --source built` need the repository checkout"
        )
    spec = importlib.util.spec_from_file_location("ragline_layers_smoke", SMOKE)
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot load {SMOKE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _newest_mtime(root: Path) -> float:
    return max((p.stat().st_mtime for p in root.rglob("*.py") if "__pycache__" not in p.parts), default=0.0)


def _stale_note(build_dir: Path) -> str | None:
    """A warning when sources changed after the build: its figures would not be of this checkout."""
    built_at = (build_dir / "template.yaml").stat().st_mtime
    sources = [REPO / "shared" / "ragline", FUNCTIONS_DIR, REPO / "infra" / "layers"]
    if any(_newest_mtime(root) > built_at for root in sources if root.is_dir()):
        return f"{build_dir} is older than shared/ragline, functions/ or infra/layers: run `make sam-build` again"
    return None


def run_package(args: argparse.Namespace, console: Console) -> Report:
    report = Report("package")
    smoke = _smoke()
    build_dir = args.build_dir or BUILD_DIR
    try:
        template = smoke.load_built(build_dir)
    except smoke.BuildMissing as exc:
        raise BenchError(f"{exc} (it builds the functions and both layers for python3.12; needs PyPI access)") from exc
    stale = _stale_note(build_dir)
    if stale:
        console.print(f"[yellow]warning:[/] {stale}")
        report.notes.append(stale)
    sizes = smoke.measure_sizes(template, build_dir, top=args.top)
    for line in smoke.size_lines(sizes):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    mib = 1024 * 1024
    largest_name, largest = max(sizes["functions"].items(), key=lambda item: item[1]["total_bytes"])
    report.figures = {"build_dir": str(build_dir), **sizes}
    report.targets.append(
        at_most(
            f"largest function + its layers ({largest_name}), unzipped",
            round(largest["total_bytes"] / mib, 1),
            sizes["limit_bytes"] / mib,
            "MiB",
        )
    )
    return report
