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
  left out on purpose (faiss, yaml, rich, watchdog, sympy, huggingface_hub, grpc, protobuf, anthropic,
  ragline_emulator, ragline_bench).

A stub OpenSearch on 127.0.0.1 (StubOpenSearch, emptied for each function) answers the index
set-up the functions do at init (SigV4-signed for es with dummy credentials, or unsigned
with --opensearch-auth-mode none); `ragline bench coldstart` uses the same stub, set up, as the
cluster of a deployed stack. Nothing else is contacted: AWS clients are created at init but not called.

    python infra/layers/smoke.py              # import checks + sizes
    python infra/layers/smoke.py --sizes      # sizes only (make sam-build; `ragline bench package` runs the same code)
    python infra/layers/smoke.py --no-sizes   # import checks only (make package-check, after sam-build)

Run it with the project's venv python (it needs PyYAML to read the template); the checks run in
python3.12 (PYTHON312, default: python3.12 on PATH).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import yaml

REPO = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 262_144_000  # Lambda: "Unzipped size must be smaller than 262144000 bytes" (= 250 MiB)
LIMIT_MB_BYTES = 250_000_000  # 250 MB read as decimal megabytes, the stricter reading
MIB, MB = 1024 * 1024, 1_000_000
# Stands in for the boto3 of Lambda's python3.12 runtime (/var/runtime, after /opt/python on sys.path).
RUNTIME_SDK = ("boto3==1.40.4", "botocore==1.40.4", "s3transfer==0.13.1")
LEFT_OUT = (
    "faiss",
    "yaml",
    "rich",
    "watchdog",
    "sympy",
    "mpmath",
    "huggingface_hub",
    "grpc",
    "google.protobuf",
    "fontTools",
    "uvloop",
    "httptools",
    "watchfiles",
    "websockets",
    "anthropic",  # the Claude adapter speaks the Messages API over httpx
    "ragline_emulator",  # the checkout's tooling: `serve --backend aws`, the tests, the benchmarks
    "ragline_bench",
)
REGION = "us-east-1"
# Template parameters the checks set instead of their defaults: a key, so the chat functions build the
# Claude adapter (nothing is sent).
SMOKE_PARAMETERS = {"AnthropicApiKey": "sk-ant-smoke-not-a-key"}
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
        functions_out[name] = {
            "code_bytes": code,
            "layers": list(fn["layers"]),
            "total_bytes": total,
            "external_layers": len(fn["external_layers"]),
            "fits": total < LIMIT_BYTES,
        }
    return {
        "limit_bytes": LIMIT_BYTES,
        "limit_mb_bytes": LIMIT_MB_BYTES,
        "layers": layers,
        "functions": functions_out,
        "fits": all(fn["fits"] for fn in functions_out.values()),
    }


def size_lines(sizes: dict[str, Any]) -> list[str]:
    """The size table, as text lines."""
    lines = ["", "Layer sizes (unzipped; bytes of regular files)"]
    for layer, info in sizes["layers"].items():
        lines.append(f"  {layer:<26}{_fmt(info['bytes'])}")
        lines.append(
            "      largest: "
            + ", ".join(f"{name} {size / MIB:.1f}" for name, size in info["largest_parts_bytes"].items())
            + " (MiB)"
        )
    lines.append("")
    lines.append(f"Functions (limit: function + layers < {LIMIT_BYTES:,} bytes = 250 MiB; 250 MB = {LIMIT_MB_BYTES:,})")
    lines.append(f"  {'function':<22}{'code':>10}  {'layers':<28}{'total':>26}  {'vs 250 MiB':>10} {'vs 250 MB':>10}")
    for name, fn in sizes["functions"].items():
        total = fn["total_bytes"]
        layers = "+".join(layer.removesuffix("Layer") for layer in fn["layers"])
        if fn["external_layers"]:
            layers += " +LWA*"
        lines.append(
            f"  {name:<22}{fn['code_bytes'] / 1024:7.1f} KiB  {layers:<28}{_fmt(total)}  "
            f"{100 * total / LIMIT_BYTES:9.1f}% {100 * total / LIMIT_MB_BYTES:9.1f}%"
        )
    if any(fn["external_layers"] for fn in sizes["functions"].values()):
        lines.append("  * +LWA: the AWS Lambda Web Adapter layer (published by AWS, not in the build) is not counted.")
    return lines


def print_sizes(template: dict[str, Any], build_dir: Path, *, top: int = 8) -> bool:
    sizes = measure_sizes(template, build_dir, top=top)
    print("\n".join(size_lines(sizes)))
    return bool(sizes["fits"])


# ---- a stub OpenSearch -------------------------------------------------------------------------------
class StubUnsupported(ValueError):
    """A request or query the stub does not model: answered 400, so a gap shows instead of a wrong answer."""


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def _values(source: dict[str, Any], name: str) -> list[Any]:
    value = source.get(name)
    return value if isinstance(value, list) else [value]


def query_matches(query: dict[str, Any], source: dict[str, Any]) -> bool:
    """Whether a stored chunk matches a query, for the query shapes the adapter builds for its reads,
    counts and deletes (opensearch/queries.py): bool, term(s) on keyword fields, match, knn (its filter)."""
    ((kind, body),) = query.items()
    if kind == "match_all":
        return True
    if kind == "match_none":
        return False
    if kind == "term":
        ((name, value),) = body.items()
        return (value["value"] if isinstance(value, dict) else value) in _values(source, name)
    if kind == "terms":
        ((name, wanted),) = body.items()
        return any(value in _values(source, name) for value in wanted)
    if kind == "match":
        ((name, spec),) = body.items()
        return bool(_words(spec["query"] if isinstance(spec, dict) else spec) & _words(str(source.get(name, ""))))
    if kind == "knn":
        ((_, spec),) = body.items()
        return "filter" not in spec or query_matches(spec["filter"], source)
    if kind == "bool":
        required = [*body.get("filter", []), *body.get("must", [])]
        should = body.get("should", [])
        least = int(body.get("minimum_should_match", 0 if required else 1)) if should else 0
        return (
            all(query_matches(clause, source) for clause in required)
            and not any(query_matches(clause, source) for clause in body.get("must_not", []))
            and sum(query_matches(clause, source) for clause in should) >= least
        )
    raise StubUnsupported(f"query {kind!r}")


def query_score(query: dict[str, Any], source: dict[str, Any]) -> float:
    """k-NN: (1 + cos) / 2 (faiss cosinesimil on OpenSearch 2.19+); match: query words found (a stand-in
    for BM25); bool: its scoring clauses summed; filters score nothing."""
    ((kind, body),) = query.items()
    if kind == "knn":
        ((name, spec),) = body.items()
        stored, asked = source.get(name) or [], spec["vector"]
        norms = math.sqrt(sum(x * x for x in stored)) * math.sqrt(sum(x * x for x in asked))
        return (1.0 + sum(a * b for a, b in zip(stored, asked)) / norms) / 2.0 if norms else 0.0
    if kind == "match":
        ((name, spec),) = body.items()
        return float(len(_words(spec["query"] if isinstance(spec, dict) else spec) & _words(str(source.get(name, "")))))
    if kind == "bool":
        return sum(query_score(clause, source) for clause in [*body.get("must", []), *body.get("should", [])])
    return 0.0


