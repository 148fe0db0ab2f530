"""A running batch's key/value cache: left-padded rows that can be merged in and dropped between steps.

Every row is one sequence. The cache holds, per layer, keys and values shaped
(rows, kv_heads, length, head_dim), left-padded so that all rows end at the same column; an attention
mask marks the real columns. Rotary position embeddings are applied before keys are cached, so a row's
keys do not care where its padding is: each row only needs its own next position.

New sequences are prefilled on their own (right-padded, so no real token ever attends to padding)
and merged in; finished ones are dropped and all-padding columns on the left are trimmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

LayerKV = tuple[torch.Tensor, torch.Tensor]


def cache_layers(cache: Any) -> list[LayerKV]:
    """The (keys, values) tensors of each layer of a transformers cache object (any recent version)."""
    if hasattr(cache, "layers"):  # transformers >= 4.56: a list of per-layer objects
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):  # transformers 4.4x-4.55
        return list(zip(cache.key_cache, cache.value_cache, strict=True))
    return [(k, v) for k, v in cache]  # legacy tuple of tuples


def build_cache(layers: Sequence[LayerKV]) -> Any:
    """A transformers DynamicCache holding `layers` (the model appends to it during the next forward)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for index, (keys, values) in enumerate(layers):
        cache.update(keys, values, index)
    return cache


class KVBatch:
    """The decode batch: per-layer KV tensors, the attention mask and each row's next position."""

    def __init__(self) -> None:
        self.layers: list[LayerKV] = []
        self.mask = torch.zeros((0, 0), dtype=torch.long)
        self.positions: list[int] = []
        self.cache: Any = None  # the live transformers cache, rebuilt only when rows change

    def clear(self) -> None:
        """Drop every row."""
        self.layers = []
        self.mask = torch.zeros((0, 0), dtype=torch.long)
        self.positions = []
        self.cache = None

    @property
    def rows(self) -> int:
        """Number of sequences in the batch."""
        return len(self.positions)

    @property
    def length(self) -> int:
        """Columns in the cache (the longest row, padding included)."""
        return int(self.mask.shape[1])

    def allocated_tokens(self) -> int:
        """Cache slots in use, padding included (what the memory actually holds)."""
        return self.rows * self.length

    def _sync_from_cache(self) -> None:
        if self.cache is not None:
            self.layers = cache_layers(self.cache)

    def add(self, layers: Sequence[LayerKV], lengths: Sequence[int]) -> None:
        """Merge new rows whose caches are right-padded to a common length; `lengths` are their real lengths."""
        self._sync_from_cache()
        width = max([self.length, *lengths])
        new_masks: list[torch.Tensor] = []
        new_rows: list[list[LayerKV]] = [[] for _ in layers]
        for row, real in enumerate(lengths):
            pad = width - real
            mask = torch.cat([torch.zeros(pad, dtype=torch.long), torch.ones(real, dtype=torch.long)])
            new_masks.append(mask)
            for index, (keys, values) in enumerate(layers):
                new_rows[index].append(
                    (
                        _left_pad(keys[row : row + 1, :, :real], pad),
                        _left_pad(values[row : row + 1, :, :real], pad),
                    )
                )
        merged: list[LayerKV] = []
        for index, pieces in enumerate(new_rows):
            keys = torch.cat([k for k, _ in pieces], dim=0)
            values = torch.cat([v for _, v in pieces], dim=0)
            if self.rows:
                old_keys, old_values = self.layers[index]
                pad = width - self.length
                keys = torch.cat([_left_pad(old_keys, pad), keys], dim=0)
                values = torch.cat([_left_pad(old_values, pad), values], dim=0)
            merged.append((keys, values))
        old_mask = torch.nn.functional.pad(self.mask, (width - self.length, 0)) if self.rows else None
        stacked = torch.stack(new_masks)
        self.mask = stacked if old_mask is None else torch.cat([old_mask, stacked])
        self.positions.extend(lengths)
        self.layers = merged
        self.cache = build_cache(merged)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only `rows` (in that order), then trim columns that are padding in every remaining row."""
        if len(rows) == self.rows and list(rows) == list(range(self.rows)):
            return
        if not rows:
            self.clear()
            return
        self._sync_from_cache()
        index = torch.tensor(list(rows), dtype=torch.long)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        start = int(used[0].item()) if used.numel() else mask.shape[1]
        self.mask = mask[:, start:]
        self.layers = [
            (
                k.index_select(0, index)[:, :, start:].contiguous(),
                v.index_select(0, index)[:, :, start:].contiguous(),
            )
            for k, v in self.layers
        ]
        self.positions = [self.positions[r] for r in rows]
        self.cache = build_cache(self.layers)

    def decode_inputs(self, last_tokens: Sequence[int]) -> dict[str, Any]:
        """Model inputs for one decode step: each row's last token at its own position."""
        self.mask = torch.cat([self.mask, torch.ones((self.rows, 1), dtype=torch.long)], dim=1)
        return {
            "input_ids": torch.tensor(list(last_tokens), dtype=torch.long).unsqueeze(1),
            "attention_mask": self.mask,
            "position_ids": torch.tensor(self.positions, dtype=torch.long).unsqueeze(1),
            "past_key_values": self.cache,
            "use_cache": True,
        }

    def advance(self, cache: Any) -> None:
        """After a decode step: the model returned the cache with one more column per row."""
        self.cache = cache
        self.positions = [p + 1 for p in self.positions]


def _left_pad(tensor: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad dimension 2 (the sequence) of a (rows, heads, length, dim) tensor with `pad` zeros on the left."""
    if pad <= 0:
        return tensor
    return torch.nn.functional.pad(tensor, (0, 0, pad, 0))
