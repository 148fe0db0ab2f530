"""Fair tuning of a policy's setting: the cheapest setting that reaches the SLO-attainment goal.

A policy's setting moves it along one line, from generous (more replicas, better latency) to lean. The
sweep walks its grid by bisection from the generous end, since attainment falls as the setting gets
leaner, and keeps, among the settings that reach the goal, the one with the fewest GPU-hours. When none
does, it keeps the best attainment and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tessera_operator.simulator.policies.base import PolicySpec
from tessera_operator.simulator.results import SimulationResult

SLO_ATTAINMENT_GOAL = 0.99


@dataclass(slots=True)
class SweepOutcome:
    """The chosen setting of one policy, its figures, and every setting tried."""

    policy: str
    setting_name: str
    setting: float
    result: SimulationResult
    reached_goal: bool
    tried: dict[float, SimulationResult] = field(default_factory=dict)


def generous_first(spec: PolicySpec) -> list[float]:
    """The sweep grid ordered from the setting that buys the most replicas to the leanest."""
    return sorted(spec.sweep, reverse=not spec.larger_is_leaner)


def sweep_policy(
    spec: PolicySpec,
    evaluate: Callable[[float], SimulationResult],
    goal: float = SLO_ATTAINMENT_GOAL,
) -> SweepOutcome:
    """Find the cheapest setting of `spec` that reaches `goal`, evaluating as few settings as it can."""
    grid = generous_first(spec)
    tried: dict[float, SimulationResult] = {}

    def run(index: int) -> SimulationResult:
        value = grid[index]
        if value not in tried:
            tried[value] = evaluate(value)
        return tried[value]

    if run(0).slo_attainment >= goal:
        # Bisection: `good` reaches the goal, `bad` (if any) does not.
        good, bad = 0, len(grid)
        if len(grid) > 1 and run(len(grid) - 1).slo_attainment >= goal:
            good = len(grid) - 1
        else:
            bad = len(grid) - 1 if len(grid) > 1 else len(grid)
        while bad - good > 1:
            middle = (good + bad) // 2
            if run(middle).slo_attainment >= goal:
                good = middle
            else:
                bad = middle
    elif len(grid) > 1:
        run(1)  # a second point, in case the grid's generous end is not the best (e.g. flapping)
    passing = {value: result for value, result in tried.items() if result.slo_attainment >= goal}
    if passing:
        value = min(passing, key=lambda item: (passing[item].gpu_hours, -passing[item].slo_attainment))
        return SweepOutcome(spec.name, spec.setting_name, value, passing[value], True, tried)
    value = max(tried, key=lambda item: (tried[item].slo_attainment, -tried[item].gpu_hours))
    return SweepOutcome(spec.name, spec.setting_name, value, tried[value], False, tried)
