"""Parse and validate OpenAI request bodies into typed requests; every bad value names its parameter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_param

MAX_LOGPROBS = 20
MAX_STOP_STRINGS = 16


@dataclass(frozen=True)
class CommonParams:
    """Parameters shared by completions and chat completions."""

    model: str
    max_tokens: int | None
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    n: int
    stream: bool
    include_usage: bool
    ignore_eos: bool  # vLLM's extension: keep generating past the end-of-sequence token


@dataclass(frozen=True)
class CompletionRequest:
    """POST /v1/completions. Each prompt is either text or token ids."""

    common: CommonParams
    prompts: tuple[str | tuple[int, ...], ...]
    logprobs: int | None
    echo: bool


@dataclass(frozen=True)
class ChatRequest:
    """POST /v1/chat/completions."""

    common: CommonParams
    messages: tuple[dict[str, Any], ...]
    logprobs: bool
    top_logprobs: int


def _int(
    body: dict[str, Any], name: str, default: int | None, low: int, high: int | None = None
) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_param(name, f"'{name}' must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise bad_param(name, f"'{name}' must be {bounds}, got {value}")
    return value


def _float(
    body: dict[str, Any], name: str, default: float, low: float, high: float, low_open: bool = False
) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_param(name, f"'{name}' must be a number, got {value!r}")
    if value > high or value < low or (low_open and value == low):
        left = "(" if low_open else "["
        raise bad_param(name, f"'{name}' must be in {left}{low}, {high}], got {value}")
    return float(value)


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_param(name, f"'{name}' must be a boolean, got {value!r}")
    return value


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        if len(value) > MAX_STOP_STRINGS:
            raise bad_param("stop", f"'stop' accepts at most {MAX_STOP_STRINGS} strings, got {len(value)}")
        return tuple(s for s in value if s)
    raise bad_param("stop", f"'stop' must be a string or a list of strings, got {value!r}")


def _common(
    body: dict[str, Any], max_n: int, default_max_tokens: int | None, max_tokens_key: str
) -> CommonParams:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_param("model", "'model' is required and must be a non-empty string")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise bad_param("stream_options", "'stream_options' must be an object")
        include_usage = _bool(options, "include_usage", False)
    stream = _bool(body, "stream", False)
    if options is not None and not stream:
        raise bad_param("stream_options", "'stream_options' is only allowed when 'stream' is true")
    return CommonParams(
        model=model,
        max_tokens=_int(body, max_tokens_key, default_max_tokens, 0),
        temperature=_float(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_float(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
        seed=_int(body, "seed", None, -(2**63), 2**63 - 1),
        stop=_stop(body),
        n=_int(body, "n", 1, 1, max_n) or 1,
        stream=stream,
        include_usage=include_usage,
        ignore_eos=_bool(body, "ignore_eos", False),
    )


def _prompts(value: Any) -> tuple[str | tuple[int, ...], ...]:
    def is_ids(item: Any) -> bool:
        return (
            isinstance(item, list)
            and bool(item)
            and all(isinstance(t, int) and not isinstance(t, bool) for t in item)
        )

    if isinstance(value, str):
        prompts: tuple[str | tuple[int, ...], ...] = (value,)
    elif is_ids(value):
        prompts = (tuple(value),)
    elif isinstance(value, list) and value and all(isinstance(p, str) for p in value):
        prompts = tuple(value)
    elif isinstance(value, list) and value and all(is_ids(p) for p in value):
        prompts = tuple(tuple(p) for p in value)
    else:
        raise bad_param(
            "prompt",
            "'prompt' must be a string, a list of strings, a list of token ids, or a list of such lists",
        )
    if any(p == "" for p in prompts):
        raise bad_param("prompt", "'prompt' must not be empty")
    return prompts


def parse_completion(body: dict[str, Any], max_n: int) -> CompletionRequest:
    """Validate a /v1/completions body (OpenAI's default max_tokens for completions is 16)."""
    common = _common(body, max_n, 16, "max_tokens")
    echo = _bool(body, "echo", False)
    logprobs = _int(body, "logprobs", None, 0, MAX_LOGPROBS)
    if common.max_tokens == 0 and not echo:
        raise bad_param("max_tokens", "'max_tokens' must be at least 1 unless 'echo' is true")
    return CompletionRequest(common, _prompts(body.get("prompt")), logprobs, echo)


def _messages(value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not value:
        raise bad_param("messages", "'messages' must be a non-empty list")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_param(f"messages[{i}]", f"messages[{i}] must be an object with a string 'role'")
        content = message.get("content")
        if isinstance(content, list):  # content parts: only text is supported by a text model
            texts = []
            for part in content:
                if (
                    not isinstance(part, dict)
                    or part.get("type") != "text"
                    or not isinstance(part.get("text"), str)
                ):
                    raise bad_param(f"messages[{i}].content", "only text content parts are supported")
                texts.append(part["text"])
            content = "".join(texts)
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise bad_param(f"messages[{i}].content", f"messages[{i}].content must be a string or text parts")
        out.append({"role": message["role"], "content": content})
    return tuple(out)


def parse_chat(body: dict[str, Any], max_n: int) -> ChatRequest:
    """Validate a /v1/chat/completions body (`max_completion_tokens` wins over the older `max_tokens`)."""
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    common = _common(body, max_n, None, key)
    if common.max_tokens == 0:
        raise bad_param(key, f"'{key}' must be at least 1")
    logprobs = _bool(body, "logprobs", False)
    top = _int(body, "top_logprobs", 0, 0, MAX_LOGPROBS) or 0
    if top and not logprobs:
        raise bad_param("top_logprobs", "'top_logprobs' requires 'logprobs' to be true")
    return ChatRequest(common, _messages(body.get("messages")), logprobs, top)


def check_context(prompt_tokens: int, max_tokens: int, max_model_len: int, param: str = "max_tokens") -> None:
    """400 when the prompt plus the requested completion do not fit the context (names both numbers)."""
    if prompt_tokens + max_tokens > max_model_len:
        raise ApiError(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, {max_tokens} in the "
            f"completion). Please reduce the prompt or '{param}'.",
            param=param,
            code="context_length_exceeded",
        )
