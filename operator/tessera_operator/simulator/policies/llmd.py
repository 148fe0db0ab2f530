"""llm-d's workload variant autoscaler (WVA) in its saturation mode, from its defaults.

Every 30 s it takes, per pod, the maximum over the last minute of vllm:kv_cache_usage_perc and of
vllm:num_requests_waiting. A pod is saturated at KV >= 0.80 or a queue >= 5. Over the pods that are
not saturated it averages the spare KV (0.80 - kv) and spare queue (5 - q): it adds one replica when the
spare KV is under 0.10 or the spare queue under 3 (or every pod is saturated), and removes one only when
at least two pods are unsaturated and the spares would still hold with their load spread over one pod
fewer. It holds while a replica is starting. The HPA applies its answer with a 240 s stabilization window
both ways. Scale to zero is off by default.
"""

from __future__ import annotations

from tessera_operator.autoscaling.observation import Observation
from tessera_operator.simulator.policies.base import PolicyContext, PolicySpec, Window

KV_SATURATION = 0.80
QUEUE_SATURATION = 5.0
KV_SPARE_TRIGGER = 0.10
QUEUE_SPARE_TRIGGER = 3.0
LOOKBACK_SECONDS = 60.0
CYCLE_SECONDS = 30.0
HPA_STABILIZATION_SECONDS = 240.0


class LlmdPolicy:
    """Saturation-based WVA (+1 / -1 per cycle) behind an HPA."""

    sample_seconds = 15.0

    def __init__(self, context: PolicyContext, kv_saturation: float):
        self.context = context
        self.kv_saturation = kv_saturation
        self.pods: dict[str, tuple[Window, Window]] = {}
        self.recommendations = Window(HPA_STABILIZATION_SECONDS)
        self.wva_desired: int | None = None
        self.next_cycle = 0.0
        self.last_reason = ""

    def on_sample(self, observation: Observation) -> int:
        """Scrape, run a WVA cycle every 30 s, and apply it through the HPA's stabilization."""
        now = observation.time_seconds
        current = observation.replicas
        seen = set()
        for pod in observation.pods:
            if not pod.ready:
                continue
            seen.add(pod.name)
            kv, queue = self.pods.setdefault(pod.name, (Window(LOOKBACK_SECONDS), Window(LOOKBACK_SECONDS)))
            kv.add(now, pod.kv_cache_usage)
            queue.add(now, pod.waiting)
        for name in set(self.pods) - seen:
            del self.pods[name]
        if current == 0:
            return self.context.clamp(1) if observation.router_held else 0
        if now + 1e-9 >= self.next_cycle:
            self.next_cycle = now + CYCLE_SECONDS
            self.wva_desired = self._cycle(observation, now)
        recommendation = self.wva_desired if self.wva_desired is not None else current
        self.recommendations.add(now, recommendation)
        if recommendation > current:
            desired = max(current, int(self.recommendations.min(now)))
        elif recommendation < current:
            desired = min(current, int(self.recommendations.max(now)))
        else:
            desired = current
        return self.context.clamp(max(1, desired))

    def _cycle(self, observation: Observation, now: float) -> int:
        current = observation.replicas
        if observation.loading_replicas > 0:
            self.last_reason = "hold: a replica is starting"
            return current
        peaks = [(kv.max(now), queue.max(now)) for kv, queue in self.pods.values()]
        free = [(kv, q) for kv, q in peaks if kv < self.kv_saturation and q < QUEUE_SATURATION]
        if not free:
            self.last_reason = "every pod saturated: +1"
            return current + 1
        spare_kv = sum(self.kv_saturation - kv for kv, _ in free) / len(free)
        spare_queue = sum(QUEUE_SATURATION - q for _, q in free) / len(free)
        if spare_kv < KV_SPARE_TRIGGER or spare_queue < QUEUE_SPARE_TRIGGER:
            self.last_reason = f"spare KV {spare_kv:.2f}, spare queue {spare_queue:.1f}: +1"
            return current + 1
        if len(free) >= 2:
            fewer = len(free) - 1
            kv_after = sum(kv for kv, _ in free) / fewer
            queue_after = sum(q for _, q in free) / fewer
            if (
                self.kv_saturation - kv_after >= KV_SPARE_TRIGGER
                and QUEUE_SATURATION - queue_after >= QUEUE_SPARE_TRIGGER
            ):
                self.last_reason = "spares hold on one replica fewer: -1"
                return current - 1
        self.last_reason = f"spare KV {spare_kv:.2f}: hold"
        return current

    def reason(self) -> str:
        """The saturation analysis behind the last answer."""
        return self.last_reason


SPEC = PolicySpec(
    name="llmd",
    build=LlmdPolicy,
    setting_name="kvSaturation",
    default_setting=KV_SATURATION,
    sweep=(0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8),
    description="llm-d WVA: saturation (KV >= 0.8 or queue >= 5), +1/-1 per 30 s cycle, HPA 240 s",
)
