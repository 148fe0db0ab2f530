"""Request traces: the Azure LLM inference trace format, rate scaling, and synthetic bursty traces.

The format is a CSV with a header `TIMESTAMP,ContextTokens,GeneratedTokens`, one request a row, timestamps
like `2023-11-16 18:15:46.6805900` (seven fractional digits), in arrival order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")

#: The Azure LLM inference traces are CC-BY 4.0: wherever they are used or published, this goes with them.
AZURE_TRACE_ATTRIBUTION = (
    "Trace: Azure LLM inference trace 2023, Azure Public Dataset (CC-BY 4.0). Pratyush Patel, Esha Choukse, "
    "Chaojie Zhang, Aashaka Shah, Inigo Goiri, Saeed Maleki, Ricardo Bianchini. \"Splitwise: Efficient "
    "generative LLM inference using phase splitting\", ISCA 2024."
)


def attribution_for(source: str) -> str:
    """The attribution a trace's license asks for ("" for synthetic traces and unknown files)."""
    return AZURE_TRACE_ATTRIBUTION if "azure" in Path(source).name.lower() else ""


@dataclass(frozen=True, slots=True)
class Trace:
    """Requests in arrival order: seconds since the first request, prompt tokens, generated tokens."""

    arrivals: tuple[float, ...]
    prompt_tokens: tuple[int, ...]
    generated_tokens: tuple[int, ...]
    name: str = "trace"
    #: The first `warmup_requests` requests, arriving before `warmup_seconds`, only warm the fleet up:
    #: figures count neither them nor the GPU-hours before `warmup_seconds` (see `with_warmup`).
    warmup_requests: int = 0
    warmup_seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.arrivals) - self.warmup_requests

    @property
    def duration_seconds(self) -> float:
        """Time from the first arrival of the trace proper to the last."""
        if len(self.arrivals) <= self.warmup_requests:
            return 0.0
        return self.arrivals[-1] - self.arrivals[self.warmup_requests]


def _timestamp_seconds(text: str) -> float:
    # fromisoformat takes at most six fractional digits on some versions, so the fraction is read apart.
    whole, _, fraction = text.strip().partition(".")
    moment = datetime.fromisoformat(whole).replace(tzinfo=UTC)
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


def parse_trace(lines: Iterable[str], name: str = "trace") -> Trace:
    """Parse the Azure CSV format; rows are sorted by arrival, times made relative to the first."""
    rows = iter(lines)
    header = next(rows, "")
    columns = tuple(part.strip() for part in header.strip().split(","))
    if columns != HEADER:
        raise ValueError(f"{name}: expected the header {','.join(HEADER)}, found {header.strip()!r}")
    parsed: list[tuple[float, int, int]] = []
    for number, line in enumerate(rows, start=2):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != 3:
            raise ValueError(f"{name}:{number}: expected 3 columns, found {len(parts)}")
        try:
            row = (_timestamp_seconds(parts[0]), int(parts[1]), int(parts[2]))
        except ValueError as error:
            raise ValueError(f"{name}:{number}: {error}") from error
        if row[1] < 0 or row[2] < 0:
            raise ValueError(f"{name}:{number}: token counts cannot be negative")
        parsed.append(row)
    if not parsed:
        raise ValueError(f"{name}: the trace holds no requests")
    parsed.sort(key=lambda row: row[0])
    start = parsed[0][0]
    return Trace(
        arrivals=tuple(row[0] - start for row in parsed),
        # An empty prompt still costs a token to start, and every request produces at least one token.
        prompt_tokens=tuple(max(1, row[1]) for row in parsed),
        generated_tokens=tuple(max(1, row[2]) for row in parsed),
        name=name,
    )


def read_trace(path: str | Path) -> Trace:
    """Read a trace file in the Azure CSV format."""
    file = Path(path)
    with file.open(encoding="utf-8") as handle:
        return parse_trace(handle, name=file.name)


