"""Reading traces in the Azure CSV format, rate scaling, synthetic traces, profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tessera_operator.simulator.profile import (
    DEFAULT_PROFILE,
    LLAMA_3_1_8B_H100_KV_CACHE_TOKENS,
    PROFILES,
    load_profile,
)
from tessera_operator.simulator.trace import (
    attribution_for,
    format_trace,
    load_trace,
    parse_trace,
    read_trace,
    scale_rate,
    synthetic_trace,
    time_reversed,
    with_warmup,
)

# Made-up rows in the Azure trace's exact format (seven fractional digits), deliberately out of order.
ROWS = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:49.0000001,0,0
2023-11-16 18:16:46.1234567,1200,7
"""


def test_parses_the_azure_format_with_seven_fractional_digits() -> None:
    trace = parse_trace(ROWS.splitlines(), name="rows")
    assert len(trace) == 4
    assert trace.arrivals[0] == 0.0
    assert trace.arrivals[1] == pytest.approx(49.0000001 - 46.68059, abs=1e-6)  # sorted by time
    assert trace.arrivals[-1] == pytest.approx(60 + 46.1234567 - 46.68059, abs=1e-6)
    assert trace.prompt_tokens == (374, 1, 396, 1200)  # an empty prompt still costs a token
    assert trace.generated_tokens == (44, 1, 109, 7)  # every request produces a token
    assert trace.duration_seconds == pytest.approx(59.4428667, abs=1e-6)


@pytest.mark.parametrize(
    "text, message",
    [
        ("time,prompt,output\n2023-11-16 18:15:46.6805900,1,1\n", "expected the header"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,1\n", "expected 3 columns"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n", ":2:"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6,-4,1\n", "negative"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "no requests"),
    ],
)
def test_refuses_malformed_traces_with_a_line_number(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_trace(text.splitlines(), name="bad.csv")


def test_format_and_read_round_trip(tmp_path: Path) -> None:
    trace = parse_trace(ROWS.splitlines())
    path = tmp_path / "trace.csv"
    path.write_text(format_trace(trace), encoding="utf-8")
    again = read_trace(path)
    assert again.prompt_tokens == trace.prompt_tokens
    assert again.generated_tokens == trace.generated_tokens
    assert again.arrivals == pytest.approx(trace.arrivals, abs=1e-6)
    assert path.read_text().splitlines()[1].split(",")[0].split(".")[1].__len__() == 7


def test_rate_scale_makes_k_jittered_copies_and_keeps_the_duration() -> None:
    trace = synthetic_trace("bursty-chat", seed=3, duration_seconds=300)
    scaled = scale_rate(trace, 16, seed=5)
    assert len(scaled) == 16 * len(trace)
    assert list(scaled.arrivals) == sorted(scaled.arrivals)
    assert scaled.duration_seconds == pytest.approx(trace.duration_seconds, abs=2.0)
    # Every copy keeps its request's lengths and lands within one second of the original arrival.
    originals = sorted(zip(trace.arrivals, trace.prompt_tokens, trace.generated_tokens, strict=True))
    copies = sorted(zip(scaled.arrivals, scaled.prompt_tokens, scaled.generated_tokens, strict=True))
    assert sorted(p for _, p, _ in copies) == sorted(p for _, p, _ in originals for _ in range(16))
    first = originals[0][0]
    assert min(a for a, _, _ in copies) >= max(0.0, first - 1.0)


def test_rate_scale_is_deterministic_with_its_seed() -> None:
    trace = synthetic_trace("bursty-code", seed=2, duration_seconds=120)
    assert scale_rate(trace, 4, seed=9) == scale_rate(trace, 4, seed=9)
    assert scale_rate(trace, 4, seed=9).arrivals != scale_rate(trace, 4, seed=10).arrivals
    assert scale_rate(trace, 1) is trace
    with pytest.raises(ValueError):
        scale_rate(trace, 0)


def test_synthetic_traces_are_deterministic_and_named() -> None:
    assert synthetic_trace("bursty-chat", seed=4, duration_seconds=200) == synthetic_trace(
        "bursty-chat", seed=4, duration_seconds=200
    )
    trace = load_trace("synthetic:bursty-code:7")
    assert trace.name == "synthetic-bursty-code-7"
    code_mean_output = sum(trace.generated_tokens) / len(trace)
    chat = load_trace("synthetic:bursty-chat:7")
    assert code_mean_output < sum(chat.generated_tokens) / len(chat)
    with pytest.raises(ValueError, match="unknown synthetic shape"):
        load_trace("synthetic:nope")


def test_the_extra_check_shapes_differ_as_named() -> None:
    def minute_counts(name: str) -> list[int]:
        trace = synthetic_trace(name, seed=3, duration_seconds=1800)
        counts = [0] * 30
        for arrival in trace.arrivals:
            counts[int(arrival // 60)] += 1
        return counts

    def spread(counts: list[int]) -> float:
        return (max(counts) - min(counts)) / (sum(counts) / len(counts))

    flat, spiky, diurnal = minute_counts("flat"), minute_counts("spiky"), minute_counts("diurnal")
    assert spread(flat) < spread(spiky) and spread(flat) < spread(diurnal)


def test_time_reversal_plays_the_trace_backwards() -> None:
    trace = parse_trace(ROWS.splitlines(), name="rows")
    backwards = time_reversed(trace)
    assert backwards.arrivals[0] == 0.0 and list(backwards.arrivals) == sorted(backwards.arrivals)
    assert backwards.duration_seconds == pytest.approx(trace.duration_seconds)
    assert backwards.prompt_tokens == tuple(reversed(trace.prompt_tokens))
    assert time_reversed(backwards).arrivals == pytest.approx(trace.arrivals)
    assert "reversed" in backwards.name


def test_the_azure_trace_keeps_its_attribution() -> None:
    assert "Splitwise" in attribution_for("../shared/traces/azure-llm-2023-conv.csv")
    assert "CC-BY 4.0" in attribution_for("azure-llm-2023-code.csv")
    assert attribution_for("synthetic:bursty-chat") == ""


def test_profiles_are_data(tmp_path: Path) -> None:
    default = PROFILES[DEFAULT_PROFILE]
    assert default.kv_cache_tokens == LLAMA_3_1_8B_H100_KV_CACHE_TOKENS
    # the planner's figure for 51.38 GiB of KV at 128 KiB per token, within 1%
    assert abs(LLAMA_3_1_8B_H100_KV_CACHE_TOKENS - 51.38 * 2**30 / 2**17) / (51.38 * 2**30 / 2**17) < 0.01
    assert (default.step_overhead_seconds, default.cold_start_seconds) == (0.0065, 90.0)
    custom = tmp_path / "profile.json"
    custom.write_text(json.dumps({**default.to_dict(), "name": "slow", "coldStartSeconds": 300}))
    assert load_profile(str(custom)).cold_start_seconds == 300
    yaml_file = tmp_path / "profile.yaml"
    yaml_file.write_text("name: tiny\nkvCacheTokens: 1000\n")
    assert load_profile(str(yaml_file)).kv_cache_tokens == 1000
    yaml_file.write_text("name: tiny\nwarpDrive: 9\n")
    with pytest.raises(ValueError, match="warpDrive"):
        load_profile(str(yaml_file))
    with pytest.raises(ValueError, match="no profile named"):
        load_profile("no-such-profile")


def test_warmup_mirrors_the_start_so_the_load_is_continuous_at_the_join() -> None:
    trace = synthetic_trace("bursty-chat", seed=8, duration_seconds=900)
    warmed = with_warmup(trace, 300)
    early = sum(1 for arrival in trace.arrivals if arrival < 300)
    assert warmed.warmup_requests == early and warmed.warmup_seconds == 300
    assert len(warmed) == len(trace)  # the warm-up is not part of the trace proper
    assert warmed.arrivals[warmed.warmup_requests :] == tuple(arrival + 300 for arrival in trace.arrivals)
    # Mirrored: the warm-up's last seconds repeat the trace's first seconds, in reverse.
    assert sorted(300 - arrival for arrival in warmed.arrivals[:early]) == pytest.approx(sorted(trace.arrivals[:early]))
    assert with_warmup(warmed, 300) is warmed