class StubOpenSearch(ThreadingHTTPServer):
    """An OpenSearch on 127.0.0.1 that keeps in memory what it is sent: index definitions (with their
    alias) and bulk-indexed chunks, and answers the adapter's set-up, writes, searches,
    counts and deletes from them (adapters/aws/opensearch/). Empty, it is a first
    start (HEAD 404: the adapter creates index and alias); once set up, the steady state of a
    deployed stack (alias and index exist; searches find what was indexed). Anything else is
    answered 400 (StubUnsupported). Signatures are recorded, not checked."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StubOpenSearch)
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests: list[str] = []  # "METHOD /path (SigV4)", in arrival order
        self.indices: dict[str, dict[str, Any]] = {}  # index name -> its PUT body (settings, mappings, aliases)
        self.chunks: dict[str, dict[str, dict[str, Any]]] = {}  # index name -> _id -> _source

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> StubOpenSearch:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def resolve(self, name: str) -> list[str]:
        """The indices a name stands for: itself, or those the alias points at."""
        if name in self.indices:
            return [name]
        return sorted(index for index, body in self.indices.items() if name in body.get("aliases", {}))

    def answer(self, method: str, path: str, params: dict[str, str], body: Any) -> tuple[int, Any]:
        with self.lock:
            return self._route(method, [unquote(part) for part in path.strip("/").split("/") if part], params, body)

    def _route(self, method: str, parts: list[str], params: dict[str, str], body: Any) -> tuple[int, Any]:
        missing = (
            404,
            {
                "error": {"type": "index_not_found_exception", "reason": f"no such index [{'/'.join(parts)}]"},
                "status": 404,
            },
        )
        match (method, parts):
            case ("HEAD", ["_alias", name]):
                return (200 if any(name in b.get("aliases", {}) for b in self.indices.values()) else 404), None
            case ("HEAD", [name]):
                return (200 if self.resolve(name) else 404), None
            case ("GET", ["_alias", name]):
                found = {
                    index: {"aliases": {name: self.indices[index]["aliases"][name]}}
                    for index in self.resolve(name)
                    if name in self.indices[index].get("aliases", {})
                }
                return (200, found) if found else missing
            case ("PUT", [name]) if not name.startswith("_"):
                if self.resolve(name):
                    return 400, {
                        "error": {
                            "type": "resource_already_exists_exception",
                            "reason": f"index [{name}] already exists",
                        },
                        "status": 400,
                    }
                self.indices[name] = body or {}
                self.chunks[name] = {}
                return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}
            case ("GET", [name, "_mapping"]):
                indices = self.resolve(name)
                return (
                    (200, {index: {"mappings": self.indices[index].get("mappings", {})} for index in indices})
                    if indices
                    else missing
                )
            case ("POST" | "PUT", ["_bulk"] | [_, "_bulk"]):
                return 200, self._bulk(body, params.get("require_alias") == "true")
            case ("POST" | "GET", [name, ("_search" | "_count" | "_refresh" | "_delete_by_query") as action]):
                indices = self.resolve(name)
                if not indices:
                    return missing
                return 200, self._read(action, indices, body or {})
        raise StubUnsupported(f"{method} /{'/'.join(parts)}")

    def _bulk(self, lines: list[dict[str, Any]], require_alias: bool) -> dict[str, Any]:
        items = []
        pending = iter(lines)
        for action in pending:
            ((op, meta),) = action.items()
            if op not in ("index", "create"):
                raise StubUnsupported(f"bulk {op}")
            source = next(pending)
            indices = self.resolve(meta["_index"])
            is_alias = bool(indices) and meta["_index"] not in self.indices
            if not indices or (require_alias and not is_alias):
                items.append(
                    {
                        op: {
                            "_index": meta["_index"],
                            "_id": meta["_id"],
                            "status": 404,
                            "error": {"type": "index_not_found_exception", "reason": "require_alias"},
                        }
                    }
                )
                continue
            stored = self.chunks[indices[0]]
            result = "updated" if meta["_id"] in stored else "created"
            stored[meta["_id"]] = source
            items.append(
                {
                    op: {
                        "_index": indices[0],
                        "_id": meta["_id"],
                        "result": result,
                        "status": 201 if result == "created" else 200,
                    }
                }
            )
        return {"took": 1, "errors": any("error" in next(iter(item.values())) for item in items), "items": items}

    def _read(self, action: str, indices: list[str], body: dict[str, Any]) -> dict[str, Any]:
        shards = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
        if action == "_refresh":
            return {"_shards": shards}
        if "aggs" in body or "aggregations" in body:
            raise StubUnsupported("aggregations")
        query = body.get("query", {"match_all": {}})
        found = [
            (index, chunk_id, source)
            for index in indices
            for chunk_id, source in self.chunks[index].items()
            if query_matches(query, source)
        ]
        if action == "_count":
            return {"count": len(found), "_shards": shards}
        if action == "_delete_by_query":
            for index, chunk_id, _ in found:
                del self.chunks[index][chunk_id]
            return {"took": 1, "deleted": len(found), "failures": []}
        after = (body.get("search_after") or [None])[0]
        hits = sorted(
            (
                {
                    "_index": index,
                    "_id": chunk_id,
                    "_score": query_score(query, source),
                    "_source": _projected(source, body.get("_source")),
                }
                for index, chunk_id, source in found
                if after is None or chunk_id > after
            ),
            key=lambda hit: (-hit["_score"], hit["_id"]),
        )
        hits = hits[: int(body.get("size", 10))]
        return {
            "took": 1,
            "timed_out": False,
            "_shards": shards,
            "hits": {
                "total": {"value": len(found), "relation": "eq"},
                "max_score": max((hit["_score"] for hit in hits), default=None),
                "hits": hits,
            },
        }


def _projected(source: dict[str, Any], fields: Any) -> dict[str, Any]:
    return {name: source[name] for name in fields if name in source} if isinstance(fields, list) else source


class _StubOpenSearch(BaseHTTPRequestHandler):
    """HTTP for StubOpenSearch (keep-alive, like a real cluster)."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle's algorithm on, the client's delayed ACK holds
    # the body back ~40 ms on every keep-alive request (measured: a warm search went 6 ms -> 140 ms).
    disable_nagle_algorithm = True
    server: StubOpenSearch

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        path, _, query = self.path.partition("?")
        signed = "AWS4-HMAC-SHA256" in (self.headers.get("authorization") or "")
        self.server.requests.append(f"{self.command} {path}{' (SigV4)' if signed else ''}")
        body: Any = None
        if raw:
            body = (
                [json.loads(line) for line in raw.splitlines() if line.strip()]
                if path.endswith("/_bulk")
                else json.loads(raw)
            )
        try:
            status, answer = self.server.answer(self.command, path, dict(parse_qsl(query)), body)
        except StubUnsupported as exc:
            status, answer = (
                400,
                {"error": {"type": "stub_unsupported", "reason": f"the stub does not model {exc}"}, "status": 400},
            )
        payload = json.dumps(answer).encode() if answer is not None and self.command != "HEAD" else b""
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

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
    from ragline.container import build_answerer, build_embedder
    result["answerer"] = type(build_answerer(Settings(), lambda: build_embedder(Settings()))).__name__  # ANTHROPIC_API_KEY is set: Claude, nothing sent
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
    """A stand-in for the runtime's boto3 (pip-installed once into the cache), byte-compiled."""
    target = cache / ("runtime-sdk-" + "-".join(spec.split("==")[1] for spec in RUNTIME_SDK[:1]))
    compiled = target / ".compiled-unchecked-hash"
    if not (target / "boto3").is_dir():
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(
            [
                python312,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-compile",
                "--target",
                str(target),
                *RUNTIME_SDK,
            ],
            check=True,
        )
    if not compiled.exists():
        # Assumption about the runtime image: its boto3/botocore ship .pyc, as our layers do (layer.mk).
        # Without them every fresh interpreter compiles botocore from source (PYTHONDONTWRITEBYTECODE, as
        # on Lambda's read-only /var/runtime): X-Ray's botocore patch measured ~0.12 s -> ~0.4 s.
        subprocess.run(
            [python312, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(target)],
            check=True,
        )
        compiled.touch()
    return target


