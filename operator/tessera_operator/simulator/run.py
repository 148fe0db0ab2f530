"""One policy on one trace, the way the CLI and the benchmark run it: with a warm-up before the trace."""

from __future__ import annotations

from collections.abc import Callable

from tessera_operator.simulator.engine import SimulationSettings, simulate
from tessera_operator.simulator.policies.base import PolicyContext, PolicySpec
from tessera_operator.simulator.profile import ReplicaProfile
from tessera_operator.simulator.results import SimulationResult
from tessera_operator.simulator.trace import Trace, with_warmup

#: Long enough for the longest window of any policy (KubeAI's 10-minute average) to fill.
WARMUP_SECONDS = 600.0


def run_policy(
    spec: PolicySpec,
    setting: float,
    trace: Trace,
    profile: ReplicaProfile,
    settings: SimulationSettings | None = None,
    progress: Callable[[float], None] | None = None,
    warmup_seconds: float = WARMUP_SECONDS,
) -> SimulationResult:
    """Simulate `spec` at `setting` on `trace` after a warm-up (the figures leave the warm-up out)."""
    settings = settings or SimulationSettings()
    warmed = with_warmup(trace, warmup_seconds)
    context = PolicyContext(
        trace=warmed,
        profile=profile,
        ttft_slo_seconds=settings.ttft_slo_seconds,
        tpot_slo_seconds=settings.tpot_slo_seconds,
    )
    return simulate(warmed, spec.build(context, setting), profile, settings, progress)
