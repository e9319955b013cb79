"""Restarts, crashes mid-ingest, the drop folder and the CLI, each with its own server and data."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid

import httpx

from tests.support import Server, make_pdf, ragline, wait_for_status


def test_restart_keeps_everything(tmp_path):
    key = ragline("keys", "create", "--tenant", "acme", "--data-dir", str(tmp_path)).strip()
    server = Server(tmp_path).start()
    marker = uuid.uuid4().hex[:10]
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60) as client:
            doc_id = client.post("/v1/kb/documents", json={"text": f"Persistent fact {marker}."}).json()["data"][
                "document_id"
            ]
            wait_for_status(client, doc_id)
    finally:
        server.stop()
    again = Server(tmp_path).start()
    try:
        with httpx.Client(base_url=again.url, headers={"x-api-key": key}, timeout=60) as client:
            assert client.get(f"/v1/kb/documents/{doc_id}").json()["status"] == "indexed"
            for mode in ("keyword", "semantic", "hybrid"):
                items = client.post("/v1/kb/search", json={"query": marker, "mode": mode}).json()["items"]
                assert items[0]["payload"]["document_id"] == doc_id, mode
    finally:
        again.stop()


def test_killed_mid_ingest_is_never_half_indexed(tmp_path):
    key = ragline("keys", "create", "--tenant", "acme", "--data-dir", str(tmp_path)).strip()
    server = Server(tmp_path).start()
    pages = [f"Page {i} of the long report on topic {uuid.uuid4().hex}. " * 40 for i in range(60)]
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60) as client:
            doc_id = client.post("/v1/kb/documents", files={"file": ("long.pdf", make_pdf(pages))}).json()["data"][
                "document_id"
            ]
            deadline = time.monotonic() + 60
            while client.get(f"/v1/kb/documents/{doc_id}").json()["status"] != "processing":
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        server.kill()  # SIGKILL while it embeds
    again = Server(tmp_path).start()
    try:
        with httpx.Client(base_url=again.url, headers={"x-api-key": key}, timeout=60) as client:
            status = client.get(f"/v1/kb/documents/{doc_id}").json()["status"]
            assert status in ("queued", "processing", "indexed", "failed")
            items = client.post("/v1/kb/search", json={"query": "long report", "limit": 100, "mode": "keyword"}).json()[
                "items"
            ]
            if status != "indexed":
                assert items == []  # nothing of an unfinished document is searchable
            doc = wait_for_status(client, doc_id, timeout=300)
            assert doc["status"] == "indexed" and doc["chunk_count"] > 0 and doc["page_count"] == 60
    finally:
        again.stop()


def test_drop_folder(tmp_path):
    inbox = tmp_path / "inbox"
    key = ragline("keys", "create", "--tenant", "acme", "--data-dir", str(tmp_path)).strip()
    (inbox / "acme" / "sub").mkdir(parents=True)
    early = inbox / "acme" / "early.txt"
    early.write_text("Dropped before the server started: zebra crossings.")
    server = Server(tmp_path, inbox=inbox, env={"RAGLINE_INBOX_SETTLE_SECONDS": "0.2"}).start()

    def find(client, query):
        items = client.post("/v1/kb/search", json={"query": query, "mode": "keyword"}).json()["items"]
        return items[0]["payload"] if items else None

    def eventually(check, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError("condition never held")

    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60) as client:
            eventually(lambda: find(client, "zebra crossings"))
            path = inbox / "acme" / "sub" / "notes.md"
            path.write_text("# Notes\nThe first version mentions aardvarks.")
            first = eventually(lambda: find(client, "aardvarks"))
            assert first["filename"] == "notes.md" and first["source"] == "inbox"
            path.write_text("# Notes\nThe second version mentions capybaras instead.")
            second = eventually(lambda: find(client, "capybaras"))
            assert second["document_id"] == first["document_id"]
            assert find(client, "aardvarks") is None
            path.unlink()
            eventually(lambda: client.get(f"/v1/kb/documents/{first['document_id']}").status_code == 404)
            assert find(client, "capybaras") is None
            (inbox / "not a tenant!").mkdir()
            (inbox / "not a tenant!" / "x.txt").write_text("ignored")
            (inbox / "acme" / "photo.png").write_bytes(b"\x89PNG....")
            time.sleep(1.0)
            assert server.process.poll() is None
    finally:
        server.stop()
    # removed while the server was down: reconciled on the next start
    early.unlink()
    again = Server(tmp_path, inbox=inbox).start()
    try:
        with httpx.Client(base_url=again.url, headers={"x-api-key": key}, timeout=60) as client:
            assert client.get("/v1/kb/documents").json()["documents"] == []
    finally:
        again.stop()


def test_serve_creates_a_first_key_and_prints_it(tmp_path):
    server = Server(tmp_path).start()
    try:
        log = server.log_path.read_text()
        key = next(line.strip() for line in log.splitlines() if line.strip().startswith("rl_"))
        assert "curl" in log
        assert httpx.get(f"{server.url}/v1/kb/documents", headers={"x-api-key": key}).status_code == 200
    finally:
        server.stop()
    second = Server(tmp_path).start()
    try:
        assert "No API key existed" not in second.log_path.read_text()  # only the first start makes one
    finally:
        second.stop()


def test_cli_ingest_search_ask(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\nThe espresso machine needs descaling every month.")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    (docs / ".hidden.txt").write_text("skip me")
    data = str(tmp_path / "data")
    key = ragline("keys", "create", "--tenant", "cafe", "--scopes", "search,chat", "--data-dir", data)
    assert key.strip().startswith("rl_") and len(key.strip().splitlines()) == 1
    result = subprocess.run(
        [sys.executable, "-m", "ragline.cli", "ingest", str(docs), "--tenant", "cafe", "--data-dir", data],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1  # one file failed
    assert "indexed 1, failed 1" in result.stderr
    out = ragline("search", "how often to descale", "--tenant", "cafe", "--data-dir", data, "--json")
    assert "espresso" in json.loads(out)["items"][0]["payload"]["text"]
    answer = ragline(
        "ask", "How often does the espresso machine need descaling?", "--tenant", "cafe", "--data-dir", data
    )
    assert "every month [1]" in answer and "[1] Guide" in answer
    assert json.loads(ragline("search", "espresso", "--tenant", "other", "--data-dir", data, "--json"))["items"] == []


def test_serve_on_a_taken_port_says_which_setting_changes_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "ragline.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "RAGLINE_PORT" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr
