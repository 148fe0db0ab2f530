"""CPU model server: throughput and time to first token at 1, 4 and 8 concurrent requests, against a baseline.

Baseline (measured in this run): the same SmolLM2-135M-Instruct answering the same requests one at a
time with plain transformers `generate()`, in this process. `tessera-runtime serve` (continuous
batching) runs in a child process with the same torch thread count and answers them 1, 4 and 8 at a
time over HTTP (streamed completions, so the first token's arrival is seen). Rounds alternate the two
sides so that other load on the machine hits both alike. Every request asks for the same number of
tokens (`ignore_eos`), greedy, so both sides do identical work.

    .venv/bin/python benchmarks/runtime.py                # a few minutes on 2 shared cores
    .venv/bin/python benchmarks/runtime.py --tokens 12    # quicker

Targets: throughput at 8 concurrent >= 3x the baseline's; TTFT at concurrency 1 <= 2x the baseline's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from tessera_runtime.engines.loader import default_gguf_cache, load_model, smollm2_path

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a refrigerator works.",
    "List some good habits for learning a language.",
    "Describe the city of Paris to a visitor.",
    "What makes a good cup of coffee?",
    "Tell me about the history of the bicycle.",
    "How do plants turn sunlight into food?",
    "Give advice for a first job interview.",
]
LEVELS = (1, 4, 8)


@dataclass
class Point:
    """One measurement: tokens per second and mean time to first token at a concurrency level."""

    concurrency: int
    tokens_per_s: float
    ttft_s: float


def _json_point(point: Point) -> dict[str, float]:
    return {
        "concurrency": point.concurrency,
        "tokensPerSecond": point.tokens_per_s,
        "ttftSeconds": point.ttft_s,
    }


def _load_baseline(threads: int) -> tuple[Any, Any]:
    """The model for plain generate(), in this process, with the server's thread count."""
    import torch

    loaded = load_model(smollm2_path(), threads=threads, gguf_cache=default_gguf_cache())
    with torch.inference_mode():
        inputs = loaded.tokenizer("warm up", return_tensors="pt")
        loaded.model.generate(
            **inputs, max_new_tokens=2, do_sample=False, pad_token_id=loaded.tokenizer.pad_token_id
        )
    return loaded.model, loaded.tokenizer


