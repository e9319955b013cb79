"""The client as a package of its own: it imports nothing but httpx, pydantic and the standard library, installs
alone from clients/python, offers the same surface sync and async, and has a request for every route."""

from __future__ import annotations

import ast
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import ragline_client
from ragline_client import _client
from ragline_client.models import UploadTicket
from ragline_client.resources import answers, documents, insight, keys, knowledge_bases, webhooks

from tests.support import REPO

PACKAGE = REPO / "clients" / "python" / "ragline_client"
DEPENDENCIES = {"httpx", "pydantic"}
# What httpx and pydantic themselves import; click, pygments and rich only for httpx's command line, which
# `import httpx` loads when they are installed (they are, in the test venv).
TRANSITIVE = {"httpcore", "h11", "anyio", "sniffio", "idna", "certifi", "pydantic_core", "annotated_types",
              "typing_extensions", "typing_inspection", "h2", "brotli", "zstandard", "socksio",
              "click", "pygments", "rich"}  # fmt: skip


def test_the_client_imports_only_httpx_pydantic_and_the_standard_library() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) >= 10
    found = set()
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(path.name, alias.name.partition(".")[0]) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add((path.name, node.module.partition(".")[0]))
    foreign = {
        (name, module)
        for name, module in found
        if module not in sys.stdlib_module_names and module not in DEPENDENCIES | {"ragline_client", "__future__"}
    }
    assert not foreign


