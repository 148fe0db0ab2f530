"""A short-horizon forecast that fits in a sentence: the recent trend, carried one cold start ahead.

The burst window's mean reacts within seconds; the stable window's mean is steadier but lags by half its
length. A least-squares line through the trend window gives the slope; only a rising slope is carried
forward, from the stable window's middle to one cold start from now, because a falling one is left to
the scale-down stabilization. A burst moves the plan at once only when it overloads the replicas there
are beyond the burst tolerance: smaller ones are absorbed by the target's headroom, and one shorter than
a cold start would be over before a new replica was ready.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tessera_operator.autoscaling.config import PolicyConfig


@dataclass(frozen=True, slots=True)
class Forecast:
    """The demand (replicas at target) to plan capacity for, and its parts."""

    planned: float
    #: The plan plus the clear rising trend carried one cold start ahead: what a scale-up goes to.
    ahead: float
    fast: float
    stable: float
    trend_per_minute: float
    #: Whether the burst window overloads the fleet (then the plan follows it at once).
    burst: bool = False


def _mean(points: list[tuple[float, float]], since: float) -> float:
    values = [value for moment, value in points if moment > since]
    return sum(values) / len(values) if values else 0.0


def _clear_slope(points: list[tuple[float, float]], significance: float) -> float:
    """The least-squares slope, or 0 when it is not `significance` standard errors clear of noise."""
    count = len(points)
    if count < 4:
        return 0.0
    mean_t = sum(moment for moment, _ in points) / count
    mean_v = sum(value for _, value in points) / count
    spread = sum((moment - mean_t) ** 2 for moment, _ in points)
    if spread <= 0:
        return 0.0
    slope = sum((moment - mean_t) * (value - mean_v) for moment, value in points) / spread
    residual = sum((value - mean_v - slope * (moment - mean_t)) ** 2 for moment, value in points)
    error = math.sqrt(residual / (count - 2) / spread)
    return slope if slope > significance * error else 0.0


def forecast(points: list[tuple[float, float]], now: float, capacity: int, config: PolicyConfig) -> Forecast:
    """Plan for the stable mean plus its rising trend, or the burst mean when it overloads the fleet.

    `points` are (time, demand in replicas at target), oldest first, the newest at `now`.
    """
    fast = _mean(points, now - config.fast_window_seconds)
    stable = _mean(points, now - config.stable_window_seconds)
    trend_points = [(moment, value) for moment, value in points if moment > now - config.trend_window_seconds]
    covered = bool(trend_points) and trend_points[-1][0] - trend_points[0][0] >= config.trend_window_seconds / 2
    slope = _clear_slope(trend_points, config.trend_significance) if covered else 0.0
    horizon = config.cold_start_seconds + config.stable_window_seconds / 2
    rise = config.trend_weight * max(0.0, slope) * horizon
    burst = fast > capacity * (1.0 + config.burst_tolerance)
    planned = max(fast, stable) if burst else stable
    return Forecast(
        planned=planned, ahead=planned + rise, fast=fast, stable=stable, trend_per_minute=slope * 60, burst=burst
    )
