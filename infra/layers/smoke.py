"""Checks `sam build`'s output the way Lambda would load it, and prints the package sizes.

For every function of the built template (.aws-sam/build/template.yaml), a fresh `python3.12 -S`
(no site-packages, no project venv, a clean environment) gets PYTHONPATH = the function's build dir
+ its layers' python/ dirs + a stand-in for the runtime's boto3 (the layers do not ship it) and:

- imports the handler module, as Lambda's init does (`import app`); the stream function also
  imports `uvicorn.main` (run.sh starts `python -m uvicorn`);
- functions with the EmbeddingLayer build the ONNX embedder and embed a sentence;
- the ingest function parses an HTML page and a real PDF (when ../shared/pdfs is there);
- the chat functions build the Claude answer model (the httpx adapter, no anthropic SDK; nothing is sent);
- the documents function answers GET /health through its real handler (Mangum, Powertools);
- functions without the EmbeddingLayer must not find onnxruntime; nothing may find the packages
  left out on purpose (faiss, yaml, rich, watchdog, sympy, huggingface_hub, grpc, protobuf, anthropic).

A stub OpenSearch on 127.0.0.1 answers the index/pipeline set-up the functions do at init
(SigV4-signed for es with dummy credentials, or unsigned with --opensearch-auth-mode none). Nothing else is contacted:
AWS clients are created at init but not called.

    python infra/layers/smoke.py              # import checks + sizes
    python infra/layers/smoke.py --sizes      # sizes only (make sam-build; `ragline bench package` runs the same code)
    python infra/layers/smoke.py --no-sizes   # import checks only (make package-check, after sam-build)

Run it with the project's venv python (it needs PyYAML to read the template); the checks run in
python3.12 (PYTHON312, default: python3.12 on PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 262_144_000  # Lambda: "Unzipped size must be smaller than 262144000 bytes" (= 250 MiB)
LIMIT_MB_BYTES = 250_000_000  # 250 MB read as decimal megabytes, the stricter reading
MIB, MB = 1024 * 1024, 1_000_000
# Stands in for the boto3 of Lambda's python3.12 runtime (/var/runtime, after /opt/python on sys.path).
RUNTIME_SDK = ("boto3==1.40.4", "botocore==1.40.4", "s3transfer==0.13.1")
LEFT_OUT = ("faiss", "yaml", "rich", "watchdog", "sympy", "mpmath", "huggingface_hub", "grpc", "google.protobuf",
            "fontTools", "uvloop", "httptools", "watchfiles", "websockets",
            "anthropic")  # the Claude adapter speaks the Messages API over httpx
REGION = "us-east-1"
# A real two-column paper (../shared, when present): the ingest function parses it with the layer's pypdf.
SAMPLE_PDF = REPO.parent / "shared" / "pdfs" / "tracemonkey-pldi09.pdf"


# ---- the built template ------------------------------------------------------------------------------
class _AnyTagLoader(yaml.SafeLoader):
    """Reads CloudFormation short tags (!Ref, !Sub, ...) as {"Ref": ...}/{"Fn::Sub": ...}."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if name == "Fn::GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_AnyTagLoader.add_multi_constructor("!", _construct_tag)


class BuildMissing(FileNotFoundError):
    """No `sam build` output where it was looked for."""


def load_built(build_dir: Path) -> dict[str, Any]:
    path = build_dir / "template.yaml"
    if not path.exists():
        raise BuildMissing(f"{path} not found: run `make sam-build` first")
    return yaml.load(path.read_text(), Loader=_AnyTagLoader)  # noqa: S506 -- SafeLoader subclass


def functions(template: dict[str, Any], build_dir: Path) -> dict[str, dict[str, Any]]:
    """name -> code dir, layer dirs (ours), external layers, environment (template values)."""
    resources = template["Resources"]
    globals_function = template.get("Globals", {}).get("Function", {})
    found = {}
    for name, spec in resources.items():
        if spec["Type"] != "AWS::Serverless::Function":
            continue
        props = spec["Properties"]
        layers = list(globals_function.get("Layers", [])) + list(props.get("Layers", []))
        ours = [ref["Ref"] for ref in layers if isinstance(ref, dict) and "Ref" in ref]
        env = dict(globals_function.get("Environment", {}).get("Variables", {}))
        env.update(props.get("Environment", {}).get("Variables", {}))
        found[name] = {
            "code": build_dir / props["CodeUri"],
            "layers": {layer: build_dir / resources[layer]["Properties"]["ContentUri"] for layer in ours},
            "external_layers": [layer for layer in layers if not (isinstance(layer, dict) and "Ref" in layer)],
            "env": env,
            "runtime": props.get("Runtime", globals_function.get("Runtime")),
        }
    return found


