"""Per-sequence sampling (temperature, top-p, seeded random streams) and log-probabilities."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .types import TokenLogprob


@dataclass
class RowSampler:
    """The sampling state of one sequence: its parameters and its own random generator.

    Each sequence owns a generator so that a seeded request gives the same output whatever else
    shares the batch.
    """

    temperature: float
    top_p: float
    generator: torch.Generator
    top_logprobs: int | None

    @classmethod
    def create(
        cls, temperature: float, top_p: float, seed: int | None, top_logprobs: int | None
    ) -> RowSampler:
        """A sampler seeded with `seed`, or with fresh randomness when no seed is given."""
        generator = torch.Generator()
        generator.manual_seed(seed if seed is not None else secrets.randbits(63))
        return cls(temperature, top_p, generator, top_logprobs)


def _top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail of `probs` (1-D) outside the smallest set whose mass reaches `top_p`."""
    sorted_probs, order = torch.sort(probs, descending=True)
    cumulative = torch.cumsum(sorted_probs, dim=-1)
    # Keep a token if the mass before it is still below top_p (so the first token always stays).
    keep_sorted = (cumulative - sorted_probs) < top_p
    keep = torch.zeros_like(keep_sorted)
    keep[order] = keep_sorted
    return torch.where(keep, probs, torch.zeros_like(probs))


def sample_next(
    logits: torch.Tensor, samplers: Sequence[RowSampler]
) -> tuple[list[int], torch.Tensor | None]:
    """Choose one token per row of `logits` (rows x vocab); also the rows' log-softmax when a row wants it.

    Log-probabilities are those of the model's distribution (before temperature and top-p), which is
    what evaluation needs and what OpenAI-compatible servers report.
    """
    logits = logits.float()
    wanted = any(sampler.top_logprobs is not None for sampler in samplers)
    logprobs = torch.log_softmax(logits, dim=-1) if wanted else None
    chosen: list[int] = []
    for row, sampler in enumerate(samplers):
        if sampler.temperature <= 0.0:
            chosen.append(int(torch.argmax(logits[row]).item()))
            continue
        probs = torch.softmax(logits[row] / sampler.temperature, dim=-1)
        if sampler.top_p < 1.0:
            probs = _top_p_filter(probs, sampler.top_p)
        token = torch.multinomial(probs, 1, generator=sampler.generator)
        chosen.append(int(token.item()))
    return chosen, logprobs


def token_logprob(
    tokenizer: Any, logprobs_row: torch.Tensor, token_id: int, top: int | None, decode_cache: dict[int, str]
) -> TokenLogprob:
    """The log-probability of `token_id` in a log-softmax row, with the `top` most likely alternatives."""
    alternatives: tuple[tuple[str, float], ...] = ()
    if top:
        values, indices = torch.topk(logprobs_row, top)
        alternatives = tuple(
            (token_text(tokenizer, int(i), decode_cache), float(v))
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        )
    return TokenLogprob(
        token_id=token_id,
        text=token_text(tokenizer, token_id, decode_cache),
        logprob=float(logprobs_row[token_id].item()),
        top=alternatives,
    )


def token_text(tokenizer: Any, token_id: int, cache: dict[int, str]) -> str:
    """The text of one token as the tokenizer decodes it alone (memoised; tokens repeat a lot)."""
    text = cache.get(token_id)
    if text is None:
        text = str(tokenizer.decode([token_id]))
        if len(cache) < 100_000:
            cache[token_id] = text
    return text


def prompt_logprobs(
    tokenizer: Any, logits: torch.Tensor, prompt_ids: Sequence[int], top: int, decode_cache: dict[int, str]
) -> tuple[TokenLogprob, ...]:
    """Log-probabilities of each prompt token given the ones before it; the first token has none.

    `logits` holds the model's output for every prompt position (prompt_len x vocab).
    """
    first = TokenLogprob(prompt_ids[0], token_text(tokenizer, prompt_ids[0], decode_cache), None)
    if len(prompt_ids) == 1:
        return (first,)
    rows = torch.log_softmax(logits[: len(prompt_ids) - 1].float(), dim=-1)
    out = [first]
    for position, token_id in enumerate(prompt_ids[1:]):
        out.append(token_logprob(tokenizer, rows[position], token_id, top, decode_cache))
    return tuple(out)
