"""A chat request cannot pick any model or ask for any number of tokens: settings bound both, on both chat routes,
with Claude configured and without (extractive answers), before anything is streamed or sent to the model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from pydantic import ValidationError

from ragline.chat.extractive import EXTRACTIVE_MODEL
from ragline.chat.service import ChatBounds
from ragline.config import Settings
from ragline.errors import Unprocessable
from ragline.models import ChatRequest
from ragline_emulator.anthropic_server import FakeAnthropic
from tests.support import Server, ragline, wait_for_status

CONFIGURED = Settings.model_fields["chat_model"].default
ALLOWED = "claude-haiku-5-5"
LIMIT = 2000
ROUTES = ("/v1/kb/chat", "/v1/kb/chat/stream")


# ---- the rule ------------------------------------------------------------------------------------
BOUNDS = ChatBounds(frozenset({CONFIGURED, ALLOWED}), LIMIT)


@pytest.mark.parametrize(
    ("model", "max_tokens"),
    [(None, None), (CONFIGURED, None), (ALLOWED, LIMIT), (None, 1)],
)
def test_bounds_let_through(model: str | None, max_tokens: int | None) -> None:
    BOUNDS.check(ChatRequest(query="q", model=model, max_tokens=max_tokens))


@pytest.mark.parametrize(
    ("model", "max_tokens", "field", "message"),
    [
        ("claude-opus-5-5", None, "model", "model: 'claude-opus-5-5' is not an allowed model (allowed: "),
        (CONFIGURED.upper(), None, "model", "model: "),  # names are compared exactly
        ("", None, "model", "model: '' is not an allowed model"),
        (None, LIMIT + 1, "max_tokens", f"max_tokens: Input should be less than or equal to {LIMIT}"),
        ("claude-opus-5-5", LIMIT + 1, "model", "model: "),  # the first problem is reported
    ],
)
def test_bounds_reject(model: str | None, max_tokens: int | None, field: str, message: str) -> None:
    with pytest.raises(Unprocessable) as raised:
        BOUNDS.check(ChatRequest(query="q", model=model, max_tokens=max_tokens))
    assert raised.value.status == 422
    assert raised.value.message.startswith(message)
    assert raised.value.details[0]["loc"] == ["body", field]


def test_settings_allow_the_configured_model_and_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAGLINE_CHAT_MODEL", "RAGLINE_CHAT_ALLOWED_MODELS", "RAGLINE_CHAT_MAX_TOKENS_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().chat_models == {CONFIGURED}
    assert Settings().chat_max_tokens_limit == 4096
    monkeypatch.setenv("RAGLINE_CHAT_MODEL", "claude-opus-5-5")
    monkeypatch.setenv("RAGLINE_CHAT_ALLOWED_MODELS", f" {ALLOWED}, claude-x ,")
    assert Settings().chat_models == {"claude-opus-5-5", ALLOWED, "claude-x"}


def test_settings_refuse_a_default_max_tokens_above_the_limit() -> None:
    with pytest.raises(ValidationError, match="RAGLINE_CHAT_MAX_TOKENS must not exceed RAGLINE_CHAT_MAX_TOKENS_LIMIT"):
        Settings(chat_max_tokens=3000, chat_max_tokens_limit=LIMIT)


# ---- both routes of a real server, with Claude and without -------------------------------------
INVOICES = "Invoices are due within 30 days of the invoice date. Late invoices accrue a fee of 2% per month."


@dataclass
class Served:
    client: httpx.Client
    fake: FakeAnthropic | None  # None: no LLM configured, answers are extractive


@pytest.fixture(scope="module", params=["claude", "extractive"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp(f"chat-bounds-{request.param}")
    env = {
        "RAGLINE_CHAT_ALLOWED_MODELS": ALLOWED,
        "RAGLINE_CHAT_MAX_TOKENS_LIMIT": str(LIMIT),
        "RAGLINE_ANSWER_CACHE_ENABLED": "false",  # every request here must reach the model
        "ANTHROPIC_API_KEY": "",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    fake = FakeAnthropic().start() if request.param == "claude" else None
    if fake is not None:
        env.update(ANTHROPIC_API_KEY=fake.api_key, ANTHROPIC_BASE_URL=fake.url)
    api_key = ragline("keys", "create", "--tenant", "t1", "--data-dir", str(data_dir), env=env).strip()
    server = Server(data_dir, env=env).start()
    try:
        with httpx.Client(base_url=server.url, headers={"x-api-key": api_key}, timeout=60, trust_env=False) as client:
            # A document that answers the question: below the relevance floor no model would be asked.
            accepted = client.post("/v1/kb/documents", json={"title": "Billing", "text": INVOICES})
            assert accepted.status_code == 202, accepted.text
            wait_for_status(client, accepted.json()["data"]["document_id"], ("indexed",))
            yield Served(client, fake)
    finally:
        server.stop()
        if fake is not None:
            fake.stop()


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"model": "claude-opus-5-5"}, "model: 'claude-opus-5-5' is not an allowed model (allowed: "),
        ({"max_tokens": LIMIT + 1}, f"max_tokens: Input should be less than or equal to {LIMIT}"),
    ],
)
def test_a_model_not_allowed_or_too_many_tokens_is_a_422_before_anything_streams(
    served: Served, route: str, extra: dict, message: str
) -> None:
    if served.fake is not None:
        served.fake.reset()
    response = served.client.post(route, json={"query": "When are invoices due?", **extra})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["error"], body["code"]) == ("Validation error", 422)
    assert body["message"].startswith(message)
    assert body["details"][0]["loc"] == ["body", next(iter(extra))]
    if served.fake is not None:
        assert served.fake.requests == [], "the model was asked anyway"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("model", [None, CONFIGURED, ALLOWED])
def test_allowed_models_and_the_token_limit_itself_are_answered(served: Served, route: str, model: str | None) -> None:
    if served.fake is not None:
        served.fake.reset()
    response = served.client.post(route, json={"query": "When are invoices due?", "model": model, "max_tokens": LIMIT})
    assert response.status_code == 200, response.text
    if route.endswith("/stream"):
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.text.endswith("data: [DONE]\n\n")
    if served.fake is not None:
        assert (served.fake.last.body["model"], served.fake.last.body["max_tokens"]) == (model or CONFIGURED, LIMIT)
    elif not route.endswith("/stream"):
        assert response.json()["model"] == EXTRACTIVE_MODEL
