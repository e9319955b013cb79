"""ClaudeAnswerModel against a local fake of the Messages API that speaks the real SSE protocol."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from ragline.adapters import anthropic_claude
from ragline.adapters.anthropic_claude import ClaudeAnswerModel, iter_sse
from ragline.chat.prompt import SYSTEM_PROMPT
from ragline.errors import DependencyUnavailable
from ragline.models import ChatTurn
from ragline.ports import AnswerDelta, AnswerDone, AnswerPassage, AnswerRequest
from ragline_emulator.anthropic_server import FakeAnthropic

ANSWER = "Invoices are due within 30 days [1], and late fees are 2% per month [2]."
PASSAGES = [
    AnswerPassage(number=1, title="Billing handbook", page=3, text="  Invoices are due within 30 days.\n"),
    AnswerPassage(number=2, title=None, page=None, text="Late fees are 2% per month."),
]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> FakeAnthropic:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # a developer's proxy must not see 127.0.0.1
    server.script(answer=ANSWER)
    return server


def model_for(
    fake: FakeAnthropic, *, api_key: str | None = None, base_url: str | None = None, max_retries: int = 0
) -> ClaudeAnswerModel:
    return ClaudeAnswerModel(
        api_key or fake.api_key,
        model="claude-sonnet-5-5",
        max_tokens=1024,
        base_url=base_url or fake.url,
        timeout=10.0,
        max_retries=max_retries,
    )


def request(**overrides: object) -> AnswerRequest:
    return AnswerRequest(question="When are invoices due?", passages=list(PASSAGES), **overrides)  # type: ignore[arg-type]


def collect(model: ClaudeAnswerModel, req: AnswerRequest) -> tuple[list[str], list[AnswerDone]]:
    deltas: list[str] = []
    done: list[AnswerDone] = []
    for event in model.stream(req):
        if isinstance(event, AnswerDelta):
            assert not done, "no delta may follow AnswerDone"
            deltas.append(event.text)
        else:
            done.append(event)
    return deltas, done


def test_streamed_deltas_join_into_the_scripted_answer(fake: FakeAnthropic) -> None:
    deltas, done = collect(model_for(fake), request())
    assert len(deltas) > 5, "the answer must arrive in several deltas, not one block"
    assert "".join(deltas) == ANSWER
    assert len(done) == 1


def test_done_carries_usage_and_model_from_the_stream(fake: FakeAnthropic) -> None:
    fake.script(answer=ANSWER, input_tokens=1234, output_tokens=56, model="claude-sonnet-5-5-20261101")
    _, (done,) = collect(model_for(fake), request())
    # input from message_start, output from message_delta (message_start said 1), model from the stream
    assert (done.usage.input_tokens, done.usage.output_tokens) == (1234, 56)
    assert done.model == "claude-sonnet-5-5-20261101"


def test_request_has_system_prompt_numbered_passages_and_defaults(fake: FakeAnthropic) -> None:
    collect(model_for(fake), request())
    assert len(fake.requests) == 1
    sent = fake.last
    assert sent.body["stream"] is True
    assert sent.body["model"] == "claude-sonnet-5-5"
    assert sent.body["max_tokens"] == 1024
    assert "temperature" not in sent.body, "no temperature unless the caller chose one"
    assert sent.body["system"] == SYSTEM_PROMPT
    assert [m["role"] for m in sent.body["messages"]] == ["user"]
    assert sent.user_text == (
        "Passages:\n\n"
        "[1] (Billing handbook, page 3)\nInvoices are due within 30 days.\n\n"
        "[2] (untitled)\nLate fees are 2% per month.\n\n"
        "Question: When are invoices due?"
    )
    assert sent.sent_key == fake.api_key
    assert sent.headers["anthropic-version"]


def test_history_turns_come_before_the_question_and_overrides_win(fake: FakeAnthropic) -> None:
    history = [
        ChatTurn(role="user", content="What is the billing handbook?"),
        ChatTurn(role="assistant", content="It describes invoices and fees [1]."),
    ]
    collect(model_for(fake), request(history=history, model="claude-haiku-5-5", max_tokens=77))
    body = fake.last.body
    assert body["messages"][:2] == [
        {"role": "user", "content": "What is the billing handbook?"},
        {"role": "assistant", "content": "It describes invoices and fees [1]."},
    ]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][2]["content"].startswith("Passages:\n\n[1] (Billing handbook, page 3)")
    assert body["messages"][2]["content"].endswith("Question: When are invoices due?")
    assert (body["model"], body["max_tokens"]) == ("claude-haiku-5-5", 77)


def test_a_temperature_in_the_request_does_not_break_the_answer(fake: FakeAnthropic) -> None:
    # AnswerRequest (and ChatRequest) accept a temperature. anthropic>=1 removed it from messages.stream(), and
    # API version 2026-10-21 (what SDK 2.x sends) rejects it at any value, so it must not be sent at all.
    deltas, done = collect(model_for(fake), request(temperature=0.0))
    assert "".join(deltas) == ANSWER and len(done) == 1
    assert "temperature" not in fake.last.body


def test_no_passages_still_asks_and_says_so(fake: FakeAnthropic) -> None:
    collect(model_for(fake), AnswerRequest(question="Anything?", passages=[]))
    assert fake.last.user_text == "There are no passages for this question.\n\nQuestion: Anything?"


@pytest.mark.parametrize(
    ("status", "reason"),
    [(529, "Overloaded"), (500, "Internal server error"), (429, "rate limit error")],
)
def test_http_error_before_the_stream_is_dependency_unavailable(fake: FakeAnthropic, status: int, reason: str) -> None:
    fake.script(answer=ANSWER, fail_status=status)
    deltas: list[str] = []
    with pytest.raises(DependencyUnavailable) as caught:
        for event in model_for(fake).stream(request()):
            deltas.append(getattr(event, "text", ""))
    assert deltas == []
    assert caught.value.message == f"Claude answered {status}: {reason}"
    assert caught.value.status == 503
    assert caught.value.body() == {"error": "Answer model unavailable", "message": caught.value.message, "code": 503}
    assert len(fake.requests) == 1, "max_retries=0: one attempt"


def test_wrong_api_key_is_dependency_unavailable(fake: FakeAnthropic) -> None:
    with pytest.raises(DependencyUnavailable, match=r"^Claude answered 401: invalid x-api-key$"):
        collect(model_for(fake, api_key="sk-ant-wrong"), request())


def test_error_mid_stream_raises_after_the_deltas_already_sent(fake: FakeAnthropic) -> None:
    fake.script(answer=ANSWER, fail_after_deltas=3)
    deltas: list[str] = []
    with pytest.raises(DependencyUnavailable) as caught:
        for event in model_for(fake).stream(request()):
            assert isinstance(event, AnswerDelta), "no AnswerDone after a failed stream"
            deltas.append(event.text)
    assert "".join(deltas) == "Invoices are due"
    assert caught.value.message.startswith("Claude ")
    assert caught.value.message.endswith(": Overloaded")
    assert caught.value.status == 503


def test_an_error_mid_stream_is_not_reported_as_http_200(fake: FakeAnthropic) -> None:
    fake.script(answer=ANSWER, fail_after_deltas=1)
    with pytest.raises(DependencyUnavailable) as caught:
        collect(model_for(fake), request())
    assert "200" not in caught.value.message, caught.value.message
    assert "Overloaded" in caught.value.message


def test_unreachable_base_url_is_dependency_unavailable(fake: FakeAnthropic) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, and now has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DependencyUnavailable, match=r"^Claude is unreachable: ") as caught:
        collect(model_for(fake, base_url=f"http://127.0.0.1:{port}"), request())
    assert caught.value.error == "Answer model unavailable"


def test_the_fake_answers_without_streaming_and_rejects_sampling_params(fake: FakeAnthropic) -> None:
    """The fake itself, over plain HTTP: the JSON message, and the 400 of API 2026-10-21 for sampling params."""
    headers = {"x-api-key": fake.api_key, "anthropic-version": "2026-10-21"}
    body = {"model": "claude-sonnet-5-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=fake.url, headers=headers, trust_env=False) as client:
        answered = client.post("/v1/messages", json=body)
        rejected = client.post("/v1/messages", json={**body, "temperature": 0.2})
    assert answered.status_code == 200, answered.text
    message = answered.json()
    assert message["content"] == [{"type": "text", "text": ANSWER}]
    assert message["model"] == "claude-sonnet-5-5-20250929"
    assert (message["usage"]["input_tokens"], message["usage"]["output_tokens"], message["stop_reason"]) == (
        321,
        42,
        "end_turn",
    )
    assert "stream" not in fake.requests[0].body
    assert rejected.status_code == 400
    assert rejected.json()["error"] == {
        "type": "invalid_request_error",
        "message": "temperature: Extra inputs are not permitted",
    }


# --- the httpx client: headers, retries, the SSE protocol ---------------------------------------------------------


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The adapter's waits between attempts, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(anthropic_claude, "_sleep", recorded.append)
    return recorded


def test_request_headers_are_the_messages_api_ones(fake: FakeAnthropic) -> None:
    collect(model_for(fake), request())
    headers = fake.last.headers
    assert headers["x-api-key"] == fake.api_key
    assert "authorization" not in headers
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "text/event-stream"


def test_one_overloaded_answer_is_retried_with_backoff(fake: FakeAnthropic, sleeps: list[float]) -> None:
    fake.script(answer=ANSWER, fail_status=529, fail_times=2)
    deltas, done = collect(model_for(fake, max_retries=2), request())
    assert "".join(deltas) == ANSWER and len(done) == 1
    assert len(fake.requests) == 3
    (first, second) = sleeps  # the SDK's backoff: 0.5 s, then 1 s, each less up to 25 % jitter
    assert 0.375 <= first <= 0.5 and 0.75 <= second <= 1.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry_after": "2"}, 2.0),
        ({"retry_after_ms": "1234"}, 1.234),
        ({"retry_after": "7", "retry_after_ms": "250"}, 0.25),  # the precise one wins, as in the SDK
        ({"retry_after": "3600"}, anthropic_claude.MAX_RETRY_AFTER),  # capped
        ({"retry_after": "soon"}, None),  # unreadable: the backoff
    ],
)
def test_retry_after_is_honoured(
    fake: FakeAnthropic, sleeps: list[float], headers: dict[str, str], expected: float | None
) -> None:
    fake.script(answer=ANSWER, fail_status=429, fail_times=1, **headers)
    deltas, _ = collect(model_for(fake, max_retries=1), request())
    assert "".join(deltas) == ANSWER
    assert len(fake.requests) == 2
    (slept,) = sleeps
    if expected is None:
        assert 0.375 <= slept <= 0.5
    else:
        assert slept == pytest.approx(expected)


def test_retry_after_is_really_waited(fake: FakeAnthropic) -> None:
    fake.script(answer=ANSWER, fail_status=503, fail_times=1, retry_after_ms="300")
    started = time.monotonic()
    deltas, _ = collect(model_for(fake, max_retries=1), request())
    assert time.monotonic() - started >= 0.3
    assert "".join(deltas) == ANSWER and len(fake.requests) == 2


def test_retries_run_out_with_the_last_status(fake: FakeAnthropic, sleeps: list[float]) -> None:
    fake.script(answer=ANSWER, fail_status=529)
    with pytest.raises(DependencyUnavailable, match=r"^Claude answered 529: Overloaded$"):
        collect(model_for(fake, max_retries=2), request())
    assert len(fake.requests) == 3 and len(sleeps) == 2


@pytest.mark.parametrize(
    ("status", "kind", "message"),
    [
        (400, "invalid_request_error", "messages.0.content: too long"),
        (403, "permission_error", "Your API key does not have permission to use the specified resource."),
        (404, "not_found_error", "model: claude-nonexistent"),
    ],
)
def test_client_errors_are_not_retried(
    fake: FakeAnthropic, sleeps: list[float], status: int, kind: str, message: str
) -> None:
    fake.script(answer=ANSWER, fail_status=status, error_type=kind, error_message=message)
    with pytest.raises(DependencyUnavailable) as caught:
        collect(model_for(fake, max_retries=2), request())
    assert caught.value.message == f"Claude answered {status}: {message}"
    assert caught.value.error == "Answer model unavailable"
    assert len(fake.requests) == 1 and sleeps == []


def test_wrong_api_key_is_not_retried(fake: FakeAnthropic, sleeps: list[float]) -> None:
    with pytest.raises(DependencyUnavailable, match=r"^Claude answered 401: invalid x-api-key$"):
        collect(model_for(fake, api_key="sk-ant-wrong", max_retries=2), request())
    assert len(fake.requests) == 1 and sleeps == []


def test_no_retry_after_the_first_delta(fake: FakeAnthropic, sleeps: list[float]) -> None:
    fake.script(answer=ANSWER, fail_after_deltas=3)
    deltas: list[str] = []
    with pytest.raises(DependencyUnavailable, match=r"^Claude failed mid-answer: Overloaded$"):
        for event in model_for(fake, max_retries=2).stream(request()):
            deltas.append(event.text)  # type: ignore[union-attr]
    assert "".join(deltas) == "Invoices are due"
    assert len(fake.requests) == 1 and sleeps == []


def test_a_connection_lost_after_the_first_delta_is_not_retried(fake: FakeAnthropic, sleeps: list[float]) -> None:
    fake.script(answer=ANSWER, drop_after_deltas=2)
    deltas: list[str] = []
    with pytest.raises(DependencyUnavailable, match=r"^Claude failed mid-answer: ") as caught:
        for event in model_for(fake, max_retries=2).stream(request()):
            deltas.append(event.text)  # type: ignore[union-attr]
    assert "".join(deltas) == "Invoices are"
    assert caught.value.status == 503
    assert len(fake.requests) == 1 and sleeps == []


def test_an_error_event_before_the_first_delta_is_retried(fake: FakeAnthropic, sleeps: list[float]) -> None:
    fake.script(answer=ANSWER, fail_after_deltas=0, fail_times=1)
    deltas, done = collect(model_for(fake, max_retries=1), request())
    assert "".join(deltas) == ANSWER and len(done) == 1
    assert len(fake.requests) == 2 and len(sleeps) == 1


def test_a_connection_lost_before_the_first_delta_is_retried(fake: FakeAnthropic, sleeps: list[float]) -> None:
    fake.script(answer=ANSWER, drop_after_deltas=0, fail_times=1)
    deltas, done = collect(model_for(fake, max_retries=1), request())
    assert "".join(deltas) == ANSWER and len(done) == 1
    assert len(fake.requests) == 2 and len(sleeps) == 1


def test_connection_refused_is_dependency_unavailable_after_the_retries(
    fake: FakeAnthropic, sleeps: list[float]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DependencyUnavailable, match=r"^Claude is unreachable: ConnectError") as caught:
        collect(model_for(fake, base_url=f"http://127.0.0.1:{port}", max_retries=2), request())
    assert caught.value.status == 503 and caught.value.error == "Answer model unavailable"
    assert len(sleeps) == 2, "two retries, each after a backoff"


def test_an_unknown_event_type_is_ignored(fake: FakeAnthropic) -> None:
    fake.script(
        answer=ANSWER,
        input_tokens=7,
        output_tokens=9,
        extra_events=(
            ("content_block_annotation", {"type": "content_block_annotation", "index": 0, "note": "new in 2031"}),
            ("message", {"type": "message_progress", "fraction": 0.5}),  # a nameless event, typed only in its data
        ),
    )
    deltas, (done,) = collect(model_for(fake), request())
    assert "".join(deltas) == ANSWER
    assert (done.usage.input_tokens, done.usage.output_tokens) == (7, 9)


def test_pings_between_deltas_change_nothing(fake: FakeAnthropic) -> None:
    fake.script(answer=ANSWER, ping_every=1)
    deltas, done = collect(model_for(fake), request())
    assert "".join(deltas) == ANSWER and len(done) == 1


def test_non_text_blocks_are_not_part_of_the_answer(fake: FakeAnthropic) -> None:
    fake.script(
        answer=ANSWER,
        extra_events=(
            (
                "content_block_start",
                {"type": "content_block_start", "index": 1, "content_block": {"type": "thinking", "thinking": ""}},
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "thinking_delta", "thinking": "Let me see."},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "text_delta", "text": "not in a text block"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ),
    )
    deltas, _ = collect(model_for(fake), request())
    assert "".join(deltas) == ANSWER


@pytest.mark.parametrize("line_ending", ["\n", "\r\n", "\r"])
def test_multi_line_data_comments_and_any_line_ending(fake: FakeAnthropic, line_ending: str) -> None:
    fake.script(answer=ANSWER, pretty=True, line_ending=line_ending, input_tokens=11, output_tokens=22, model="m-1")
    deltas, (done,) = collect(model_for(fake), request())
    assert "".join(deltas) == ANSWER
    assert (done.usage.input_tokens, done.usage.output_tokens, done.model) == (11, 22, "m-1")


def test_a_stream_that_ends_before_message_stop_is_an_error(fake: FakeAnthropic) -> None:
    stream = b"".join(
        f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
        for kind, data in [
            ("message_start", {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 1}}}),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Half"}},
            ),
        ]
    )
    transport = httpx.MockTransport(
        lambda req: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream)
    )
    model = model_for(fake)
    model._client = httpx.Client(transport=transport)
    deltas: list[str] = []
    with pytest.raises(DependencyUnavailable, match=r"^Claude failed mid-answer: .*message_stop"):
        for event in model.stream(request()):
            deltas.append(event.text)  # type: ignore[union-attr]
    assert deltas == ["Half"]


# --- the SSE parser on its own -------------------------------------------------------------------------------------


def sse(*chunks: bytes) -> list[tuple[str, str]]:
    return list(iter_sse(iter(chunks)))


def test_sse_fields_comments_and_dispatch() -> None:
    assert sse(b"event: a\ndata: 1\n\n: comment\ndata:2\n\nevent: lonely\n\n") == [("a", "1"), ("message", "2")]


def test_sse_multi_line_data_joins_with_newlines() -> None:
    assert sse(b'event: e\ndata: {\ndata:  "x": 1\ndata: }\n\n') == [("e", '{\n "x": 1\n}')]


def test_sse_survives_any_split_into_chunks() -> None:
    stream = "\ufeffevent: e\r\ndata: caf\u00e9 \u2028 ok\r\n\r\nevent: f\rdata: 2\r\rdata: 3\n\n".encode()
    expected = [("e", "caf\u00e9 \u2028 ok"), ("f", "2"), ("message", "3")]
    assert sse(stream) == expected
    for cut in range(1, len(stream)):
        assert sse(stream[:cut], stream[cut:]) == expected, cut
    assert sse(*(stream[i : i + 1] for i in range(len(stream)))) == expected


def test_sse_drops_an_event_without_its_blank_line() -> None:
    assert sse(b"event: a\ndata: 1\n\nevent: b\ndata: 2\n") == [("a", "1")]
    assert sse(b"data: 1\r\r") == [("message", "1")]


def test_the_adapter_does_not_import_the_anthropic_sdk() -> None:
    code = (
        "import sys\n"
        "from ragline.adapters.anthropic_claude import ClaudeAnswerModel\n"
        "ClaudeAnswerModel('sk-ant-x', model='m', max_tokens=1)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('anthropic', 'httpx2', 'jiter')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_after_drop_connections_a_new_client_answers(fake: FakeAnthropic) -> None:
    """SnapStart's after-restore hook: the kept connection is closed, the next answer opens another."""
    model = model_for(fake)
    collect(model, request())
    kept = model._client
    model.drop_connections()
    assert kept.is_closed and model._client is not kept
    deltas, done = collect(model, request())
    assert "".join(deltas) == ANSWER and len(done) == 1
