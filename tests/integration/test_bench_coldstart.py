"""`ragline bench coldstart --source built`: what each built function's child is given (interpreter,
sys.path, environment), and the stub OpenSearch it talks to, driven by the real adapter over HTTP.

No timings are asserted: the bench's figures are for people to read, these check its wiring.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from opensearchpy.exceptions import RequestError

from ragline.adapters.aws.opensearch.index import OpenSearchVectorIndex
from ragline.adapters.aws.opensearch.settings import OpenSearchSettings
from ragline.models import IndexedChunk, SearchRequest
from ragline.retrieval.filters import MatchAll
from ragline.retrieval.service import SearchService
from ragline_bench import coldstart

SMOKE = coldstart._smoke()
TENANT = "bench"
DOCUMENT = "doc_seed"
SEED = IndexedChunk(
    id=f"{DOCUMENT}-v1-00000",
    tenant_id=TENANT,
    document_id=DOCUMENT,
    text=coldstart.SEED_TEXT,
    payload={"version": 1, "filename": "policies.txt", "chunk_index": 0, "metadata": {"lang": "en"}},
)
SEED_VECTOR = np.array([[0.6, 0.8, 0.0, 0.0]], dtype=np.float32)

# A `sam build` output in miniature: the Globals layer and environment, one function adding a layer
# and its own values, one taking the template's, intrinsics where the real template has them.
BUILT_TEMPLATE = """\
Parameters:
  EmbeddingFastLoad:
    Type: String
    Default: "false"
  AnthropicApiKey:
    Type: String
    Default: ""
  VectorStore:
    Type: String
    Default: domain
Conditions:
  UseDomain: !Equals [!Ref VectorStore, domain]
  HasAnthropicKey: !Not [!Equals [!Ref AnthropicApiKey, ""]]
Globals:
  Function:
    Runtime: python3.12
    Layers:
      - !Ref CoreLayer
    Environment:
      Variables:
        RAGLINE_BACKEND: aws
        RAGLINE_DATA_DIR: /tmp/ragline
        RAGLINE_TABLE_NAME: !Ref MetadataTable
        RAGLINE_EMBEDDING_FAST_LOAD: !Ref EmbeddingFastLoad
        POWERTOOLS_LOG_LEVEL: INFO
        OPENSEARCH_URL: !If [UseDomain, !Sub "https://${VectorDomain.DomainEndpoint}", !Ref ExternalOpenSearchUrl]
        RAGLINE_OPENSEARCH_AUTH_MODE: !If [UseDomain, sigv4-es, !Ref ExternalOpenSearchAuthMode]
Resources:
  CoreLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: CoreLayer
  EmbeddingLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: EmbeddingLayer
  SearchFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: SearchFunction
      Handler: app.handler
      Layers:
        - !Ref EmbeddingLayer
      Environment:
        Variables:
          ANTHROPIC_API_KEY: !If [HasAnthropicKey, !Ref AnthropicApiKey, !Ref "AWS::NoValue"]
  IngestFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: IngestFunction
      Handler: app.handler
      Layers:
        - !Ref EmbeddingLayer
      Environment:
        Variables:
          RAGLINE_EMBEDDING_FAST_LOAD: "true"
