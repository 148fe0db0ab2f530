"""Request validation of the CPU server (pure: no model), stop-string detokenisation, and metric names."""

from __future__ import annotations

from typing import Any

import pytest

from tessera_runtime.engines.detok import TextTracker
from tessera_runtime.metrics import (
    REQUIRED_METRIC_NAMES,
    EngineMetrics,
    parse_exposition,
    token_count_buckets,
)
from tessera_runtime.server.errors import ApiError
from tessera_runtime.server.protocol import check_context, parse_chat, parse_completion


def _completion(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "prompt": "hi", **fields}


def test_completion_defaults_follow_openai() -> None:
    req = parse_completion(_completion(), max_n=8)
    assert req.common.max_tokens == 16
    assert (req.common.temperature, req.common.top_p, req.common.n) == (1.0, 1.0, 1)
    assert req.prompts == ("hi",)
    assert req.logprobs is None and not req.echo


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 9}, "n"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"logprobs": 21}, "logprobs"),
        ({"stop": ["a", 1]}, "stop"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": [1, "a"]}, "prompt"),
        ({"model": ""}, "model"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_values_name_their_parameter(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_completion(_completion(**fields), max_n=8)
    assert info.value.status == 400
    assert info.value.param == param


def test_prompt_forms() -> None:
    assert parse_completion(_completion(prompt=[1, 2, 3]), 8).prompts == ((1, 2, 3),)
    assert parse_completion(_completion(prompt=["a", "b"]), 8).prompts == ("a", "b")
    assert parse_completion(_completion(prompt=[[1], [2, 3]]), 8).prompts == ((1,), (2, 3))


def test_echo_allows_scoring_without_generation() -> None:
    req = parse_completion(_completion(max_tokens=0, echo=True, logprobs=0), 8)
    assert req.common.max_tokens == 0 and req.echo and req.logprobs == 0


def test_chat_validation() -> None:
    req = parse_chat(
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, 8
    )
    assert req.messages == ({"role": "user", "content": "hi"},)
    assert req.common.max_tokens is None  # the rest of the context
    assert parse_chat({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 5,
                       "max_tokens": 9}, 8).common.max_tokens == 5  # fmt: skip
    with pytest.raises(ApiError) as info:
        parse_chat({"model": "m", "messages": []}, 8)
    assert info.value.param == "messages"
    with pytest.raises(ApiError) as info:
        parse_chat({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, 8)
    assert info.value.param == "top_logprobs"


def test_context_check_names_both_numbers() -> None:
    check_context(100, 28, 128)
    with pytest.raises(ApiError) as info:
        check_context(100, 29, 128)
    assert "128" in info.value.message and "100" in info.value.message and "29" in info.value.message


class CharTokenizer:
    """One token per character (ids are code points)."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)


def _feed(tracker: TextTracker, text: str) -> list[str]:
    deltas = []
    for ch in text:
        deltas.append(tracker.push(ord(ch)))
        if tracker.stopped:
            break
    return deltas


def test_stop_string_is_cut_and_never_sent() -> None:
    tracker = TextTracker(CharTokenizer(), ["END"])
    deltas = _feed(tracker, "hello ENDING")
    assert tracker.stopped
    assert "".join(deltas) == "hello "
    assert tracker.text == "hello "


def test_text_that_only_looks_like_a_stop_is_released() -> None:
    tracker = TextTracker(CharTokenizer(), ["END"])
    deltas = _feed(tracker, "an EN")
    assert "".join(deltas) == "an "  # "EN" is held back: it may become "END"
    assert tracker.flush() == "EN"
    assert not tracker.stopped


def test_without_stops_every_character_streams() -> None:
    tracker = TextTracker(CharTokenizer(), [])
    assert _feed(tracker, "abc") == ["a", "b", "c"]


def test_metric_names_match_vllm() -> None:
    metrics = EngineMetrics("my-model", 4096)
    metrics.prompt_tokens.inc(3)
    metrics.observe_finished("length", 1.0, 0.1, 3, 5)
    text = metrics.render()[0].decode()
    values = parse_exposition(text)
    for name in REQUIRED_METRIC_NAMES:
        assert any(key.startswith(name) for key in values), name
    assert values["vllm:prompt_tokens_total"] == 3
    assert 'vllm:request_success_total{engine="0",finished_reason="length",model_name="my-model"} 1.0' in text
    assert "vllm:time_per_output_token_seconds" not in text  # the deprecated name is not exported
    assert token_count_buckets(100) == (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
