"""Smooth weighted round-robin: an exact, deterministic split of requests between versions.

Each pick adds every item's weight to its running score, takes the item with the highest score and
subtracts the total weight from it. Over any window of `sum(weights)` picks each item is chosen
exactly `weight` times, and the picks are spread out (90/10 gives one candidate request in every ten,
not ten in a row), so a canary sees its share from the first requests on.
"""

from __future__ import annotations

from collections.abc import Callable, KeysView, Sequence


class SmoothWeightedRoundRobin:
    """Chooses among named items in proportion to integer weights."""

    def __init__(self, weights: Sequence[tuple[str, int]] = ()) -> None:
        self._weights: dict[str, int] = {}
        self._scores: dict[str, int] = {}
        self.set_weights(weights)

    @property
    def weights(self) -> dict[str, int]:
        """The current weights (items with weight 0 are left out)."""
        return dict(self._weights)

    def names(self) -> KeysView[str]:
        """The items with a weight above 0 (a live view: no copy on the request path)."""
        return self._weights.keys()

    def set_weights(self, weights: Sequence[tuple[str, int]]) -> None:
        """Change the weights; items that stay keep their score, so the split stays smooth across updates."""
        fresh = {name: weight for name, weight in weights if weight > 0}
        if fresh == self._weights:
            return
        self._weights = fresh
        self._scores = {name: self._scores.get(name, 0) for name in fresh}

    def pick(self, available: Callable[[str], bool] | None = None) -> str | None:
        """The next item; with `available`, only among items it accepts (None when none is)."""
        best: str | None = None
        best_score = 0
        total = 0
        scores = self._scores
        for name, weight in self._weights.items():
            if available is not None and not available(name):
                continue
            score = scores[name] + weight
            scores[name] = score
            total += weight
            if best is None or score > best_score:
                best, best_score = name, score
        if best is not None:
            scores[best] -= total
        return best
