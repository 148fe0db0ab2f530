"""Build OpenAI response objects (completions, chat completions, their stream chunks and logprobs)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..engines.types import TokenLogprob


def new_id(prefix: str) -> str:
    """A response id like OpenAI's (`cmpl-…`, `chatcmpl-…`)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The `usage` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@dataclass
class ChoiceState:
    """What has been produced so far for one choice."""

    text: str = ""
    tokens: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    generated: int = 0


class CompletionLogprobs:
    """The legacy completions `logprobs` object: tokens, token_logprobs, top_logprobs, text_offset."""

    def __init__(self, start_offset: int = 0) -> None:
        self.tokens: list[str] = []
        self.token_logprobs: list[float | None] = []
        self.top_logprobs: list[dict[str, float] | None] = []
        self.text_offset: list[int] = []
        self._offset = start_offset

    def extend(self, items: Sequence[TokenLogprob], with_top: bool) -> None:
        """Append tokens (the first prompt token has no log-probability and no alternatives)."""
        for item in items:
            self.tokens.append(item.text)
            self.token_logprobs.append(item.logprob)
            self.top_logprobs.append(dict(item.top) if with_top and item.logprob is not None else None)
            self.text_offset.append(self._offset)
            self._offset += len(item.text)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return {
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        }


def chat_logprobs(items: Sequence[TokenLogprob]) -> dict[str, Any]:
    """The chat `logprobs` object: one entry per token with its bytes and top alternatives."""
    return {
        "content": [
            {
                "token": item.text,
                "logprob": item.logprob,
                "bytes": list(item.text.encode("utf-8")),
                "top_logprobs": [
                    {"token": text, "logprob": value, "bytes": list(text.encode("utf-8"))}
                    for text, value in item.top
                ],
            }
            for item in items
        ]
    }


def completion_object(
    response_id: str, model: str, choices: list[dict[str, Any]], usage_obj: dict[str, int] | None
) -> dict[str, Any]:
    """A `text_completion` object (also used for stream chunks, with usage None)."""
    return {
        "id": response_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage_obj,
    }


def chat_object(
    response_id: str, model: str, choices: list[dict[str, Any]], usage_obj: dict[str, int] | None, chunk: bool
) -> dict[str, Any]:
    """A `chat.completion` object or a `chat.completion.chunk`."""
    return {
        "id": response_id,
        "object": "chat.completion.chunk" if chunk else "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage_obj,
    }