def test_the_client_works_where_ragline_cannot_be_imported() -> None:
    """In a fresh interpreter where the server's packages fail to import, every module of the client loads and
    nothing outside the standard library, httpx and pydantic (and what they load) is imported."""
    code = f"""
import importlib, pkgutil, sys
from importlib.abc import MetaPathFinder

class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("ragline", "ragline_bench", "ragline_emulator", "tests", "fastapi"):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, Absent())
import ragline_client
for module in pkgutil.walk_packages(ragline_client.__path__, "ragline_client."):
    importlib.import_module(module.name)
client = ragline_client.Ragline(api_key="rl_x", base_url="http://127.0.0.1:9", max_retries=0)
try:
    client.health.check()
except ragline_client.APIConnectionError:
    pass
allowed = {sorted(DEPENDENCIES | TRANSITIVE | {"ragline_client"})!r}
loaded = {{name.partition(".")[0] for name in sys.modules}}
print(sorted(m for m in loaded if m not in sys.stdlib_module_names and m not in allowed and not m.startswith("_")))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _uv() -> Path | None:
    # `make install` keeps uv in .uv-venv beside .venv (the venv these tests run in).
    beside = Path(sys.prefix).parent / ".uv-venv" / "bin" / "uv"
    found = shutil.which("uv")
    return beside if beside.exists() else (Path(found) if found else None)


def test_it_installs_on_its_own(tmp_path: Path) -> None:
    """`pip install ./clients/python` into an empty venv (uv, offline: httpx and pydantic from uv's cache, which
    `make install` fills): the installed package imports, is typed (py.typed) and brings no server."""
    uv = _uv()
    if uv is None:
        pytest.skip("uv is not installed (make install puts it in .uv-venv)")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, venv], check=True, timeout=60)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [uv, "pip", "install", "--offline", "--quiet", "--python", python, PACKAGE.parent],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert install.returncode == 0, install.stderr
    check = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util, pathlib, ragline_client; "
            "print(ragline_client.__version__, importlib.util.find_spec('ragline') is None, "
            "(pathlib.Path(ragline_client.__file__).parent / 'py.typed').exists(), ragline_client.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},  # no PYTHONPATH: only what the venv installed
    )
    assert check.returncode == 0, check.stderr
    version, no_server, typed, location = check.stdout.split()
    assert (version, no_server, typed) == (ragline_client.__version__, "True", "True")
    assert location.startswith(str(venv))


PAIRS = [
    (documents.Documents, documents.AsyncDocuments),
    (documents.Jobs, documents.AsyncJobs),
    (answers.Chat, answers.AsyncChat),
    (knowledge_bases.KnowledgeBases, knowledge_bases.AsyncKnowledgeBases),
    (webhooks.Webhooks, webhooks.AsyncWebhooks),
    (keys.Keys, keys.AsyncKeys),
    (keys.Audit, keys.AsyncAudit),
    (insight.Queries, insight.AsyncQueries),
    (insight.Analytics, insight.AsyncAnalytics),
    (insight.HealthChecks, insight.AsyncHealthChecks),
    (_client.Ragline, _client.AsyncRagline),
]
# Methods that answer at once in both clients: iterators, streams, and the receiver's verify.
NOT_AWAITED = {"list", "documents", "deliveries", "stream", "verify", "base_url", "max_retries"}


@pytest.mark.parametrize(("sync", "asynchronous"), PAIRS, ids=[pair[0].__name__ for pair in PAIRS])
def test_sync_and_async_have_the_same_surface(sync: type, asynchronous: type) -> None:
    def public(cls: type) -> dict[str, Any]:
        return {name: member for name, member in inspect.getmembers(cls) if not name.startswith("_")}

    sync_members, async_members = public(sync), public(asynchronous)
    if sync is answers.Chat:  # client.chat(query) answers whole
        sync_members["__call__"], async_members["__call__"] = sync.__call__, asynchronous.__call__
    assert set(sync_members) == set(async_members)
    for name, member in sync_members.items():
        other = async_members[name]
        if isinstance(member, property):
            continue
        assert list(inspect.signature(member).parameters.values()) == list(
            inspect.signature(other).parameters.values()
        ), name
        assert inspect.iscoroutinefunction(other) == (name not in NOT_AWAITED), name
        assert not inspect.iscoroutinefunction(member), name


def _calls() -> dict[tuple[str, str], Any]:
    """The request the SDK makes for each route, built by the same functions the clients use."""
    upload = documents.upload_flow(
        b"0123456789",
        filename="a.txt",
        metadata=None,
        title=None,
        external_id=None,
        kb_id=None,
        chunk_size=None,
        chunk_overlap=None,
        presigned=True,
        threshold=0,
    )
    ticket_call = next(upload)
    put_call = upload.send(
        UploadTicket(document_id="doc_1", upload_url="http://127.0.0.1:8000/v1/kb/uploads/doc_1?token=t", expires_in=60)
    )
    chat_json = answers.chat_body(
        "q", filters=None, limit=None, mode=None, model_name=None, temperature=None, max_tokens=None, history=None
    )
    return {
        ("GET", "/health"): insight.health_call(),
        ("GET", "/health/detailed"): insight.detailed_health_call(),
        ("POST", "/v1/kb/uploads"): ticket_call,
        ("PUT", "/v1/kb/uploads/{document_id}"): put_call,
        ("POST", "/v1/kb/documents"): documents.upload_text_call(
            "t", title=None, metadata=None, external_id=None, kb_id=None, chunk_size=None, chunk_overlap=None
        ),
        ("GET", "/v1/kb/documents"): documents.list_page_call(None, None, 10, None),
        ("GET", "/v1/kb/documents/{document_id}"): documents.get_call("doc_1"),
        ("DELETE", "/v1/kb/documents/{document_id}"): documents.delete_call("doc_1"),
        ("POST", "/v1/kb/delete"): documents.delete_by_filters_call({"kb_id": "k"}, False),
        ("GET", "/v1/kb/jobs/{job_id}"): documents.job_call("job_1"),
        ("GET", "/v1/kb/documents/{document_id}/stats"): documents.stats_call("doc_1"),
        ("POST", "/v1/knowledge-bases"): knowledge_bases.create_call("n", None, None, None),
        ("GET", "/v1/knowledge-bases"): knowledge_bases.list_page_call(10, None),
        ("GET", "/v1/knowledge-bases/{kb_id}"): knowledge_bases.get_call("kb_1"),
        ("PATCH", "/v1/knowledge-bases/{kb_id}"): knowledge_bases.update_call("kb_1", "n", "d", None, None),
        ("DELETE", "/v1/knowledge-bases/{kb_id}"): knowledge_bases.delete_call("kb_1"),
        ("GET", "/v1/knowledge-bases/{kb_id}/documents"): knowledge_bases.documents_page_call("kb_1", None, 10, None),
        ("POST", "/v1/kb/search"): answers.search_call("q", filters=None, limit=None, mode=None, score_threshold=None),
        ("POST", "/v1/kb/chat"): answers.chat_call(chat_json),
        ("POST", "/v1/kb/chat/stream"): answers.chat_stream_call(chat_json),
        ("GET", "/v1/webhooks"): webhooks.list_call(),
        ("POST", "/v1/webhooks"): webhooks.create_call("https://example.com", ["*"], None, None),
        ("GET", "/v1/webhooks/{webhook_id}"): webhooks.get_call("wh_1"),
        ("PATCH", "/v1/webhooks/{webhook_id}"): webhooks.update_call("wh_1", "https://e.com", ["*"], None, True),
        ("DELETE", "/v1/webhooks/{webhook_id}"): webhooks.delete_call("wh_1"),
        ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"): webhooks.rotate_secret_call("wh_1", None),
        ("POST", "/v1/webhooks/{webhook_id}/test"): webhooks.send_test_call("wh_1"),
        ("GET", "/v1/webhooks/{webhook_id}/deliveries"): webhooks.deliveries_page_call("wh_1", None, 10, None),
        ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): webhooks.redeliver_call(
            "wh_1", "dlv_1"
        ),
        ("POST", "/v1/keys"): keys.create_call("n", ["search"], None, None),
        ("GET", "/v1/keys"): keys.list_page_call(10, None),
        ("GET", "/v1/keys/{key_id}"): keys.get_call("key_1"),
        ("DELETE", "/v1/keys/{key_id}"): keys.revoke_call("key_1"),
        ("POST", "/v1/keys/{key_id}/rotate"): keys.rotate_call("key_1", None),
        ("GET", "/v1/keys/{key_id}/usage"): keys.usage_call("key_1", None),
        ("GET", "/v1/audit"): keys.audit_page_call(10, None),
        ("GET", "/v1/queries/history"): insight.history_call(None, None, None),
        ("GET", "/v1/queries/{query_id}"): insight.get_call("qry_1"),
        ("DELETE", "/v1/queries/{query_id}"): insight.delete_call("qry_1"),
        ("PATCH", "/v1/queries/{query_id}/rating"): insight.rate_call("qry_1", 5, None),
        ("GET", "/v1/analytics/popular"): insight.popular_call(None, None),
        ("GET", "/v1/analytics/usage"): insight.usage_call(None),
    }


# A route the SDK reaches through another path that serves the same answer.
SAME_AS = {("GET", "/v1/documents/{document_id}/stats"): ("GET", "/v1/kb/documents/{document_id}/stats")}


def test_every_route_of_the_server_has_a_request(tmp_path: Path) -> None:
    from ragline.api.app import create_app
    from ragline.config import Settings
    from ragline.container import Container

    spec = create_app(Container(Settings(data_dir=tmp_path))).openapi()
    served = {(method.upper(), path) for path, operations in spec["paths"].items() for method in operations}
    calls = _calls()
    assert served - set(SAME_AS) == set(calls), "a route without a request in the SDK, or one the server dropped"
    for (method, template), call in calls.items():
        pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template))
        assert call.method == method and re.fullmatch(pattern, urlsplit(call.path).path), (method, template, call)
