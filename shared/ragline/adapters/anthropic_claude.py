"""Claude through the anthropic SDK, streamed. The only module that imports anthropic, and only
when an API key is configured (the import alone costs about a second)."""

from __future__ import annotations

from collections.abc import Iterator

from ragline.chat.prompt import SYSTEM_PROMPT, user_message
from ragline.errors import DependencyUnavailable
from ragline.models import Usage
from ragline.ports import AnswerDelta, AnswerDone, AnswerRequest


class ClaudeAnswerModel:
    def __init__(
        self,
        api_key: str,
        *,
        model: str,
        max_tokens: int,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        import anthropic

        self._anthropic = anthropic
        self.name = model
        self.max_tokens = max_tokens
        self._client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )

    def stream(self, request: AnswerRequest) -> Iterator[AnswerDelta | AnswerDone]:
        messages = [{"role": turn.role, "content": turn.content} for turn in request.history]
        messages.append({"role": "user", "content": user_message(request.question, request.passages)})
        # `temperature` is not forwarded: current Claude models and this SDK no longer take sampling settings.
        try:
            with self._client.messages.stream(
                model=request.model or self.name,
                max_tokens=request.max_tokens or self.max_tokens,
                system=SYSTEM_PROMPT,
                messages=messages,
            ) as stream:
                for text in stream.text_stream:
                    yield AnswerDelta(text)
                final = stream.get_final_message()
        except self._anthropic.APIStatusError as exc:
            # An error event inside a 200 stream arrives with the stream's status: say what happened instead.
            what = f"Claude answered {exc.status_code}" if exc.status_code >= 400 else "Claude failed mid-answer"
            raise DependencyUnavailable(f"{what}: {_reason(exc)}", error="Answer model unavailable") from exc
        except self._anthropic.APIError as exc:
            raise DependencyUnavailable(f"Claude is unreachable: {exc}", error="Answer model unavailable") from exc
        yield AnswerDone(
            usage=Usage(input_tokens=final.usage.input_tokens, output_tokens=final.usage.output_tokens),
            model=final.model,
        )


def _reason(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc)
