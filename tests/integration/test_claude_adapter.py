"""ClaudeAnswerModel against a local fake of the Messages API that speaks the real SSE protocol."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from ragline.adapters.anthropic_claude import ClaudeAnswerModel
from ragline.chat.prompt import SYSTEM_PROMPT
from ragline.errors import DependencyUnavailable
from ragline.models import ChatTurn
from ragline.ports import AnswerDelta, AnswerDone, AnswerPassage, AnswerRequest

try:
    from tests.fakes.anthropic_server import FakeAnthropic
except ImportError:  # pytest put tests/ itself on sys.path
    from fakes.anthropic_server import FakeAnthropic

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


def model_for(fake: FakeAnthropic, *, api_key: str | None = None, base_url: str | None = None) -> ClaudeAnswerModel:
    return ClaudeAnswerModel(
        api_key or fake.api_key, model="claude-sonnet-5-5", max_tokens=1024,
        base_url=base_url or fake.url, timeout=10.0, max_retries=0,
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
    """The fake itself, checked with the SDK's own parser: the JSON message, and the 400 of API 2026-10-21."""
    import anthropic

    with anthropic.Anthropic(api_key=fake.api_key, base_url=fake.url, max_retries=0) as client:
        message = client.messages.create(
            model="claude-sonnet-5-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        with pytest.raises(anthropic.BadRequestError, match="temperature: Extra inputs are not permitted"):
            client.messages.create(
                model="claude-sonnet-5-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                extra_body={"temperature": 0.2},
            )
    assert message.content[0].text == ANSWER  # type: ignore[union-attr]
    assert message.model == "claude-sonnet-5-5-20250929"
    assert (message.usage.input_tokens, message.usage.output_tokens, message.stop_reason) == (321, 42, "end_turn")
    assert "stream" not in fake.requests[0].body