def format_trace(trace: Trace, start: datetime | None = None) -> str:
    """Write a trace back in the Azure CSV format (seven fractional digits)."""
    origin = (start or datetime(2024, 1, 1, tzinfo=UTC)).timestamp()
    lines = [",".join(HEADER)]
    for arrival, prompt, generated in zip(
        trace.arrivals, trace.prompt_tokens, trace.generated_tokens, strict=True
    ):
        moment = origin + arrival
        whole = math.floor(moment)
        stamp = datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{stamp}.{round((moment - whole) * 1e7):07d},{prompt},{generated}")
    return "\n".join(lines) + "\n"


def scale_rate(trace: Trace, factor: int, seed: int = 0, jitter_seconds: float = 1.0) -> Trace:
    """Each request becomes `factor` requests whose arrivals are jittered by up to +-`jitter_seconds`.

    This multiplies the load while keeping the trace's duration and the shape of its bursts
    (overlaying time-shifted copies instead would smooth the bursts away).
    """
    if factor < 1:
        raise ValueError("the rate scale is a whole number of at least 1")
    if factor == 1:
        return trace
    rng = random.Random(seed)
    rows: list[tuple[float, int, int]] = []
    for arrival, prompt, generated in zip(
        trace.arrivals, trace.prompt_tokens, trace.generated_tokens, strict=True
    ):
        for _ in range(factor):
            jittered = max(0.0, arrival + rng.uniform(-jitter_seconds, jitter_seconds))
            rows.append((jittered, prompt, generated))
    rows.sort(key=lambda row: row[0])
    return Trace(
        arrivals=tuple(row[0] for row in rows),
        prompt_tokens=tuple(row[1] for row in rows),
        generated_tokens=tuple(row[2] for row in rows),
        name=f"{trace.name} x{factor}",
    )


@dataclass(frozen=True, slots=True)
class SyntheticShape:
    """How a synthetic trace varies: its load swing, its bursts and its request lengths."""

    base_rate: float = 4.0
    swing: float = 0.4
    bursts_per_hour: float = 6.0
    burst_height: tuple[float, float] = (1.3, 2.0)
    burst_seconds: tuple[float, float] = (60.0, 300.0)
    #: Log-normal (mu, sigma) of prompt and output tokens.
    prompt_lognormal: tuple[float, float] = (6.8, 0.8)
    output_lognormal: tuple[float, float] = (4.9, 0.9)
    idle_gaps: int = 0


SHAPES: dict[str, SyntheticShape] = {
    # Chat-like: ~1,000-token prompts, ~130-token answers, a slow swing and bursts of up to 2x.
    "bursty-chat": SyntheticShape(),
    # Code-completion-like: long prompts, short outputs, sharper bursts.
    "bursty-code": SyntheticShape(
        base_rate=6.0,
        swing=0.3,
        bursts_per_hour=10.0,
        burst_height=(1.4, 2.5),
        burst_seconds=(30.0, 180.0),
        prompt_lognormal=(7.4, 0.7),
        output_lognormal=(3.3, 0.8),
    ),
    # A day's swing squeezed into the hour: the load doubles and halves, with a few mild bursts.
    "diurnal": SyntheticShape(
        base_rate=4.0,
        swing=0.6,
        bursts_per_hour=4.0,
        burst_height=(1.2, 1.5),
        burst_seconds=(60.0, 240.0),
    ),
    # Level load: only Poisson noise (one burst of at most 5%), where any change of replicas is waste.
    "flat": SyntheticShape(
        base_rate=5.0,
        swing=0.03,
        bursts_per_hour=1.0,
        burst_height=(1.0, 1.05),
        burst_seconds=(30.0, 60.0),
    ),
    # Short, sharp spikes (2-3x for 15-60 s) over a mild swing: shorter than a cold start.
    "spiky": SyntheticShape(
        base_rate=3.5,
        swing=0.2,
        bursts_per_hour=20.0,
        burst_height=(2.0, 3.0),
        burst_seconds=(15.0, 60.0),
    ),
}


def time_reversed(trace: Trace) -> Trace:
    """The trace played backwards (the last request first): same load levels and bursts, but every
    ramp up becomes a ramp down and the reverse, for checking a policy away from one trace's shape."""
    end = trace.arrivals[-1] if trace.arrivals else 0.0
    order = range(len(trace.arrivals) - 1, -1, -1)
    return Trace(
        arrivals=tuple(end - trace.arrivals[index] for index in order),
        prompt_tokens=tuple(trace.prompt_tokens[index] for index in order),
        generated_tokens=tuple(trace.generated_tokens[index] for index in order),
        name=f"{trace.name} reversed",
    )