def _baseline_round(model: Any, tokenizer: Any, tokens: int) -> tuple[list[float], list[float]]:
    """Every prompt once, one at a time: (times to first token, full latencies)."""
    import torch

    fixed = {"do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    ttfts, latencies = [], []
    with torch.inference_mode():
        for prompt in PROMPTS:
            inputs = tokenizer(prompt, return_tensors="pt")
            started = time.perf_counter()
            model.generate(**inputs, max_new_tokens=1, min_new_tokens=1, **fixed)
            ttfts.append(time.perf_counter() - started)
            started = time.perf_counter()
            out = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, **fixed)
            latencies.append(time.perf_counter() - started)
            assert out.shape[1] - inputs["input_ids"].shape[1] == tokens
    return ttfts, latencies


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(threads: int, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-c", "from tessera_runtime.cli import main; main()", "serve",
        "--model", str(smollm2_path()), "--served-model-name", "smollm2", "--host", "127.0.0.1",
        "--port", str(port), "--threads", str(threads), "--max-batch-size", "8", "--log-level", "WARNING",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("the server did not become ready")


async def _one(session: aiohttp.ClientSession, url: str, prompt: str, tokens: int) -> float:
    """Stream one completion; returns the time to its first token."""
    body = {
        "model": "smollm2", "prompt": prompt, "max_tokens": tokens, "temperature": 0, "ignore_eos": True,
        "stream": True,
    }  # fmt: skip
    started = time.perf_counter()
    first: float | None = None
    async with session.post(url + "/v1/completions", json=body) as response:
        assert response.status == 200, await response.text()
        async for raw in response.content:
            line = raw.decode().strip()
            if first is None and line.startswith("data: {"):
                first = time.perf_counter() - started
    assert first is not None
    return first


async def _server_round(url: str, concurrency: int, tokens: int) -> tuple[list[float], float, int]:
    """Waves of `concurrency` simultaneous requests (three at concurrency 1): (TTFTs, seconds, tokens)."""
    waves = 3 if concurrency == 1 else 1
    ttfts: list[float] = []
    elapsed = 0.0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as session:
        await _one(session, url, "warm up", 2)
        for wave in range(waves):
            prompts = [PROMPTS[(wave * concurrency + i) % len(PROMPTS)] for i in range(concurrency)]
            started = time.perf_counter()
            ttfts += await asyncio.gather(*(_one(session, url, p, tokens) for p in prompts))
            elapsed += time.perf_counter() - started
    return ttfts, elapsed, waves * concurrency * tokens


def _plot(path: Path, baseline: dict[int, Point], server: dict[int, Point]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    xs = list(range(len(LEVELS)))
    width = 0.38
    for axis, key, label in ((left, "tokens_per_s", "output tokens / s"), (right, "ttft_s", "mean TTFT (s)")):
        axis.bar([x - width / 2 for x in xs], [getattr(baseline[c], key) for c in LEVELS], width,
                 label="generate(), one at a time")  # fmt: skip
        axis.bar([x + width / 2 for x in xs], [getattr(server[c], key) for c in LEVELS], width,
                 label="tessera-runtime serve")  # fmt: skip
        axis.set_xticks(xs, [f"{c} concurrent" for c in LEVELS])
        axis.set_ylabel(label)
    left.set_title("Throughput")
    right.set_title("Time to first token")
    left.legend()
    fig.suptitle("SmolLM2-135M on CPU: continuous batching vs sequential generate()")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # One thread by default: on a small shared machine a second OpenMP thread mostly spins waiting for a
    # core, which makes every figure (both sides') several times slower and noisy.
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--tokens", type=int, default=24, help="tokens generated per request")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each measuring both sides")
    parser.add_argument("--json", type=Path, default=Path("out/runtime.json"))
    parser.add_argument("--plot", type=Path, default=Path("out/runtime.png"))
    args = parser.parse_args()
    console = Console()

    port = _free_port()
    console.print(
        f"starting tessera-runtime serve on 127.0.0.1:{port} and loading the baseline ({args.threads} threads)"
    )
    process = _start_server(args.threads, port)
    url = f"http://127.0.0.1:{port}"
    base_ttfts: list[float] = []
    base_latencies: list[float] = []
    server_ttfts: dict[int, list[float]] = {c: [] for c in LEVELS}
    server_time = dict.fromkeys(LEVELS, 0.0)
    server_tokens = dict.fromkeys(LEVELS, 0)
    try:
        model, tokenizer = _load_baseline(args.threads)
        # Rounds alternate the two sides, so that load from other processes on the machine hits both alike.
        for round_index in range(args.rounds):
            console.print(f"round {round_index + 1}/{args.rounds}: generate() one at a time")
            ttfts, latencies = _baseline_round(model, tokenizer, args.tokens)
            base_ttfts += ttfts
            base_latencies += latencies
            for c in LEVELS:
                console.print(f"round {round_index + 1}/{args.rounds}: server, {c} concurrent")
                ttfts, seconds, produced = asyncio.run(_server_round(url, c, args.tokens))
                server_ttfts[c] += ttfts
                server_time[c] += seconds
                server_tokens[c] += produced
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)

    base_tps = len(base_latencies) * args.tokens / sum(base_latencies)
    baseline: dict[int, Point] = {}
    for c in LEVELS:
        # Answered one at a time, request k of a wave of c waits for the ones before it in its wave.
        per_round = [
            base_latencies[r : r + len(PROMPTS)] for r in range(0, len(base_latencies), len(PROMPTS))
        ]
        waits = [sum(lat[k - k % c : k]) for lat in per_round for k in range(len(lat))]
        baseline[c] = Point(c, base_tps, statistics.mean(base_ttfts) + statistics.mean(waits))
    server = {
        c: Point(c, server_tokens[c] / server_time[c], statistics.mean(server_ttfts[c])) for c in LEVELS
    }

    table = Table(title=f"SmolLM2-135M, {args.tokens} tokens per request, {args.threads} torch threads")
    for column in ("concurrent", "base tok/s", "tok/s", "ratio", "base TTFT s", "TTFT s", "TTFT ratio"):
        table.add_column(column, justify="right")
    for c in LEVELS:
        b, s = baseline[c], server[c]
        table.add_row(
            str(c), f"{b.tokens_per_s:.1f}", f"{s.tokens_per_s:.1f}", f"{s.tokens_per_s / b.tokens_per_s:.2f}x",
            f"{b.ttft_s:.3f}", f"{s.ttft_s:.3f}", f"{s.ttft_s / b.ttft_s:.2f}x",
        )  # fmt: skip
    console.print(table)
    throughput_ratio = server[8].tokens_per_s / baseline[8].tokens_per_s
    ttft_ratio = server[1].ttft_s / baseline[1].ttft_s
    console.print(
        f"throughput at 8 concurrent: {throughput_ratio:.2f}x baseline (target >= 3x: "
        f"{'met' if throughput_ratio >= 3 else 'NOT met'}); TTFT at 1: {ttft_ratio:.2f}x baseline "
        f"(target <= 2x: {'met' if ttft_ratio <= 2 else 'NOT met'})"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "threads": args.threads,
                "tokensPerRequest": args.tokens,
                "baseline": [_json_point(baseline[c]) for c in LEVELS],
                "server": [_json_point(server[c]) for c in LEVELS],
                "throughputRatioAt8": throughput_ratio,
                "ttftRatioAt1": ttft_ratio,
            },
            indent=2,
        )
    )
    _plot(args.plot, baseline, server)
    console.print(f"wrote {args.json} and {args.plot}")


if __name__ == "__main__":
    main()