def function_pythonpath(fn: dict[str, Any], sdk: Path) -> str:
    """Lambda's sys.path order: the function's code (/var/task), its layers (/opt/python), the runtime's boto3."""
    return os.pathsep.join([str(fn["code"]), *(str(layer / "python") for layer in fn["layers"].values()), str(sdk)])


def template_env(
    fn: dict[str, Any],
    template: dict[str, Any],
    opensearch_url: str,
    auth_mode: str,
    data_dir: Path,
    parameters: dict[str, str] | None = None,
) -> dict[str, str]:
    """A built function's environment variables from its template, made local (see dummy_env); template
    parameters take their defaults unless `parameters` gives them."""
    resolved = {
        name: dummy_env(name, value, opensearch_url, auth_mode, data_dir, template, parameters)
        for name, value in fn["env"].items()
    }
    return {name: value for name, value in resolved.items() if value is not None}


def parameter_value(template: dict[str, Any], value: Any, parameters: dict[str, str] | None = None) -> Any:
    """A template value that depends on parameters only (and conditions on them), as CloudFormation would
    resolve it: None for AWS::NoValue. Raises TemplateError when it needs a resource of the stack.
    The resolver is the emulator provisioning's (ragline_emulator.provision), not a second one."""
    from ragline_emulator.provision import NO_VALUE, Resolver

    resolver = Resolver(template, stack_name="smoke", region=REGION, account_id="123456789012", parameters=parameters)
    resolved = resolver.resolve(value)
    return None if resolved is NO_VALUE else resolved


