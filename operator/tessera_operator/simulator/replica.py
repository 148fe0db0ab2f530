"""One replica of an engine with continuous batching, simulated a run of steps at a time.

Each step decodes one token for every decoding sequence and prefills up to the step's token budget of
waiting prompts (chunked prefill, first come first served). Its duration follows the profile:
t0 + a*(prefill tokens) + b*(sequences in the step) + c*(KV tokens resident).

Speed matters (hundreds of thousands of requests per run), so steps are not simulated one by one when
nothing changes between them: a run of k decode-only steps with N sequences and K0 resident tokens lasts
k*(t0 + b*N + c*K0) + c*N*k*(k-1)/2 seconds in closed form, because the cache grows by N tokens a step.
A run ends at the next completion, or earlier, at the first step boundary after a new arrival.

A request is admitted only when its whole sequence (prompt and output) fits in the KV cache, so the
model never preempts; `kv_cache_usage` reports the tokens actually resident, as vLLM does.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

from tessera_operator.simulator.profile import ReplicaProfile

LOADING, READY, DRAINING, RELEASED = 0, 1, 2, 3
IDLE, MIXED, DECODE = 0, 1, 2


class RequestLog:
    """Per-request arrays shared by the replicas: inputs and what happened to each request."""

    __slots__ = ("arrival", "finish", "first_token", "generated", "prompt", "rejected")

    def __init__(self, arrivals: tuple[float, ...], prompts: tuple[int, ...], generated: tuple[int, ...]):
        self.arrival = arrivals
        self.prompt = prompts
        self.generated = generated
        count = len(arrivals)
        self.first_token: list[float] = [math.nan] * count
        self.finish: list[float] = [math.nan] * count
        self.rejected: list[bool] = [False] * count


class Replica:
    """The state of one replica; the simulation owns the clock and the event queue."""

    __slots__ = (
        "a",
        "b",
        "budget",
        "c",
        "created",
        "dec_a",
        "dec_heap",
        "dec_n",
        "epoch",
        "index",
        "kv_capacity",
        "log",
        "max_seqs",
        "outstanding",
        "pf_kv",
        "prefill",
        "ready_at",
        "recent_ttfts",
        "released_at",
        "reserved",
        "run_end",
        "run_first",
        "run_growth",
        "run_kind",
        "run_start",
        "run_steps",
        "state",
        "step",
        "t0",
        "tok_latency",
        "tokens",
        "ttft_count",
        "ttft_sum",
        "waiting",
        "window_mark",
    )

    def __init__(self, index: int, created: float, ready_at: float, profile: ReplicaProfile, log: RequestLog):
        self.index = index
        self.created = created
        self.ready_at = ready_at
        self.released_at = math.nan
        self.state = READY if ready_at <= created else LOADING
        self.log = log
        self.t0 = profile.step_overhead_seconds
        self.a = profile.prefill_seconds_per_token
        self.b = profile.seconds_per_sequence
        self.c = profile.seconds_per_kv_token
        self.kv_capacity = profile.kv_cache_tokens
        self.max_seqs = profile.max_num_seqs
        self.budget = profile.max_batched_tokens
        self.step = 0
        # Decoding sequences: a heap of (step count after their last token, request); their resident
        # tokens sum to dec_a + dec_n * step, so nothing per sequence changes while they decode.
        self.dec_heap: list[tuple[int, int]] = []
        self.dec_n = 0
        self.dec_a = 0
        # Admitted sequences still prefilling: [request, prompt tokens left]; pf_kv is what they hold.
        self.prefill: deque[list[int]] = deque()
        self.pf_kv = 0
        self.waiting: deque[int] = deque()
        self.reserved = 0
        self.outstanding = 0
        self.run_kind = IDLE
        self.run_start = 0.0
        self.run_end = 0.0
        self.run_steps = 0
        self.run_first = 0.0
        self.run_growth = 0.0
        self.epoch = 0
        # Counters behind the pod's metrics (cumulative; the sampler takes differences).
        self.tok_latency = 0.0
        self.tokens = 0
        self.ttft_sum = 0.0
        self.ttft_count = 0
        self.recent_ttfts: list[float] = []
        self.window_mark = (0.0, 0, 0.0, 0)

    # -- what the pod's /metrics would say -------------------------------------------------------------

    def running(self) -> int:
        """`vllm:num_requests_running`."""
        return self.dec_n + len(self.prefill)

    def kv_usage(self, now: float) -> float:
        """`vllm:kv_cache_usage_perc` at `now` (inside a decode run, the steps done so far count)."""
        step = self.step
        if self.run_kind == DECODE and self.dec_n and now > self.run_start:
            per_step = self.t0 + self.b * self.dec_n + self.c * (self.dec_a + self.dec_n * step)
            step += min(self.run_steps, int((now - self.run_start) / per_step))
        return min(1.0, (self.dec_a + self.dec_n * step + self.pf_kv) / self.kv_capacity)

    # -- the engine ------------------------------------------------------------------------------------

    def dispatch(self, request: int, now: float) -> float | None:
        """Accept a request from the router; returns the time of a newly scheduled run end, if any."""
        self.outstanding += 1
        waiting = self.waiting
        waiting.append(request)
        kind = self.run_kind
        if kind == IDLE:
            return self.begin(now)
        if kind == DECODE and len(waiting) == 1:
            return self._cut_decode_run(now)
        return None  # a mixed step is under way (it takes the request at its end) or the queue is blocked

    def _cut_decode_run(self, now: float) -> float | None:
        """End the decode run at the first step boundary at or after `now`, so the arrival joins."""
        elapsed = now - self.run_start
        if elapsed <= 0:
            steps = 0  # it arrived during the mixed step that leads the run: it joins right after it
        else:
            first = self.run_first
            growth = self.run_growth
            if growth > 0:
                half = first - growth / 2
                steps = math.ceil((math.sqrt(half * half + 2 * growth * elapsed) - half) / growth - 1e-9)
            else:
                steps = math.ceil(elapsed / first - 1e-9)
            if steps < 1:
                steps = 1
            # Float rounding can put the root one step off either way.
            while steps * first + growth * steps * (steps - 1) / 2 < elapsed:
                steps += 1
            while steps > 1 and (steps - 1) * first + growth * (steps - 1) * (steps - 2) / 2 >= elapsed:
                steps -= 1
        if steps >= self.run_steps:
            return None
        self.run_steps = steps
        self.run_end = self.run_start + steps * self.run_first + self.run_growth * steps * (steps - 1) / 2
        self.epoch += 1
        return self.run_end

    def begin(self, now: float) -> float | None:
        """Plan the next run at a step boundary `now`; returns when it ends, or None when idle.

        A mixed step (prefill and decode) is applied at once, its effects stamped with its end time,
        and, when nothing is left to prefill, the decode run after it is planned in the same run: one
        event instead of two per arrival.
        """
        self.epoch += 1
        if self.prefill or self.waiting:
            end = self._mixed_step(now)
            if end is None:
                pass
            elif self.prefill or self._admissible():
                self.run_kind = MIXED
                self.run_start = now
                self.run_steps = 0  # already applied
                self.run_end = end
                return end
            else:
                now = end
                if not self.dec_n:
                    self.run_kind = MIXED
                    self.run_start = now
                    self.run_steps = 0
                    self.run_end = end
                    return end
        self.run_start = now
        n = self.dec_n
        if not n:
            self.run_kind = IDLE
            return None
        steps = self.dec_heap[0][0] - self.step
        first = self.t0 + self.b * n + self.c * (self.dec_a + n * self.step)
        growth = self.c * n
        self.run_kind = DECODE
        self.run_first = first
        self.run_growth = growth
        self.run_steps = steps
        self.run_end = now + steps * first + growth * steps * (steps - 1) / 2
        return self.run_end

    def _admissible(self) -> bool:
        waiting = self.waiting
        if not waiting or self.dec_n + len(self.prefill) >= self.max_seqs:
            return False
        request = waiting[0]
        return self.reserved + self.log.prompt[request] + self.log.generated[request] <= self.kv_capacity

    def _mixed_step(self, now: float) -> float | None:
        """Schedule one step of prefill chunks beside the decodes and apply it; returns its end time."""
        log = self.log
        n = self.dec_n
        budget = self.budget - n
        chunks: list[tuple[list[int], int]] = []
        prefill_tokens = 0
        prefill = self.prefill
        for entry in prefill:
            if budget <= 0:
                break
            take = entry[1] if entry[1] < budget else budget
            chunks.append((entry, take))
            prefill_tokens += take
            budget -= take
        waiting = self.waiting
        while waiting and budget > 0 and n + len(prefill) < self.max_seqs:
            request = waiting[0]
            prompt = log.prompt[request]
            need = prompt + log.generated[request]
            if self.reserved + need > self.kv_capacity:
                break
            waiting.popleft()
            self.reserved += need
            entry = [request, prompt]
            prefill.append(entry)
            take = prompt if prompt < budget else budget
            chunks.append((entry, take))
            prefill_tokens += take
            budget -= take
        if not chunks:
            return None
        kv = self.dec_a + n * self.step + self.pf_kv
        end = now + self.t0 + self.a * prefill_tokens + self.b * (n + len(chunks)) + self.c * kv
        # Apply the step: one token for each decoding sequence, the chunks for the prefilling ones.
        self.tok_latency += n * (end - now)
        self.tokens += n
        step = self.step + 1
        self.step = step
        self._finish_decodes(step, end)
        heap = self.dec_heap
        for entry, take in chunks:
            entry[1] -= take
            self.pf_kv += take
            if entry[1] > 0:
                continue
            request = entry[0]
            prefill.popleft()  # chunks are a prefix of the prefill queue, in order
            prompt = log.prompt[request]
            self.pf_kv -= prompt
            log.first_token[request] = end
            ttft = end - log.arrival[request]
            self.ttft_sum += ttft
            self.ttft_count += 1
            self.recent_ttfts.append(ttft)
            generated = log.generated[request]
            if generated <= 1:
                self._complete(request, generated, end)
            else:
                self.dec_n += 1
                self.dec_a += prompt + 1 - step
                heapq.heappush(heap, (step + generated - 1, request))
        return end

    def _finish_decodes(self, step: int, now: float) -> None:
        heap = self.dec_heap
        if not heap or heap[0][0] > step:
            return
        log = self.log
        prompts = log.prompt
        generated_tokens = log.generated
        finish = log.finish
        released = 0
        n = self.dec_n
        while heap and heap[0][0] <= step:
            request = heapq.heappop(heap)[1]
            generated = generated_tokens[request]
            prompt = prompts[request]
            self.dec_a -= prompt + generated - step  # its resident tokens were its share of dec_a + step
            released += prompt + generated
            finish[request] = now
            n -= 1
        self.outstanding -= self.dec_n - n
        self.dec_n = n
        self.reserved -= released

    def end_run(self) -> float | None:
        """Apply the decode steps of the run that ends now (at `run_end`) and plan the next run."""
        now = self.run_end
        steps = self.run_steps
        if steps:
            n = self.dec_n
            self.tok_latency += n * (now - self.run_start)
            self.tokens += n * steps
            self.step += steps
            self._finish_decodes(self.step, now)
        return self.begin(now)

    def _complete(self, request: int, generated: int, now: float) -> None:
        self.log.finish[request] = now
        self.reserved -= self.log.prompt[request] + generated
        self.outstanding -= 1
