"""The CPU server through the official `openai` client: completions, chat, streaming, logprobs, errors."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from runtime_server import MODEL_NAME, ServerProcess

pytestmark = pytest.mark.model


def test_models_lists_the_served_model(openai_client: openai.OpenAI) -> None:
    models = openai_client.models.list()
    assert [m.id for m in models.data] == [MODEL_NAME]


def test_chat_answers_a_factual_question(openai_client: openai.OpenAI) -> None:
    response = openai_client.chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=20,
        temperature=0,
    )
    choice = response.choices[0]
    assert "Paris" in (choice.message.content or "")
    assert choice.finish_reason in ("stop", "length")
    assert response.usage is not None
    assert response.usage.prompt_tokens > 5
    assert 0 < response.usage.completion_tokens <= 20
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_completion_respects_max_tokens_and_reports_usage(openai_client: openai.OpenAI) -> None:
    response = openai_client.completions.create(
        model=MODEL_NAME,
        prompt="Once upon a time",
        max_tokens=7,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None
    assert response.usage.completion_tokens == 7
    assert response.choices[0].text


def test_seed_makes_sampling_reproducible_and_n_gives_distinct_choices(openai_client: openai.OpenAI) -> None:
    def sample(seed: int) -> list[str]:
        response = openai_client.completions.create(
            model=MODEL_NAME, prompt="My favourite animal is the", max_tokens=8, temperature=1.0, top_p=0.95,
            seed=seed, n=3, extra_body={"ignore_eos": True},
        )  # fmt: skip
        assert [c.index for c in response.choices] == [0, 1, 2]
        assert response.usage is not None and response.usage.completion_tokens == 24
        return [c.text for c in response.choices]

    first, again, other = sample(1234), sample(1234), sample(99)
    assert first == again
    assert first != other
    assert len(set(first)) > 1  # each of the n sequences has its own random stream


def test_batched_answers_equal_one_at_a_time_answers(openai_client: openai.OpenAI) -> None:
    """Continuous batching (rows joining mid-flight, left padding) does not change greedy outputs."""
    prompts = ["The capital of Italy is", "A recipe for pancakes: first,", "def add(a, b):"]

    def ask(prompt: str) -> str:
        return (
            openai_client.completions.create(
                model=MODEL_NAME, prompt=prompt, max_tokens=6, temperature=0, extra_body={"ignore_eos": True}
            )
            .choices[0]
            .text
        )

    alone = [ask(p) for p in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(ask, prompts))
    assert together == alone


def test_stop_string_cuts_the_output(openai_client: openai.OpenAI) -> None:
    base = (
        openai_client.completions.create(
            model=MODEL_NAME,
            prompt="Count: 1, 2, 3, 4,",
            max_tokens=16,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
        .choices[0]
        .text
    )
    assert "," in base
    stop = base[base.index(",") :][:2] if base.index(",") > 0 else ","
    stopped = openai_client.completions.create(
        model=MODEL_NAME, prompt="Count: 1, 2, 3, 4,", max_tokens=16, temperature=0, stop=[stop]
    ).choices[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == base[: base.index(stop)]


def test_echo_with_logprobs_scores_the_prompt(openai_client: openai.OpenAI) -> None:
    prompt = "The capital of France is Paris"
    response = openai_client.completions.create(
        model=MODEL_NAME, prompt=prompt, max_tokens=0, echo=True, logprobs=1, temperature=0
    )
    choice = response.choices[0]
    assert choice.text == prompt
    assert choice.logprobs is not None
    tokens = choice.logprobs.tokens or []
    logprobs = choice.logprobs.token_logprobs or []
    assert response.usage is not None and len(tokens) == response.usage.prompt_tokens
    assert "".join(tokens) == prompt
    assert logprobs[0] is None
    assert all(lp is not None and lp <= 0 for lp in logprobs[1:])
    assert choice.logprobs.text_offset == [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]

    # A plausible continuation is more likely than an implausible one (the scores mean something).
    def score(text: str) -> float:
        r = openai_client.completions.create(
            model=MODEL_NAME, prompt=text, max_tokens=0, echo=True, logprobs=0
        )
        logprobs = r.choices[0].logprobs
        assert logprobs is not None and logprobs.token_logprobs is not None
        return sum(v for v in logprobs.token_logprobs if v is not None)

    assert score("The capital of France is Paris") > score("The capital of France is banana")


def test_generated_logprobs_have_top_alternatives(openai_client: openai.OpenAI) -> None:
    response = openai_client.completions.create(
        model=MODEL_NAME,
        prompt="Hello",
        max_tokens=4,
        logprobs=3,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    lp = response.choices[0].logprobs
    assert lp is not None and lp.top_logprobs is not None and lp.token_logprobs is not None
    assert len(lp.tokens or []) == 4
    for chosen, top, value in zip(lp.tokens or [], lp.top_logprobs, lp.token_logprobs, strict=True):
        assert len(top) == 3
        # Greedy decoding picks the most likely token, so it heads the alternatives.
        assert max(top.values()) == pytest.approx(value, abs=1e-4)
        assert chosen in top
        assert math.isfinite(value)


def test_chat_streaming_sends_deltas_usage_and_done(
    server: ServerProcess, openai_client: openai.OpenAI
) -> None:
    stream = openai_client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes and finishes[-1] in ("stop", "length")
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    whole = openai_client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0
    )
    assert text == whole.choices[0].message.content
    assert usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    # The raw stream ends with the [DONE] sentinel.
    raw = _post(server, "/v1/chat/completions", {
        "model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": True,
    })  # fmt: skip
    assert raw.rstrip().endswith("data: [DONE]")


def test_completion_streaming_matches_the_whole_response(openai_client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"model": MODEL_NAME, "prompt": "The sky is", "max_tokens": 6, "temperature": 0}
    whole = openai_client.completions.create(**kwargs).choices[0].text
    streamed = "".join(
        c.choices[0].text for c in openai_client.completions.create(stream=True, **kwargs) if c.choices
    )
    assert streamed == whole


def _post(server: ServerProcess, path: str, body: Any, raw: bytes | None = None) -> str:
    request = urllib.request.Request(
        server.base_url + path, data=raw if raw is not None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(response.read().decode())


def _error(
    server: ServerProcess, path: str, body: Any = None, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    try:
        _post(server, path, body, raw)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    raise AssertionError("expected an error response")


def test_malformed_json_is_a_400(server: ServerProcess) -> None:
    status, body = _error(server, "/v1/completions", raw=b'{"model": "smollm2", "prompt": ')
    assert status == 400
    assert "not valid JSON" in body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"


def test_unknown_model_is_a_404(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        openai_client.completions.create(model="no-such-model", prompt="hi", max_tokens=1)
    assert "no-such-model" in str(info.value)
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_context_overflow_names_both_numbers(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.completions.create(model=MODEL_NAME, prompt="Hello there", max_tokens=100_000)
    message = str(info.value)
    assert "8192" in message  # the context
    assert "100000" in message  # the completion asked for
    assert info.value.body["param"] == "max_tokens"  # type: ignore[index]


@pytest.mark.parametrize(
    ("param", "value"),
    [("temperature", 5.0), ("top_p", 0.0), ("n", 0), ("max_tokens", -1), ("logprobs", 50), ("stop", 7)],
)
def test_bad_parameter_values_name_the_parameter(
    openai_client: openai.OpenAI, param: str, value: Any
) -> None:
    body = {"model": MODEL_NAME, "prompt": "hi", "max_tokens": 2, param: value}
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.post("/completions", body=body, cast_to=dict)
    assert info.value.body["param"] == param  # type: ignore[index]
    assert param in str(info.value)
