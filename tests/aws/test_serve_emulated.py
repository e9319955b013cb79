"""`ragline serve --backend aws` against a moto server on 127.0.0.1: the whole flow over HTTP —
upload, drop folder, search, chat, stream, delete — with the same answers as the local mode."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from tests.support import Server, free_port, wait_for_status

DOCUMENTS = {
    "otters.txt": "Sea otters hold hands while they sleep so that they do not drift apart on the water. "
    "A group of resting otters is called a raft.",
    "bridges.txt": "Suspension bridges carry their deck on vertical hangers hung from two main cables, "
    "which pass over towers and are anchored at both ends.",
}
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def first_key(server: Server) -> str:
    """The key `serve` makes (and prints once) for tenant 'default' when the key store is empty."""
    match = re.search(r"\b(rl_[A-Za-z0-9_\-]{20,})\b", server.log_path.read_text())
    assert match, server.log_path.read_text()[-2000:]
    return match.group(1)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, moto_url: str) -> Iterator[dict[str, tuple[Server, str]]]:
    aws = Server(
        tmp_path_factory.mktemp("serve-aws"),
        env={**AWS_ENV, "AWS_ENDPOINT_URL": moto_url, "RAGLINE_LOG_LEVEL": "INFO"},
        extra_args=["--backend", "aws", "--stack-name", "ragline-emulated"],
    ).start()
    local = Server(tmp_path_factory.mktemp("serve-local"), env={"RAGLINE_LOG_LEVEL": "INFO"}).start()
    try:
        yield {"aws": (aws, first_key(aws)), "local": (local, first_key(local))}
    finally:
        aws.stop()
        local.stop()


def client_for(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=60)


def ingest_and_ask(server: Server, key: str) -> dict[str, object]:
    """Upload the documents, wait for them, then search, chat and stream: what a user would see."""
    with client_for(server, key) as client:
        ids = {}
        for name, text in DOCUMENTS.items():
            answer = client.post("/v1/kb/documents", files={"file": (name, text.encode(), "text/plain")})
            assert answer.status_code == 202, answer.text
            ids[name] = answer.json()["data"]["document_id"]
        for document_id in ids.values():
            assert wait_for_status(client, document_id)["status"] == "indexed"
        names = {v: k for k, v in ids.items()}
        search = client.post("/v1/kb/search", json={"query": "why do otters hold hands", "limit": 3}).json()
        chat = client.post("/v1/kb/chat", json={"query": "How are suspension bridge decks held up?"}).json()
        with client.stream(
            "POST", "/v1/kb/chat/stream", json={"query": "How are suspension bridge decks held up?"}
        ) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            frames = [line[len("data: ") :] for line in s.iter_lines() if line.startswith("data: ")]
        assert frames[-1] == "[DONE]"
        events = [json.loads(frame) for frame in frames[:-1]]
        streamed = "".join(e["data"]["content"] for e in events if e["event"] == "message")
        return {
            "ids": ids,
            "search": [
                (names[i["payload"]["document_id"]], round(i["score"], 4), i["payload"]["text"])
                for i in search["items"]
            ],
            "chat": (chat["answer"], [names[s["document_id"]] for s in chat["sources"]]),
            "stream": (streamed, [e["event"] for e in events][0], [e["event"] for e in events][-1]),
        }


def test_emulated_aws_answers_as_the_local_mode_does(servers) -> None:
    seen = {name: ingest_and_ask(server, key) for name, (server, key) in servers.items()}
    aws, local = seen["aws"], seen["local"]
    assert aws["search"] == local["search"]
    assert aws["search"][0][0] == "otters.txt"
    assert aws["chat"] == local["chat"]
    assert aws["chat"][1][0] == "bridges.txt"
    assert aws["stream"] == local["stream"]
    assert aws["stream"][1:] == ("sources", "done")


def test_emulated_aws_drop_folder_and_delete(servers, moto_url: str) -> None:
    server, key = servers["aws"]
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("ragline-emulated-documents")]
    assert len(buckets) == 1
    text = "Glaciers grind the valleys they flow through into a U shape."
    s3.put_object(Bucket=buckets[0], Key="inbox/default/geo/glaciers notes.txt", Body=text.encode())
    with client_for(server, key) as client:
        document = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and document is None:
            listed = client.get("/v1/kb/documents", params={"status": "indexed", "limit": 100}).json()["documents"]
            document = next((d for d in listed if d["filename"] == "glaciers notes.txt"), None)
            time.sleep(0.3)
        assert document is not None, "the dropped file was never indexed"
        hits = client.post("/v1/kb/search", json={"query": "U-shaped valleys", "limit": 1}).json()["items"]
        assert hits[0]["payload"]["document_id"] == document["id"]

        s3.delete_object(Bucket=buckets[0], Key="inbox/default/geo/glaciers notes.txt")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and client.get(f"/v1/kb/documents/{document['id']}").status_code != 404:
            time.sleep(0.3)
        assert client.get(f"/v1/kb/documents/{document['id']}").status_code == 404

        some = client.get("/v1/kb/documents", params={"limit": 1}).json()["documents"][0]
        assert client.delete(f"/v1/kb/documents/{some['id']}").status_code == 200
        assert client.get(f"/v1/kb/documents/{some['id']}").status_code == 404
        hits = client.post("/v1/kb/search", json={"query": some["filename"], "limit": 10}).json()["items"]
        assert some["id"] not in {hit["payload"]["document_id"] for hit in hits}


def test_emulated_aws_needs_an_endpoint(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in {**AWS_ENV, "PATH": "/usr/bin:/bin"}.items()}
    done = subprocess.run(
        [sys.executable, "-m", "ragline.cli", "serve", "--backend", "aws", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert "set AWS_ENDPOINT_URL" in done.stderr