def with_warmup(trace: Trace, seconds: float) -> Trace:
    """The trace preceded by a warm-up: its first `seconds` mirrored in time, so the load at the join
    is continuous, the fleet and the policies' windows are in a steady state when the trace proper
    starts, and no policy is judged on a cold, empty system. The trace proper starts at `seconds`."""
    span = min(seconds, trace.duration_seconds)
    if span <= 0 or trace.warmup_requests:
        return trace
    rows = [
        (span - arrival, prompt, generated)
        for arrival, prompt, generated in zip(
            trace.arrivals, trace.prompt_tokens, trace.generated_tokens, strict=True
        )
        if arrival < span
    ]
    rows.sort(key=lambda row: row[0])
    rows.extend(
        (arrival + span, prompt, generated)
        for arrival, prompt, generated in zip(
            trace.arrivals, trace.prompt_tokens, trace.generated_tokens, strict=True
        )
    )
    return Trace(
        arrivals=tuple(row[0] for row in rows),
        prompt_tokens=tuple(row[1] for row in rows),
        generated_tokens=tuple(row[2] for row in rows),
        name=trace.name,
        warmup_requests=len(rows) - len(trace),
        warmup_seconds=span,
    )


def synthetic_trace(
    shape: SyntheticShape | str = "bursty-chat",
    seed: int = 1,
    duration_seconds: float = 3600.0,
) -> Trace:
    """A made-up trace for checking policies away from any one real trace: Poisson arrivals whose rate
    follows a slow swing with random bursts (and optionally idle gaps), log-normal lengths."""
    if isinstance(shape, str):
        name = f"synthetic-{shape}-{seed}"
        shape = SHAPES[shape]
    else:
        name = f"synthetic-{seed}"
    rng = random.Random(seed)
    count = max(1, round(shape.bursts_per_hour * duration_seconds / 3600))
    bursts = [
        (rng.uniform(0, duration_seconds), rng.uniform(*shape.burst_seconds), rng.uniform(*shape.burst_height))
        for _ in range(count)
    ]
    gaps = [
        (rng.uniform(0, max(0.0, duration_seconds - 900)), rng.uniform(600, 900)) for _ in range(shape.idle_gaps)
    ]
    phase = rng.uniform(0, 2 * math.pi)
    period = duration_seconds * rng.uniform(0.8, 1.5)

    def rate(moment: float) -> float:
        if any(start <= moment < start + length for start, length in gaps):
            return 0.0
        swing = 1.0 + shape.swing * math.sin(2 * math.pi * moment / period + phase)
        boost = max((height for start, length, height in bursts if start <= moment < start + length), default=1.0)
        return shape.base_rate * swing * boost

    peak = shape.base_rate * (1 + shape.swing) * shape.burst_height[1]
    arrivals: list[float] = []
    moment = 0.0
    while True:  # thinning: draw at the peak rate, keep each draw with probability rate / peak
        moment += rng.expovariate(peak)
        if moment >= duration_seconds:
            break
        if rng.random() * peak < rate(moment):
            arrivals.append(moment)
    prompts = tuple(min(16000, max(1, int(rng.lognormvariate(*shape.prompt_lognormal)))) for _ in arrivals)
    outputs = tuple(min(2000, max(1, int(rng.lognormvariate(*shape.output_lognormal)))) for _ in arrivals)
    return Trace(arrivals=tuple(arrivals), prompt_tokens=prompts, generated_tokens=outputs, name=name)


def load_trace(spec: str) -> Trace:
    """A trace file in the Azure format, or `synthetic:SHAPE[:SEED]` (shapes: see `SHAPES`)."""
    if spec.startswith("synthetic:"):
        _, shape, *rest = spec.split(":")
        if shape not in SHAPES:
            raise ValueError(f"unknown synthetic shape {shape!r}; known: {', '.join(sorted(SHAPES))}")
        return synthetic_trace(shape, seed=int(rest[0]) if rest else 1)
    return read_trace(spec)
