"""The `transformers` CPU engine: continuous batching over a left-padded KV cache, in a dedicated thread.

Between two decode steps the engine thread (1) drops cancelled sequences, (2) prefills waiting
requests that fit into free batch slots and merges them into the running batch, (3) runs one decode
step for every running sequence. So a request never waits for another one to finish, and eight
concurrent requests share each forward pass instead of queueing behind each other.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..metrics import EngineMetrics
from .detok import TextTracker
from .kvbatch import KVBatch, cache_layers
from .loader import LoadedModel
from .sampling import RowSampler, prompt_logprobs, sample_next, token_logprob
from .stream import RequestStream
from .types import (
    EngineClosedError,
    Event,
    FinishEvent,
    PromptEvent,
    QueueFullError,
    RequestTiming,
    SamplingParams,
    TokenEvent,
    TokenLogprob,
)

log = logging.getLogger(__name__)

# Upper bound on padded tokens in one prefill forward (rows x longest prompt), to bound its memory.
PREFILL_TOKEN_BUDGET = 4096


@dataclass
class _Request:
    id: int
    prompt_ids: list[int]
    params: SamplingParams
    stream: RequestStream
    timing: RequestTiming
    unfinished: int
    cancelled: bool = False


@dataclass
class _Sequence:
    request: _Request
    index: int
    sampler: RowSampler
    tracker: TextTracker
    last_token: int = 0
    generated: int = 0
    position: int = 0  # the position the next fed token takes
    events: list[Event] = field(default_factory=list)


class TransformersEngine:
    """Continuous-batching text generation with a transformers causal LM on CPU."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_size: int = 8,
        max_queue: int = 64,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.max_model_len = loaded.max_model_len
        self.eos_token_ids = loaded.eos_token_ids
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.metrics = metrics
        self._pad_id = int(self.tokenizer.pad_token_id or 0)
        self._decode_cache: dict[int, str] = {}
        self._cv = threading.Condition()
        self._waiting: deque[_Request] = deque()
        self._cancel_ids: set[int] = set()
        self._running: list[_Sequence] = []
        self._batch = KVBatch()
        self._ids = itertools.count(1)
        self._closed = False
        self._stop = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---- event-loop side -------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the engine thread; events are delivered on `loop`."""
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="tessera-engine", daemon=True)
        self._thread.start()

    @property
    def num_running(self) -> int:
        """Requests with at least one sequence in the batch."""
        with self._cv:
            return len({seq.request.id for seq in self._running})

    @property
    def num_waiting(self) -> int:
        """Requests waiting for batch slots."""
        with self._cv:
            return len(self._waiting)

    def kv_cache_usage(self) -> float:
        """Fraction of the cache budget (max batch size x context) held by the batch, padding included."""
        return self._batch.allocated_tokens() / (self.max_batch_size * self.max_model_len)

    def submit(self, prompt_ids: Sequence[int], params: SamplingParams) -> RequestStream:
        """Queue a request; raises QueueFullError when the queue is at its limit, EngineClosedError when closing."""
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        with self._cv:
            if self._closed:
                raise EngineClosedError("the engine is shutting down")
            free_rows = self.max_batch_size - len(self._running) - sum(r.params.n for r in self._waiting)
            if free_rows < params.n and len(self._waiting) >= self.max_queue:
                retry_after = 1 + len(self._waiting) // max(1, self.max_batch_size)
                raise QueueFullError(len(self._waiting), retry_after)
            request_id = next(self._ids)
            stream = RequestStream(request_id, params.n, self.cancel)
            self._waiting.append(
                _Request(
                    request_id, list(prompt_ids), params, stream, RequestTiming(time.monotonic()), params.n
                )
            )
            self._cv.notify()
        return stream

    def cancel(self, request_id: int) -> None:
        """Abort a request: waiting ones leave the queue now, running ones before the next step."""
        with self._cv:
            self._cancel_ids.add(request_id)
            self._cv.notify()

    def close(self) -> None:
        """Refuse new requests (the ones already accepted keep running)."""
        with self._cv:
            self._closed = True

    def shutdown(self, timeout: float = 10.0) -> None:
        """Abort everything and stop the engine thread."""
        with self._cv:
            self._closed = True
            self._stop = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- engine thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._cv:
                while not (self._waiting or self._running or self._cancel_ids or self._stop):
                    self._cv.wait()
                if self._stop:
                    self._abort_all()
                    return
                cancelled, self._cancel_ids = self._cancel_ids, set()
                admitted = self._admit(cancelled)
            self._drop(cancelled)
            try:
                if admitted:
                    self._prefill(admitted)
                if self._running:
                    self._decode_step()
            except Exception as exc:  # a failed forward must not kill the server: fail its requests
                log.exception("engine step failed")
                self._fail_all(admitted, exc)
            self._update_gauges()

    def _admit(self, cancelled: set[int]) -> list[_Request]:
        """Under the lock: take waiting requests that fit into free rows and the prefill budget."""
        kept: deque[_Request] = deque()
        for request in self._waiting:
            if request.id in cancelled:
                self._finish_unstarted(request, "abort")
            else:
                kept.append(request)
        self._waiting = kept
        free = self.max_batch_size - len(self._running)
        admitted: list[_Request] = []
        longest = 0
        while self._waiting and self._waiting[0].params.n <= free:
            candidate = self._waiting[0]
            longest_if = max(longest, len(candidate.prompt_ids))
            if admitted and longest_if * (len(admitted) + 1) > PREFILL_TOKEN_BUDGET:
                break
            admitted.append(self._waiting.popleft())
            free -= candidate.params.n
            longest = longest_if
        return admitted

    def _drop(self, cancelled: set[int]) -> None:
        if not cancelled or not self._running:
            return
        keep: list[int] = []
        dropped: list[_Sequence] = []
        for row, seq in enumerate(self._running):
            if seq.request.id in cancelled:
                self._finish(seq, "abort", time.monotonic())
                dropped.append(seq)
            else:
                keep.append(row)
        self._keep(keep)
        for seq in dropped:
            self._flush(seq)

    def _keep(self, rows: list[int]) -> None:
        self._batch.keep(rows)
        self._running = [self._running[r] for r in rows]

    def _prefill(self, requests: list[_Request]) -> None:
        lengths = [len(r.prompt_ids) for r in requests]
        width = max(lengths)
        input_ids = torch.full((len(requests), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(requests), width), dtype=torch.long)
        for row, request in enumerate(requests):
            input_ids[row, : lengths[row]] = torch.tensor(request.prompt_ids, dtype=torch.long)
            mask[row, : lengths[row]] = 1
        all_logits = any(r.params.prompt_logprobs is not None for r in requests)
        wanted = sorted({n - 1 for n in lengths})
        keep_arg: int | torch.Tensor = 0 if all_logits else torch.tensor(wanted, dtype=torch.long)
        now = time.monotonic()
        for request in requests:
            request.timing.scheduled = now
        out = self.model(input_ids=input_ids, attention_mask=mask, use_cache=True, logits_to_keep=keep_arg)
        logits = out.logits
        layers = cache_layers(out.past_key_values)
        # Row r's next-token logits: at its last real position (or its index among the kept positions).
        last = torch.stack(
            [logits[r, (n - 1) if all_logits else wanted.index(n - 1)] for r, n in enumerate(lengths)]
        )
        new_rows: list[int] = []
        new_seqs: list[_Sequence] = []
        for row, request in enumerate(requests):
            if self.metrics is not None:
                self.metrics.prompt_tokens.inc(lengths[row])
            logprobs = None
            if request.params.prompt_logprobs is not None:
                logprobs = prompt_logprobs(
                    self.tokenizer,
                    logits[row],
                    request.prompt_ids,
                    request.params.prompt_logprobs,
                    self._decode_cache,
                )
            for index in range(request.params.n):
                seed = None if request.params.seed is None else request.params.seed + index
                sampler = RowSampler.create(
                    request.params.temperature, request.params.top_p, seed, request.params.logprobs
                )
                seq = _Sequence(request, index, sampler, TextTracker(self.tokenizer, request.params.stop))
                seq.position = lengths[row]
                if index == 0:  # the prompt's event goes first, with the first sequence's events
                    seq.events.append(PromptEvent(lengths[row], logprobs))
                if request.params.max_tokens == 0:
                    self._finish(seq, "length", now)
                    self._flush(seq)
                    continue
                new_rows.append(row)
                new_seqs.append(seq)
        if not new_seqs:
            return
        rows_of_seqs = torch.tensor(new_rows, dtype=torch.long)
        tokens, logprob_rows = sample_next(last.index_select(0, rows_of_seqs), [s.sampler for s in new_seqs])
        now = time.monotonic()
        survivors = [
            i
            for i, seq in enumerate(new_seqs)
            if not self._accept(seq, tokens[i], None if logprob_rows is None else logprob_rows[i], now)
        ]
        if survivors:
            keep = torch.tensor([new_rows[i] for i in survivors], dtype=torch.long)
            self._batch.add(
                [(k.index_select(0, keep), v.index_select(0, keep)) for k, v in layers],
                [lengths[new_rows[i]] for i in survivors],
            )
            self._running.extend(new_seqs[i] for i in survivors)
        # Deliver only now: a client that sees its first token finds its request counted as running.
        for seq in new_seqs:
            self._flush(seq)

    def _decode_step(self) -> None:
        inputs = self._batch.decode_inputs([seq.last_token for seq in self._running])
        out = self.model(**inputs)
        self._batch.advance(out.past_key_values)
        tokens, logprob_rows = sample_next(out.logits[:, -1, :], [seq.sampler for seq in self._running])
        now = time.monotonic()
        keep = [
            row
            for row, seq in enumerate(self._running)
            if not self._accept(seq, tokens[row], None if logprob_rows is None else logprob_rows[row], now)
        ]
        stepped = self._running
        self._keep(keep)
        for seq in stepped:  # after the batch update, so a finished request no longer counts as running
            self._flush(seq)

    def _accept(self, seq: _Sequence, token_id: int, logprobs_row: torch.Tensor | None, now: float) -> bool:
        """Take one sampled token; returns True when the sequence is finished."""
        request, params = seq.request, seq.request.params
        timing = request.timing
        if self.metrics is not None:
            self.metrics.generation_tokens.inc()
            if timing.first_token is None:
                self.metrics.time_to_first_token.observe(now - timing.arrival)
            elif seq.index in timing.last_token:
                self.metrics.inter_token_latency.observe(now - timing.last_token[seq.index])
        if timing.first_token is None:
            timing.first_token = now
        timing.last_token[seq.index] = now
        seq.generated += 1
        seq.last_token = token_id
        seq.position += 1
        info: tuple[TokenLogprob, ...] = ()
        if params.logprobs is not None and logprobs_row is not None:
            info = (
                token_logprob(self.tokenizer, logprobs_row, token_id, params.logprobs, self._decode_cache),
            )
        if token_id in self.eos_token_ids and not params.ignore_eos:
            seq.events.append(TokenEvent(seq.index, "", info))
            self._finish(seq, "stop", now)
            return True
        delta = seq.tracker.push(token_id)
        seq.events.append(TokenEvent(seq.index, delta, info))
        if seq.tracker.stopped:
            self._finish(seq, "stop", now)
            return True
        if seq.generated >= params.max_tokens or seq.position >= self.max_model_len:
            self._finish(seq, "length", now)
            return True
        return False

    def _finish(self, seq: _Sequence, reason: str, now: float, error: str | None = None) -> None:
        tail = "" if seq.tracker.stopped or reason in ("abort", "error") else seq.tracker.flush()
        seq.events.append(FinishEvent(seq.index, reason, tail, seq.generated, error))
        request = seq.request
        request.unfinished -= 1
        if self.metrics is not None:
            timing = request.timing
            queued = (timing.scheduled or now) - timing.arrival
            self.metrics.observe_finished(
                reason, now - timing.arrival, queued, len(request.prompt_ids), seq.generated
            )

    def _finish_unstarted(self, request: _Request, reason: str) -> None:
        events: list[Event] = [FinishEvent(i, reason) for i in range(request.params.n)]
        self._deliver(request, events)
        if self.metrics is not None:
            for _ in range(request.params.n):
                self.metrics.request_success[reason].inc()

    def _flush(self, seq: _Sequence) -> None:
        if seq.events:
            self._deliver(seq.request, seq.events)
            seq.events = []

    def _deliver(self, request: _Request, events: list[Event]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(request.stream.deliver, list(events))

    def _fail_all(self, admitted: list[_Request], exc: Exception) -> None:
        now = time.monotonic()
        started = {seq.request.id for seq in self._running}
        for seq in self._running:
            self._finish(seq, "error", now, error=str(exc))
            self._flush(seq)
        for request in admitted:
            if request.id not in started and request.unfinished == request.params.n:
                events: list[Event] = [
                    FinishEvent(i, "error", error=str(exc)) for i in range(request.params.n)
                ]
                self._deliver(request, events)
        self._running = []
        self._batch.clear()

    def _abort_all(self) -> None:
        for request in self._waiting:
            self._finish_unstarted(request, "abort")
        self._waiting.clear()
        now = time.monotonic()
        for seq in self._running:
            self._finish(seq, "abort", now)
            self._flush(seq)
        self._running = []
        self._batch.clear()

    def _update_gauges(self) -> None:
        if self.metrics is None:
            return
        with self._cv:
            waiting = len(self._waiting)
        running = len({seq.request.id for seq in self._running})
        self.metrics.set_scheduler_state(running, waiting, self.kv_cache_usage())