"""

STACK_ENV = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "RAGLINE_TABLE_NAME": "ragline-bench",
    "RAGLINE_DOCUMENTS_BUCKET": "ragline-bench-documents",
    "RAGLINE_INGEST_QUEUE_URL": "http://127.0.0.1:5000/q",
    "RAGLINE_EVENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:events",
    # the dev process's own: a built function must not inherit them
    "VIRTUAL_ENV": "/work/main/.venv",
    "RAGLINE_AUTH_MODE": "key",
    "RAGLINE_LOG_LEVEL": "WARNING",
}


def _python312() -> str:
    python = coldstart.default_python312(os.environ, Path.home())
    found = shutil.which(python)
    if found is None:
        pytest.skip(f"{python} (Lambda's interpreter) is not installed")
    return found


@pytest.fixture
def built(tmp_path: Path) -> coldstart.BuiltPackage:
    build_dir = tmp_path / "build"
    for part in ("CoreLayer/python", "EmbeddingLayer/python", "SearchFunction", "IngestFunction"):
        (build_dir / part).mkdir(parents=True)
    (build_dir / "template.yaml").write_text(BUILT_TEMPLATE)
    return coldstart.BuiltPackage(
        SMOKE,
        build_dir,
        "/opt/python3.12",
        tmp_path / "sdk",
        SimpleNamespace(url="http://127.0.0.1:9200"),
        tmp_path / "scratch",
    )


@pytest.fixture
def stub() -> Iterator[Any]:
    with SMOKE.StubOpenSearch() as server:
        yield server


def _adapter(url: str, dimension: int = 4) -> OpenSearchVectorIndex:
    return OpenSearchVectorIndex(OpenSearchSettings(url=url, auth_mode="none"), dimension)


# ---- what the child of a built function is given ------------------------------------------------------
def test_built_child_runs_like_lambda(built: coldstart.BuiltPackage, tmp_path: Path) -> None:
    function = coldstart.Function("search", "search", event={}, env={"RAGLINE_AUTH_MODE": "authorizer"})
    launch = built.launch(function, STACK_ENV)
    build = tmp_path / "build"

    assert launch.interpreter == ["/opt/python3.12", "-S"]
    assert launch.cwd == build / "SearchFunction" and launch.app == build / "SearchFunction" / "app.py"
    # Lambda's order: /var/task, the layers' /opt/python, then the runtime's boto3
    assert launch.env["PYTHONPATH"].split(":") == [
        str(build / "SearchFunction"),
        str(build / "CoreLayer" / "python"),
        str(build / "EmbeddingLayer" / "python"),
        str(tmp_path / "sdk"),
    ]
    env = launch.env
    assert env["LAMBDA_TASK_ROOT"] == str(build / "SearchFunction")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["OPENSEARCH_URL"] == "http://127.0.0.1:9200"
    assert env["RAGLINE_OPENSEARCH_AUTH_MODE"] == "sigv4-es" and env["AWS_REGION"] == "us-east-1"
    assert env["RAGLINE_TABLE_NAME"] == "ragline-bench"  # the stack's, not the template's placeholder
    assert env["RAGLINE_EMBEDDING_FAST_LOAD"] == "false"  # the parameter's default
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert env["RAGLINE_DATA_DIR"] == str(tmp_path / "scratch" / "ragline")
    assert env["AWS_LAMBDA_FUNCTION_NAME"] and env["_X_AMZN_TRACE_ID"].startswith("Root=")
    assert env["RAGLINE_AUTH_MODE"] == "authorizer"
    assert "ANTHROPIC_API_KEY" not in env  # HasAnthropicKey is false with the parameters' defaults
    assert "VIRTUAL_ENV" not in env and "RAGLINE_LOG_LEVEL" not in env
    assert env["PATH"] == "/usr/bin:/bin"


def test_each_built_function_keeps_its_template_values(built: coldstart.BuiltPackage) -> None:
    ingest = built.environment("ingest", STACK_ENV, {})
    assert ingest["RAGLINE_EMBEDDING_FAST_LOAD"] == "true"  # its own value, over the Globals
    assert ingest["PYTHONPATH"].split(":")[0].endswith("IngestFunction")
    claude = built.environment("search", STACK_ENV, {"ANTHROPIC_API_KEY": "fake", "ANTHROPIC_BASE_URL": "http://x"})
    assert claude["ANTHROPIC_API_KEY"] == "fake"  # chat+claude brings the fake Messages API's key


def test_template_values_resolve_parameters_and_leave_resources_to_the_stack(
    built: coldstart.BuiltPackage, tmp_path: Path
) -> None:
    search = built.functions["SearchFunction"]
    values = SMOKE.template_env(
        search, built.template, "http://127.0.0.1:1", "none", tmp_path / "data", {"AnthropicApiKey": "sk-ant-given"}
    )
    assert values["ANTHROPIC_API_KEY"] == "sk-ant-given"  # smoke.py's checks give one: chat builds Claude
    assert values["RAGLINE_TABLE_NAME"] == "smoke-metadata"  # a resource: a placeholder (the bench's stack overrides)
    assert values["OPENSEARCH_URL"] == "http://127.0.0.1:1" and values["RAGLINE_OPENSEARCH_AUTH_MODE"] == "none"


def test_the_venv_source_loads_the_model_as_the_default_deployment() -> None:
    assert coldstart._default_deployment_fast_load() in ("true", "false")


def test_a_function_missing_from_the_build_is_an_error(built: coldstart.BuiltPackage) -> None:
    with pytest.raises(coldstart.BenchError, match="ChatFunction"):
        built.environment("chat", STACK_ENV, {})


def test_source_python_and_names(tmp_path: Path) -> None:
    assert coldstart.resolve_source(None, tmp_path) == "venv"
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    assert coldstart.resolve_source(None, tmp_path) == "built"
    assert coldstart.resolve_source("venv", tmp_path) == "venv"

    assert coldstart.default_python312({"PYTHON312": "/x/python3.12"}, tmp_path) == "/x/python3.12"
    assert coldstart.default_python312({}, tmp_path) == "python3.12"
    pyenv = tmp_path / ".pyenv" / "versions" / "3.12.1" / "bin" / "python3.12"
    pyenv.parent.mkdir(parents=True)
    pyenv.touch()
    assert coldstart.default_python312({}, tmp_path) == str(pyenv)

    assert coldstart.built_function_name("stream_chat") == "StreamChatFunction"
    assert coldstart.built_function_name("search") == "SearchFunction"


def test_opensearch_checks_flag_what_a_deployed_function_would_not_send() -> None:
    ready = [
        "HEAD /_alias/ragline-chunks (SigV4)",
        "GET /ragline-chunks/_mapping (SigV4)",
        "POST /ragline-chunks/_search (SigV4)",
    ]
    assert coldstart._opensearch_checks("search", ready) == []
    problems = coldstart._opensearch_checks("search", [*ready, "PUT /ragline-chunks-v1", "POST /_bulk (SigV4)"])
    assert problems == [
        "search: unsigned OpenSearch requests",
        "search: wrote to the set-up cluster: POST /_bulk (SigV4), PUT /ragline-chunks-v1",
    ]


# ---- the stub OpenSearch, through the real adapter ----------------------------------------------------
def test_stub_is_a_first_start_then_a_set_up_cluster(stub: Any) -> None:
    first = _adapter(stub.url)
    first.ensure_index()
    assert stub.requests == [
        "HEAD /_alias/ragline-chunks",
        "HEAD /ragline-chunks",
        "PUT /ragline-chunks-v1",
    ]
    first.replace_document(TENANT, DOCUMENT, [SEED], SEED_VECTOR)

    stub.requests.clear()
    _adapter(stub.url).ensure_index()  # what a function's init does on a deployed stack: checks only
    assert stub.requests == [
        "HEAD /_alias/ragline-chunks",
        "GET /ragline-chunks/_mapping",
    ]
    with pytest.raises(ValueError, match="holds 4-dimensional"):
        _adapter(stub.url, dimension=8).ensure_index()


def test_stub_answers_searches_with_the_seed_chunk(stub: Any) -> None:
    index = _adapter(stub.url)
    index.ensure_index()
    index.replace_document(TENANT, DOCUMENT, [SEED], SEED_VECTOR)
    flt = MatchAll()

    ((chunk_id, score),) = index.search_vector(TENANT, np.array([0.6, 0.8, 0.0, 0.0]), flt, 5)
    assert chunk_id == SEED.id and score == pytest.approx(1.0)
    assert index.search_vector(TENANT, np.array([-0.6, -0.8, 0.0, 0.0]), flt, 5)[0][1] == pytest.approx(0.0)
    assert [hit for hit, _ in index.search_keyword(TENANT, "how long do refunds take", flt, 5)] == [SEED.id]
    assert index.search_keyword(TENANT, "zebra", flt, 5) == []
    assert index.search_vector("another", np.array([0.6, 0.8, 0.0, 0.0]), flt, 5) == []
    assert index.count(TENANT, flt) == 1
    assert index.stored_chunks(TENANT, DOCUMENT) == [
        SEED.model_copy(update={"payload": {**SEED.payload, "tenant_id": TENANT, "document_id": DOCUMENT}})
    ]

    class FixedEmbedder:
        dimension = 4

        def embed_query(self, text: str) -> np.ndarray:
            return np.array([0.6, 0.8, 0.0, 0.0], dtype=np.float32)

    found = SearchService(index, FixedEmbedder()).search(TENANT, SearchRequest(query="How long do refunds take?"))
    (hit,) = found.items
    assert hit.id == SEED.id
    assert hit.payload["text"] == coldstart.SEED_TEXT and hit.payload["filename"] == "policies.txt"
    assert hit.payload["version"] == 1 and hit.payload["metadata"] == {"lang": "en"}

    assert index.delete_document(TENANT, DOCUMENT) == 1
    assert index.count(TENANT, flt) == 0


def test_stub_refuses_what_it_does_not_model(stub: Any) -> None:
    index = _adapter(stub.url)
    index.ensure_index()
    with pytest.raises(RequestError, match="stub_unsupported"):
        index.stats()  # index statistics: not modelled, so not faked


def test_stub_bulk_requires_the_alias(stub: Any) -> None:
    status, answer = stub.answer(
        "POST",
        "/_bulk",
        {"require_alias": "true"},
        [{"index": {"_index": "ragline-chunks", "_id": "x"}}, {"chunk_id": "x"}],
    )
    assert status == 200 and answer["errors"] is True
    assert answer["items"][0]["index"]["error"]["type"] == "index_not_found_exception"


# ---- the runtime SDK stand-in ------------------------------------------------------------------------
def test_runtime_sdk_is_byte_compiled_unchecked(tmp_path: Path) -> None:
    python312 = _python312()
    target = tmp_path / "runtime-sdk-1.40.4"
    (target / "boto3").mkdir(parents=True)  # as if pip had installed it: only the compile step runs
    (target / "boto3" / "__init__.py").write_text("__version__ = 'stand-in'\n")

    assert SMOKE.runtime_sdk(python312, tmp_path) == target
    (compiled,) = (target / "boto3" / "__pycache__").glob("__init__.cpython-312.pyc")
    flags = struct.unpack("<I", compiled.read_bytes()[4:8])[0]
    assert flags == 0b01  # hash-based, source not checked: what the layers ship (layer.mk)
    assert (target / ".compiled-unchecked-hash").exists()

    compiled.unlink()
    SMOKE.runtime_sdk(python312, tmp_path)  # compiled once: the marker says so
    assert not compiled.exists()


def test_python312_check_refuses_another_version() -> None:
    version = subprocess.run(
        ["python3", "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if version == "(3, 12)":
        pytest.skip("python3 is 3.12 here")
    with pytest.raises(coldstart.BenchError, match="not Lambda's 3.12"):
        coldstart._python_version(shutil.which("python3") or "python3")


IMPORTTIME_LOG = """\
import time: self [us] | cumulative | imported package
import time:       120 |        120 |   _io
import time:      2000 |       2000 |     pydantic_core.core_schema
import time:      1000 |       3000 |   pydantic
import time:     75000 |      78000 | fastapi.openapi.models
import time:       500 |        500 |   json.decoder
import time:      3000 |       3500 | ragline.config
not an importtime line
"""


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        ("", {}),
        ("import time: self [us] | cumulative | imported package\n", {}),
        (
            IMPORTTIME_LOG,
            {
                "fastapi": 0.075,
                "ragline": 0.003,
                "pydantic_core": 0.002,
                "pydantic": 0.001,
                "(standard library)": 0.00062,
            },
        ),
    ],
)
def test_import_breakdown_charges_each_modules_own_time_to_its_package(log: str, expected: dict[str, float]) -> None:
    charged = coldstart.import_breakdown(log)
    assert charged == pytest.approx(expected)
    assert list(charged) == sorted(charged, key=lambda name: -charged[name])  # largest first


def test_the_framework_floor_is_the_stack_without_ragline() -> None:
    source = coldstart.FRAMEWORK_FLOOR_APP
    assert "ragline" not in source
    namespace: dict[str, Any] = {}
    exec(compile(source, "framework_floor", "exec"), namespace)  # the venv has the same stack
    assert namespace["handler"]({}, None)["statusCode"] == 200