# ---- sizes -------------------------------------------------------------------------------------------
def tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for file in files:
            path = Path(folder, file)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def _fmt(size: int) -> str:
    return f"{size / MIB:8.1f} MiB {size / MB:8.1f} MB"


def measure_sizes(template: dict[str, Any], build_dir: Path, *, top: int = 8) -> dict[str, Any]:
    """Unzipped bytes of each built layer (and its largest parts) and each function with its layers.
    The one place sizes are computed: `smoke.py --sizes` prints them, `ragline bench package` reports them."""
    fns = functions(template, build_dir)
    layer_dirs = {layer: path for fn in fns.values() for layer, path in fn["layers"].items()}
    layers: dict[str, dict[str, Any]] = {}
    for layer, path in sorted(layer_dirs.items()):
        python = path / "python"
        parts: dict[str, int] = {}
        for entry in python.iterdir() if python.is_dir() else ():
            key = entry.name.split("-")[0].lower() if entry.name.endswith(".dist-info") else entry.name
            parts[key] = parts.get(key, 0) + (tree_bytes(entry) if entry.is_dir() else entry.stat().st_size)
        largest = dict(sorted(parts.items(), key=lambda item: -item[1])[:top])
        layers[layer] = {"bytes": tree_bytes(path), "largest_parts_bytes": largest}
    functions_out: dict[str, dict[str, Any]] = {}
    for name, fn in sorted(fns.items()):
        code = tree_bytes(fn["code"])
        total = code + sum(layers[layer]["bytes"] for layer in fn["layers"])
        functions_out[name] = {"code_bytes": code, "layers": list(fn["layers"]), "total_bytes": total,
                               "external_layers": len(fn["external_layers"]), "fits": total < LIMIT_BYTES}
    return {"limit_bytes": LIMIT_BYTES, "limit_mb_bytes": LIMIT_MB_BYTES, "layers": layers,
            "functions": functions_out, "fits": all(fn["fits"] for fn in functions_out.values())}


def size_lines(sizes: dict[str, Any]) -> list[str]:
    """The size table, as text lines."""
    lines = ["", "Layer sizes (unzipped; bytes of regular files)"]
    for layer, info in sizes["layers"].items():
        lines.append(f"  {layer:<26}{_fmt(info['bytes'])}")
        lines.append("      largest: " + ", ".join(f"{name} {size / MIB:.1f}"
                                                   for name, size in info["largest_parts_bytes"].items()) + " (MiB)")
    lines.append("")
    lines.append(f"Functions (limit: function + layers < {LIMIT_BYTES:,} bytes = 250 MiB; 250 MB = {LIMIT_MB_BYTES:,})")
    lines.append(f"  {'function':<22}{'code':>10}  {'layers':<28}{'total':>26}  {'vs 250 MiB':>10} {'vs 250 MB':>10}")
    for name, fn in sizes["functions"].items():
        total = fn["total_bytes"]
        layers = "+".join(layer.removesuffix("Layer") for layer in fn["layers"])
        if fn["external_layers"]:
            layers += " +LWA*"
        lines.append(f"  {name:<22}{fn['code_bytes'] / 1024:7.1f} KiB  {layers:<28}{_fmt(total)}  "
                     f"{100 * total / LIMIT_BYTES:9.1f}% {100 * total / LIMIT_MB_BYTES:9.1f}%")
    if any(fn["external_layers"] for fn in sizes["functions"].values()):
        lines.append("  * +LWA: the AWS Lambda Web Adapter layer (published by AWS, not in the build) is not counted.")
    return lines


def print_sizes(template: dict[str, Any], build_dir: Path, *, top: int = 8) -> bool:
    sizes = measure_sizes(template, build_dir, top=top)
    print("\n".join(size_lines(sizes)))
    return bool(sizes["fits"])


# ---- a stub OpenSearch -------------------------------------------------------------------------------
class _StubOpenSearch(BaseHTTPRequestHandler):
    """Enough of the REST API for the adapter's ensure_index() and an empty search."""

    requests: list[str] = []

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict[str, Any] | None) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        signed = "AWS4-HMAC-SHA256" in (self.headers.get("authorization") or "")
        type(self).requests.append(f"{self.command} {self.path.split('?')[0]}{' (SigV4)' if signed else ''}")
        path = self.path.split("?")[0]
        if self.command == "HEAD":
            self._answer(404, None)  # no alias, no index yet: the adapter creates them
        elif self.command == "GET" and path.startswith("/_search/pipeline"):
            self._answer(404, {"error": {"type": "resource_not_found_exception"}, "status": 404})
        elif path.endswith("/_search") or path.endswith("/_msearch"):
            self._answer(200, {"took": 1, "timed_out": False,
                               "hits": {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []}})
        elif self.command == "PUT":
            self._answer(200, {"acknowledged": True, "shards_acknowledged": True, "index": path.strip("/")})
        else:
            self._answer(200, {})

    do_HEAD = do_GET = do_PUT = do_POST = do_DELETE = _handle


