"""End to end: `ragline serve` in a subprocess, configured for Claude, talking to a local fake of the Messages API.

The server and its ONNX model start once per module; each test scripts the fake and reads what it received.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragline.chat.prompt import NOT_IN_DOCUMENTS, SYSTEM_PROMPT
from ragline.config import Settings
from ragline_emulator.anthropic_server import FakeAnthropic

PYTHON = str(Path(sys.executable))
ANSWER = "Invoices are due within 30 days [1]; API keys are rotated every 90 days [2]."
MODEL = "claude-sonnet-4-5-20250929"  # what the fake says answered: the default model's dated snapshot
QUESTION = "When are invoices due and how often are API keys rotated?"
DOCUMENTS = [
    (
        "Billing handbook",
        "Invoices are due within 30 days of the invoice date. Late payments accrue a fee of "
        "2% per month. Refunds go back to the original payment method within 10 business days.",
    ),
    (
        "Security policy",
        "API keys must be rotated every 90 days. Production access requires two-factor "
        "authentication, and every access is logged for one year.",
    ),
]
START_TIMEOUT = 60.0  # the first start loads the ONNX embedding model
INDEX_TIMEOUT = 90.0


@dataclass
class Ragline:
    url: str
    client: httpx.Client
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(scope="module")
def ragline(fake: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ragline]:
    data_dir = tmp_path_factory.mktemp("ragline-data")
    log = data_dir.parent / "ragline-serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "RAGLINE_"))}
    env.update(
        ANTHROPIC_API_KEY=fake.api_key,
        ANTHROPIC_BASE_URL=fake.url,
        RAGLINE_CHAT_ALLOWED_MODELS="claude-haiku-5-5",  # the override test_chat_sends_history_and_overrides sends
        RAGLINE_LOG_LEVEL="WARNING",
        # Each test scripts the model's answer to the same question: every chat must reach the model.
        RAGLINE_ANSWER_CACHE_ENABLED="false",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    created = subprocess.run(
        [PYTHON, "-m", "ragline.cli", "keys", "create", "--tenant", "t1", "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    api_key = created.stdout.strip()
    assert api_key and "\n" not in api_key, f"`keys create` must print only the key, got {created.stdout!r}"

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "ragline.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = httpx.Client(base_url=url, headers={"x-api-key": api_key}, timeout=30.0, trust_env=False)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, f"ragline serve exited with {process.returncode}:\n{log_tail(log)}"
            assert time.monotonic() < deadline, f"ragline serve never became healthy:\n{log_tail(log)}"
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)

        ids = []
        for title, text in DOCUMENTS:
            accepted = client.post("/v1/kb/documents", json={"title": title, "text": text})
            assert accepted.status_code == 202, accepted.text
            ids.append(accepted.json()["data"]["document_id"])
        deadline = time.monotonic() + INDEX_TIMEOUT
        for document_id in ids:
            while (status := client.get(f"/v1/kb/documents/{document_id}").json()["status"]) != "indexed":
                assert status in ("queued", "processing"), f"{document_id} is {status}:\n{log_tail(log)}"
                assert time.monotonic() < deadline, f"{document_id} was never indexed:\n{log_tail(log)}"
                time.sleep(0.2)
        yield Ragline(url, client, log)
    finally:
        client.close()
        stop(process)


@pytest.fixture(autouse=True)
def scripted(fake: FakeAnthropic) -> FakeAnthropic:
    fake.script(answer=ANSWER, model=MODEL, input_tokens=812, output_tokens=27)
    return fake


def expected_user_message(question: str, sources: list[dict[str, Any]]) -> str:
    """The numbered passages, independently of ragline.chat.prompt: [n] (title[, page p])\\ntext."""
    blocks = []
    for number, source in enumerate(sources, start=1):
        where = source["title"] or source["filename"] or "untitled"
        where += f", page {source['page']}" if source["page"] is not None else ""
        blocks.append(f"[{number}] ({where})\n{source['text'].strip()}")
    return "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"


def sse_frames(response: httpx.Response) -> list[Any]:
    """Every frame of the body, each `data: <json>` decoded; `data: [DONE]` stays the string "[DONE]"."""
    assert response.text.endswith("\n\n"), response.text[-200:]
    frames = []
    for frame in response.text[:-2].split("\n\n"):
        assert frame.startswith("data: ") and "\n" not in frame, f"not a single data line: {frame!r}"
        data = frame[len("data: ") :]
        frames.append(data if data == "[DONE]" else json.loads(data))
    return frames


def test_chat_returns_the_claude_answer_with_numbered_sources(ragline: Ragline, scripted: FakeAnthropic) -> None:
    response = ragline.client.post("/v1/kb/chat", json={"query": QUESTION})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == ANSWER
    assert body["model"] == MODEL
    assert body["usage"] == {"input_tokens": 812, "output_tokens": 27}
    assert body["query_id"].startswith("qry_")
    assert {s["title"] for s in body["sources"]} == {"Billing handbook", "Security policy"}

    (sent,) = scripted.requests
    assert sent.sent_key == scripted.api_key
    assert sent.body["stream"] is True
    assert sent.body["model"] == Settings.model_fields["chat_model"].default
    assert sent.body["max_tokens"] == Settings.model_fields["chat_max_tokens"].default
    assert sent.body["system"] == SYSTEM_PROMPT
    assert sent.body["messages"] == [{"role": "user", "content": expected_user_message(QUESTION, body["sources"])}]


def test_chat_sends_history_and_overrides(ragline: Ragline, scripted: FakeAnthropic) -> None:
    history = [
        {"role": "user", "content": "What does the billing handbook cover?"},
        {"role": "assistant", "content": "Invoices, late fees and refunds [1]."},
    ]
    response = ragline.client.post(
        "/v1/kb/chat",
        json={"query": QUESTION, "history": history, "model": "claude-haiku-5-5", "max_tokens": 300, "limit": 1},
    )
    assert response.status_code == 200, response.text
    sources = response.json()["sources"]
    assert len(sources) == 1
    assert response.json()["answer"] == "Invoices are due within 30 days [1]; API keys are rotated every 90 days ."
    sent = scripted.last.body
    assert sent["messages"] == [*history, {"role": "user", "content": expected_user_message(QUESTION, sources)}]
    assert (sent["model"], sent["max_tokens"]) == ("claude-haiku-5-5", 300)
    assert "temperature" not in sent


def test_chat_with_a_temperature_still_answers(ragline: Ragline, scripted: FakeAnthropic) -> None:
    response = ragline.client.post("/v1/kb/chat", json={"query": QUESTION, "temperature": 0.2})
    assert response.status_code == 200, response.text
    assert response.json()["answer"] == ANSWER
    assert "temperature" not in scripted.last.body  # API 2026-10-21 rejects it at any value


def test_chat_stream_sends_sources_messages_done_then_done_marker(ragline: Ragline, scripted: FakeAnthropic) -> None:
    response = ragline.client.post("/v1/kb/chat/stream", json={"query": QUESTION})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"

    first, *messages, done, end = sse_frames(response)
    assert first["event"] == "sources"
    sources = first["data"]["sources"]
    assert {s["title"] for s in sources} == {"Billing handbook", "Security policy"}
    assert scripted.last.user_text == expected_user_message(QUESTION, sources)
    assert len(messages) > 5 and all(m["event"] == "message" for m in messages)
    assert "".join(m["data"]["content"] for m in messages) == ANSWER
    assert done["event"] == "done"
    assert done["data"]["query_id"].startswith("qry_")
    assert done["data"]["usage"] == {"input_tokens": 812, "output_tokens": 27}
    assert done["data"]["model"] == MODEL
    assert end == "[DONE]"


def test_chat_stream_failing_mid_answer_ends_with_an_error_event(ragline: Ragline, scripted: FakeAnthropic) -> None:
    scripted.script(answer=ANSWER, fail_after_deltas=2)
    response = ragline.client.post("/v1/kb/chat/stream", json={"query": QUESTION})
    assert response.status_code == 200  # the headers were sent before Claude failed
    sources, *messages, error, end = sse_frames(response)
    assert sources["event"] == "sources"
    assert [m["event"] for m in messages] == ["message", "message"]
    assert "".join(m["data"]["content"] for m in messages) == "Invoices are"
    assert error["event"] == "error"
    assert error["data"]["message"].startswith("Claude ") and error["data"]["message"].endswith(": Overloaded")
    assert end == "[DONE]"


def test_claude_overloaded_before_answering(ragline: Ragline, scripted: FakeAnthropic) -> None:
    scripted.script(answer=ANSWER, fail_status=529)
    response = ragline.client.post("/v1/kb/chat", json={"query": QUESTION})
    assert response.status_code == 503
    assert response.json() == {
        "error": "Answer model unavailable",
        "message": "Claude answered 529: Overloaded",
        "code": 503,
    }
    assert len(scripted.requests) == 3, "the SDK's default two retries, then the error"

    # Retrieval runs before the stream starts, the model call inside it: a 200 stream that reports the error.
    response = ragline.client.post("/v1/kb/chat/stream", json={"query": QUESTION})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    sources, error, end = sse_frames(response)
    assert sources["event"] == "sources" and len(sources["data"]["sources"]) == 2
    assert error == {"event": "error", "data": {"message": "Claude answered 529: Overloaded"}}
    assert end == "[DONE]"


def test_one_overloaded_answer_is_retried(ragline: Ragline, scripted: FakeAnthropic) -> None:
    scripted.script(answer=ANSWER, model=MODEL, fail_status=529, fail_times=1)
    response = ragline.client.post("/v1/kb/chat", json={"query": QUESTION})
    assert response.status_code == 200, response.text
    assert response.json()["answer"] == ANSWER
    assert len(scripted.requests) == 2


def test_an_off_topic_question_is_not_sent_to_claude(ragline: Ragline, scripted: FakeAnthropic) -> None:
    scripted.reset()
    response = ragline.client.post("/v1/kb/chat", json={"query": "What is the capital of Mongolia?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == NOT_IN_DOCUMENTS
    assert (body["sources"], body["grounded"]) == ([], False)
    assert body["confidence"] < Settings().chat_answer_floor
    assert scripted.requests == [], "below the relevance floor nothing is asked of the model"


@pytest.mark.parametrize(
    ("claude_says", "answer", "grounded"),
    [
        ("Invoices are due within 30 days [1, 2].", "Invoices are due within 30 days [1][2].", True),
        ("Invoices are due within 30 days [7].", "Invoices are due within 30 days .", False),
        ("Invoices are due within 30 days.", "Invoices are due within 30 days.", False),
        (NOT_IN_DOCUMENTS, NOT_IN_DOCUMENTS, False),
    ],
)
def test_claude_citations_one_number_per_bracket_and_grounded(
    ragline: Ragline, scripted: FakeAnthropic, claude_says: str, answer: str, grounded: bool
) -> None:
    scripted.script(answer=claude_says, model=MODEL)
    body = ragline.client.post("/v1/kb/chat", json={"query": QUESTION}).json()
    assert (body["answer"], body["grounded"]) == (answer, grounded)
    assert body["confidence"] >= Settings().chat_answer_floor
    assert "Cite only the numbers of the passages given" in scripted.last.body["system"]

    first, *messages, done, end = sse_frames(ragline.client.post("/v1/kb/chat/stream", json={"query": QUESTION}))
    assert "".join(m["data"]["content"] for m in messages) == answer
    assert done["data"]["grounded"] is grounded
    assert done["data"]["confidence"] == body["confidence"]