def dummy_env(
    name: str,
    value: Any,
    opensearch_url: str,
    auth_mode: str,
    data_dir: Path,
    template: dict[str, Any] | None = None,
    parameters: dict[str, str] | None = None,
) -> str | None:
    """One environment variable of a built function, made local: the stub's URL, a temporary data dir,
    literal values as they are, parameter-only values resolved (`template` given), the rest placeholders."""
    from ragline_emulator.provision import TemplateError

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
    if template is not None:
        try:
            resolved = parameter_value(template, value, parameters)
        except TemplateError:
            pass  # it needs a resource (a table name, a queue URL), known once deployed: a placeholder below
        else:
            return None if resolved is None else str(resolved)
    return {
        "RAGLINE_DOCUMENTS_BUCKET": "smoke-documents-123456789012",
        "RAGLINE_INGEST_QUEUE_URL": f"https://sqs.{REGION}.amazonaws.com/123456789012/smoke-ingest",
        "RAGLINE_EVENTS_TOPIC_ARN": f"arn:aws:sns:{REGION}:123456789012:smoke-events",
        "RAGLINE_TABLE_NAME": "smoke-metadata",
        "RAGLINE_EMBEDDING_PROVIDER": "local",
        "RAGLINE_BEDROCK_MODEL_ID": "amazon.titan-embed-text-v2:0",
        "ANTHROPIC_API_KEY": SMOKE_PARAMETERS["AnthropicApiKey"],
        "RAGLINE_WS_CALLBACK_URL": f"https://smoke-ws.execute-api.{REGION}.amazonaws.com/v1",
    }.get(name, f"smoke-{name.lower()}")


def check_imports(template: dict[str, Any], build_dir: Path, python312: str, auth_mode: str) -> bool:
    sdk = runtime_sdk(python312, build_dir.parent / "smoke-cache")
    declared = template.get("Parameters") or {}
    parameters = {name: value for name, value in SMOKE_PARAMETERS.items() if name in declared}
    ok = True
    with StubOpenSearch() as server:
        for name, fn in sorted(functions(template, build_dir).items()):
            if fn["runtime"] != "python3.12":
                print(f"FAIL {name}: runtime {fn['runtime']}")
                ok = False
            with tempfile.TemporaryDirectory(prefix="ragline-smoke-") as tmp:
                env = {
                    "PATH": "/usr/bin:/bin",
                    "LANG": "C.UTF-8",
                    "HOME": tmp,
                    "TMPDIR": tmp,
                    "PYTHONDONTWRITEBYTECODE": "1",  # /var/task and /opt are read-only on Lambda
                    "AWS_DEFAULT_REGION": REGION,
                    "AWS_REGION": REGION,
                    "AWS_ACCESS_KEY_ID": "smoke",
                    "AWS_SECRET_ACCESS_KEY": "smoke",
                    "AWS_SESSION_TOKEN": "smoke",
                    "PYTHONPATH": function_pythonpath(fn, sdk),
                    **template_env(fn, template, server.url, auth_mode, Path(tmp) / "ragline", parameters),
                }
                cfg = {
                    "embedding": "EmbeddingLayer" in fn["layers"],
                    "stream": name == "StreamChatFunction",
                    "chat": name in ("ChatFunction", "StreamChatFunction"),
                    "documents": name == "DocumentsFunction",
                    "ingest": name == "IngestFunction",
                    "pdf": str(SAMPLE_PDF) if SAMPLE_PDF.exists() else None,
                    "left_out": LEFT_OUT,
                }
                server.reset()  # each function meets a first start: it creates the index and its alias
                started = time.perf_counter()
                done = subprocess.run(
                    [python312, "-S", "-c", CHILD, json.dumps(cfg)],
                    cwd=fn["code"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                took = time.perf_counter() - started
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                ok = False
                print(f"FAIL {name} ({took:.1f} s)\n{done.stderr[-3000:]}")
                continue
            result = json.loads(lines[-1].removeprefix("RESULT "))
            calls = sorted(set(server.requests))
            print(f"ok   {name:<22} {took:5.1f} s  layers={'+'.join(fn['layers'])}  {json.dumps(result)}")
            if calls:
                print(f"       OpenSearch stub saw: {', '.join(calls)}")
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
        print(
            f"Import checks in {args.python312} -S, PYTHONPATH = function + its layers + boto3 "
            f"{RUNTIME_SDK[0].split('==')[1]} (stand-in for the runtime's)"
        )
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