# ---- the checks --------------------------------------------------------------------------------------
CHILD = r"""
import importlib.util, json, sys, time
cfg = json.loads(sys.argv[1])
result = {"python": sys.version.split()[0]}
t0 = time.perf_counter()
import app  # the handler module, as Lambda's init imports it
result["import_app_s"] = round(time.perf_counter() - t0, 2)
if cfg["stream"]:
    import uvicorn.main  # run.sh: python -m uvicorn ... app:app
    assert app.app is not None
if cfg["embedding"]:
    from ragline.config import Settings
    from ragline.container import build_embedder
    vector = build_embedder(Settings()).embed_query("hello")
    assert len(vector) == 384, len(vector)
    result["embedding_dims"] = len(vector)
else:
    assert importlib.util.find_spec("onnxruntime") is None, "onnxruntime is importable without the EmbeddingLayer"
    assert importlib.util.find_spec("tokenizers") is None
if cfg["ingest"]:
    from ragline.ingest.parsers import parse  # pypdf and bs4 are imported when a document arrives
    html = parse(b"<html><head><title>T</title></head><body><h1>Smoke</h1><p>hello</p></body></html>", "text/html")
    result["html_blocks"] = len(list(html.blocks))
    if cfg["pdf"]:
        with open(cfg["pdf"], "rb") as file:
            pdf = parse(file.read(), "application/pdf")
        result["pdf_chars"] = sum(len(block.text) for block in pdf.blocks)
if cfg["chat"]:
    from ragline.config import Settings
    from ragline.container import build_answerer
    result["answerer"] = type(build_answerer(Settings())).__name__  # ANTHROPIC_API_KEY is set: Claude, nothing sent
if cfg["documents"]:
    import types
    event = {"resource": "/health", "path": "/health", "httpMethod": "GET", "headers": {"Host": "x"},
             "multiValueHeaders": {"Host": ["x"]}, "queryStringParameters": None,
             "multiValueQueryStringParameters": None, "pathParameters": None, "stageVariables": None,
             "requestContext": {"resourcePath": "/health", "httpMethod": "GET", "path": "/dev/health",
                                "stage": "dev", "requestId": "smoke-1", "identity": {"sourceIp": "127.0.0.1"}},
             "body": None, "isBase64Encoded": False}
    context = types.SimpleNamespace(function_name="smoke", function_version="$LATEST", memory_limit_in_mb=1024,
                                    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:smoke",
                                    aws_request_id="smoke-1")
    response = app.handler(event, context)
    assert response["statusCode"] == 200, response
    result["GET /health"] = json.loads(response["body"])
    t0 = time.perf_counter()
    app.container.ingest  # what uploads and deletes build: needs the embedder (and the index)
    result["container.ingest_s"] = round(time.perf_counter() - t0, 2)
    result["documents_loads_onnxruntime"] = "onnxruntime" in sys.modules
import boto3, botocore
result["boto3"] = boto3.__version__ + " from " + boto3.__file__.split("/")[-3]
found = [name for name in cfg["left_out"] if importlib.util.find_spec(name.split(".")[0]) is not None
         and (("." not in name) or importlib.util.find_spec(name) is not None)]
assert not found, f"left-out packages are importable: {found}"
result["modules"] = len(sys.modules)
print("RESULT " + json.dumps(result))
"""


def runtime_sdk(python312: str, cache: Path) -> Path:
    target = cache / ("runtime-sdk-" + "-".join(spec.split("==")[1] for spec in RUNTIME_SDK[:1]))
    if not (target / "boto3").is_dir():
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([python312, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "--no-compile", "--target", str(target), *RUNTIME_SDK], check=True)
    return target


def dummy_env(name: str, value: Any, opensearch_url: str, auth_mode: str, data_dir: Path) -> str | None:
    if name == "AWS_LAMBDA_EXEC_WRAPPER":
        return None  # the Web Adapter's bootstrap is not here
    if name == "RAGLINE_DATA_DIR":
        return str(data_dir)
    if name == "OPENSEARCH_URL":
        return opensearch_url
    if name == "RAGLINE_OPENSEARCH_AUTH_MODE":
        return auth_mode
    if isinstance(value, str):
        return value
    return {
        "RAGLINE_DOCUMENTS_BUCKET": "smoke-documents-123456789012",
        "RAGLINE_INGEST_QUEUE_URL": f"https://sqs.{REGION}.amazonaws.com/123456789012/smoke-ingest",
        "RAGLINE_EVENTS_TOPIC_ARN": f"arn:aws:sns:{REGION}:123456789012:smoke-events",
        "RAGLINE_TABLE_NAME": "smoke-metadata",
        "RAGLINE_EMBEDDING_PROVIDER": "local",
        "RAGLINE_BEDROCK_MODEL_ID": "amazon.titan-embed-text-v2:0",
        "ANTHROPIC_API_KEY": "sk-ant-smoke-not-a-key",
    }.get(name, f"smoke-{name.lower()}")


