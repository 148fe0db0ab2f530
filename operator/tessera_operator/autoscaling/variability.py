"""Headroom that follows the load's own variability: how far it rose within one reaction time, lately.

A reactive policy sees a rise only after it has happened, and a new replica serves only a cold start
later. Whatever the load does within that reaction time must fit in the replicas already there, so a
scale-down should leave room for it. How much room depends on the load: a level chat service wanders by
a few percent; a code assistant with bursts doubles within a minute. So instead of a fixed hysteresis,
the policy measures it. Every `rise_every_seconds` it looks back one reaction time (a cold start plus
half the stable window, the lag of the mean it plans on) and records the rise of the request rate: the
highest burst-window mean since then, over the level the fleet was held at then. The request rate is
used because, unlike busy time, it is not capped when pods saturate, so a spike shows at its full
height. The headroom is the `rise_quantile` of the rises recorded over the last
`variability_window_seconds` (by default the largest); until enough are recorded it is `default_rise`.
"""

from __future__ import annotations

import math

from tessera_operator.autoscaling.config import PolicyConfig


def reaction_seconds(config: PolicyConfig) -> float:
    """From a change in load to a new replica serving it: a cold start plus the stable mean's lag."""
    return config.cold_start_seconds + config.stable_window_seconds / 2


def _window_mean(points: list[tuple[float, float]], start: float, end: float) -> float | None:
    values = [value for moment, value in points if start < moment <= end]
    return sum(values) / len(values) if values else None


def history_seconds(config: PolicyConfig) -> float:
    """How far back `observe_rise` reads: a reaction time, a scale-down delay and a stable window."""
    return reaction_seconds(config) + config.scale_down_delay_seconds + config.stable_window_seconds


def observe_rise(points: list[tuple[float, float]], now: float, config: PolicyConfig) -> float | None:
    """The rise over the last reaction time: the peak burst-window mean since then, over the level the
    fleet was held at then (the highest stable mean of the scale-down delay before it, since a fleet is
    not scaled below that). A dip and its recovery within the delay is therefore not a rise.

    `points` are (time, demand in replicas at target), oldest first. None when the history does not
    reach back far enough or the load was (nearly) nothing then.
    """
    then = now - reaction_seconds(config)
    if not points or points[0][0] > then - config.stable_window_seconds / 2:
        return None
    held = 0.0
    for moment, _ in points:
        if then - config.scale_down_delay_seconds < moment <= then:
            held = max(held, _window_mean(points, moment - config.stable_window_seconds, moment) or 0.0)
    if held < 0.05:
        return None
    peak = 0.0
    for moment, _ in points:
        if moment > then:
            peak = max(peak, _window_mean(points, moment - config.fast_window_seconds, moment) or 0.0)
    return peak / held


def record_rise(
    rises: tuple[tuple[float, float], ...], points: list[tuple[float, float]], now: float, config: PolicyConfig
) -> tuple[tuple[float, float], ...]:
    """Add this moment's rise when one is due, and forget those older than the variability window."""
    kept = tuple((moment, rise) for moment, rise in rises if moment > now - config.variability_window_seconds)
    if kept and now - kept[-1][0] < config.rise_every_seconds:
        return kept
    rise = observe_rise(points, now, config)
    return kept if rise is None else (*kept, (now, rise))


def rise_factor(rises: tuple[tuple[float, float], ...], config: PolicyConfig) -> float:
    """The headroom factor: the `rise_quantile` of the recorded rises (at least 1), or the default."""
    if len(rises) < max(1, config.variability_min_rises):
        return config.default_rise
    ordered = sorted(rise for _, rise in rises)
    index = min(len(ordered) - 1, max(0, math.ceil(config.rise_quantile * len(ordered)) - 1))
    return max(1.0, ordered[index])


def scale_down_factor(rise: float, utilisation: float, peak_utilisation: float, config: PolicyConfig) -> float:
    """What a scale-down keeps over the plan: room for the rise at the peak's utilisation, and at least
    the fixed hysteresis. The plan is at `utilisation`; a rise may run the fleet up to `peak_utilisation`.
    """
    return max(1.0 + config.scale_down_headroom, rise * utilisation / max(peak_utilisation, 1e-6))
