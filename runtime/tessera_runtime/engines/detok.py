"""Incremental detokenisation with stop strings: emit text as soon as it cannot become part of a stop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# A decode that ends inside a multi-byte character shows the replacement character; wait for more tokens.
_INCOMPLETE = "\ufffd"


class TextTracker:
    """Turns one sequence's generated tokens into text deltas, cutting the output at the first stop string.

    The whole output is decoded again at each token (byte-level BPE only decodes correctly as a whole);
    outputs here are short, so that is cheap next to a forward pass.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str]) -> None:
        self._tokenizer = tokenizer
        self._stop = tuple(s for s in stop if s)
        # Text that could still be the start of a stop string must be held back.
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self._ids: list[int] = []
        self._emitted = 0
        self.text = ""
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add a token; return the text that is now safe to send (possibly empty)."""
        self._ids.append(token_id)
        full = str(self._tokenizer.decode(self._ids, skip_special_tokens=True))
        if self._stop:
            # Search from a little before the emitted boundary: a stop may straddle it.
            start = max(0, self._emitted - self._hold)
            cut = min((i for i in (full.find(s, start) for s in self._stop) if i >= 0), default=-1)
            if cut >= 0:
                self.stopped = True
                self.text = full[:cut]
                return self._take(cut)
        self.text = full
        safe = len(full) - self._hold if self._stop else len(full)
        if full.endswith(_INCOMPLETE):
            safe = min(safe, len(full) - 1)
        return self._take(safe)

    def flush(self) -> str:
        """At the end of the sequence: whatever is left (held-back text that turned out not to be a stop)."""
        return self._take(len(self.text))

    def _take(self, upto: int) -> str:
        if upto <= self._emitted:
            return ""
        delta = self.text[self._emitted : upto]
        self._emitted = upto
        return delta