def check_imports(template: dict[str, Any], build_dir: Path, python312: str, auth_mode: str) -> bool:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubOpenSearch)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    sdk = runtime_sdk(python312, build_dir.parent / "smoke-cache")
    ok = True
    try:
        for name, fn in sorted(functions(template, build_dir).items()):
            if fn["runtime"] != "python3.12":
                print(f"FAIL {name}: runtime {fn['runtime']}")
                ok = False
            with tempfile.TemporaryDirectory(prefix="ragline-smoke-") as tmp:
                env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": tmp, "TMPDIR": tmp,
                       "PYTHONDONTWRITEBYTECODE": "1",  # /var/task and /opt are read-only on Lambda
                       "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                       "AWS_ACCESS_KEY_ID": "smoke", "AWS_SECRET_ACCESS_KEY": "smoke", "AWS_SESSION_TOKEN": "smoke",
                       "PYTHONPATH": os.pathsep.join([str(fn["code"])] + [str(d / "python") for d in
                                                                          fn["layers"].values()] + [str(sdk)])}
                for key, value in fn["env"].items():
                    resolved = dummy_env(key, value, url, auth_mode, Path(tmp) / "ragline")
                    if resolved is not None:
                        env[key] = resolved
                cfg = {"embedding": "EmbeddingLayer" in fn["layers"], "stream": name == "StreamChatFunction",
                       "chat": name in ("ChatFunction", "StreamChatFunction"),
                       "documents": name == "DocumentsFunction", "ingest": name == "IngestFunction",
                       "pdf": str(SAMPLE_PDF) if SAMPLE_PDF.exists() else None, "left_out": LEFT_OUT}
                _StubOpenSearch.requests = []
                started = time.perf_counter()
                done = subprocess.run([python312, "-S", "-c", CHILD, json.dumps(cfg)], cwd=fn["code"], env=env,
                                      capture_output=True, text=True, timeout=300, check=False)
                took = time.perf_counter() - started
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                ok = False
                print(f"FAIL {name} ({took:.1f} s)\n{done.stderr[-3000:]}")
                continue
            result = json.loads(lines[-1].removeprefix("RESULT "))
            calls = sorted(set(_StubOpenSearch.requests))
            print(f"ok   {name:<22} {took:5.1f} s  layers={'+'.join(fn['layers'])}  {json.dumps(result)}")
            if calls:
                print(f"       OpenSearch stub saw: {', '.join(calls)}")
    finally:
        server.shutdown()
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=REPO / ".aws-sam" / "build")
    parser.add_argument("--sizes", action="store_true", help="the size table only (fails when over the limit)")
    parser.add_argument("--no-sizes", action="store_true", help="the import checks only")
    parser.add_argument("--python312", default=os.environ.get("PYTHON312", "python3.12"))
    # sigv4-es: VectorStore=domain (the template's default). OpenSearch Serverless (sigv4-aoss) is not
    # supported by the adapter, and not an option of the template (infra/README.md).
    parser.add_argument("--opensearch-auth-mode", default="sigv4-es", choices=["none", "sigv4-es"])
    args = parser.parse_args(argv)
    try:
        template = load_built(args.build_dir)
    except BuildMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    started = time.perf_counter()
    ok = True
    if not args.sizes:
        print(f"Import checks in {args.python312} -S, PYTHONPATH = function + its layers + boto3 "
              f"{RUNTIME_SDK[0].split('==')[1]} (stand-in for the runtime's)")
        print(f"OpenSearch: a stub on 127.0.0.1, RAGLINE_OPENSEARCH_AUTH_MODE={args.opensearch_auth_mode}")
        ok = check_imports(template, args.build_dir, args.python312, args.opensearch_auth_mode)
    fits = True if args.no_sizes else print_sizes(template, args.build_dir)
    if not fits:
        print("FAIL: a function with its layers is over Lambda's unzipped limit")
    if not args.sizes:
        print(f"\npackage check {'passed' if ok and fits else 'FAILED'} in {time.perf_counter() - started:.1f} s")
    return 0 if ok and fits else 1


if __name__ == "__main__":
    sys.exit(main())
