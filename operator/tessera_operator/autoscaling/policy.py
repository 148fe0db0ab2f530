"""Tessera's autoscaling policy: `decide(state, observation, config) -> (decision, new state)`.

In plain words, each call:
1. measures the load in busy replicas (see `demand`), the replicas the KV cache needs and those the
   Model's queue and concurrency targets ask for; the demand is the largest (like a multi-metric HPA);
2. scales from zero at once when the router holds a request, and to zero after `scaleToZeroAfter` idle;
3. plans capacity one cold start ahead (see `forecast`); replicas still loading count as capacity on
   the way, so a fleet that is loading is never scaled up again for the same demand;
4. scales up as soon as the plan exceeds the replicas there are (ready and loading), to the plan;
5. scales down only when every plan of the stabilization window, with its headroom, wanted fewer
   replicas and the last change is that old, to the largest of them: no flapping. The headroom follows
   the load (see `variability`): room for the largest rise of the request rate within one reaction time
   seen lately, so a bursty load is not scaled down into its next burst; and at most
   `max_scale_downs_per_hour` times an hour (scale-ups are never held back).
"""

from __future__ import annotations

import math

from tessera_operator.autoscaling.config import PolicyConfig
from tessera_operator.autoscaling.demand import LoadEstimate, estimate_load, utilisation_for
from tessera_operator.autoscaling.forecast import Forecast, forecast
from tessera_operator.autoscaling.observation import Decision, Observation
from tessera_operator.autoscaling.state import DemandSample, PolicyState
from tessera_operator.autoscaling.variability import (
    history_seconds,
    record_rise,
    rise_factor,
    scale_down_factor,
)

HOUR_SECONDS = 3600.0


def _is_active(observation: Observation) -> bool:
    return (
        observation.router_in_flight > 0
        or observation.router_held > 0
        or (observation.request_rate or 0.0) > 0
        or any(pod.running > 0 or pod.waiting > 0 for pod in observation.pods)
    )


def _clamp(replicas: int, config: PolicyConfig) -> int:
    return max(config.min_replicas, min(config.max_replicas, replicas))


def _ceil(value: float) -> int:
    return math.ceil(value - 1e-6)


def _utilisation_at(tpot_fraction: float, load: LoadEstimate, config: PolicyConfig) -> float:
    """The utilisation at which an engine step takes `tpot_fraction` of the TPOT SLO (1 while the
    step's fixed cost is unknown)."""
    if load.unloaded_tpot_seconds is None:
        return 1.0
    return utilisation_for(tpot_fraction * config.tpot_slo_seconds, load.unloaded_tpot_seconds)


def decide(
    state: PolicyState, observation: Observation, config: PolicyConfig
) -> tuple[Decision, PolicyState]:
    """Decide the Model's replica count from one observation; pure: same inputs, same answer."""
    now = observation.time_seconds
    current = observation.replicas
    previous = state.samples[-1].time_seconds if state.samples else None
    elapsed = config.interval_seconds if previous is None else max(0.0, now - previous)
    load = estimate_load(observation, config, state, elapsed)
    active = _is_active(observation)
    last_active = now if active or state.last_active_seconds is None else state.last_active_seconds

    # Demand in replicas at target: busy replicas over the target utilisation, or what the KV cache needs.
    utilisation = _utilisation_at(config.tpot_target_fraction, load, config)
    # Long enough for the trend, the stabilization window and the rises (which cover the other windows).
    keep = max(config.trend_window_seconds, history_seconds(config))
    history = [sample for sample in state.samples if sample.time_seconds > now - keep]
    # Like an HPA with several metrics, the demand is the largest of the signals, each in replicas.
    points = [
        (sample.time_seconds, max(sample.busy_replicas / utilisation, sample.kv_replicas, sample.floor_replicas))
        for sample in history
    ]
    points.append((now, max(load.busy_replicas / utilisation, load.kv_replicas, load.floor_replicas)))
    # The load's shape comes from the router's request rate: unlike busy time, it is not capped when
    # pods saturate, so a spike shows at its full height.
    rates = [(sample.time_seconds, sample.request_rate) for sample in history]
    rates.append((now, load.request_rate))
    rises = record_rise(state.rises, rates, now, config)
    rise = rise_factor(rises, config)
    plan = forecast(points, now, current, config)
    floor = 1 if active else 0
    # What a scale-down may go to at this moment: the plan with the headroom for the load's rises.
    keep_factor = scale_down_factor(rise, utilisation, _utilisation_at(config.peak_tpot_fraction, load, config), config)
    # Never below the burst window either: a load already back from a dip is not scaled down for it.
    keep_for = _clamp(max(floor, _ceil(max(plan.planned, plan.fast) * keep_factor)), config)
    history.append(
        DemandSample(now, load.busy_replicas, load.kv_replicas, keep_for, load.floor_replicas, load.request_rate)
    )

    recommendation = _clamp(max(floor, _ceil(plan.planned)), config)
    # A plan just over the fleet is within tolerance: the target has room for it (as an HPA's tolerance
    # band), and scaling up by one for it would be undone at the next lull.
    within_tolerance = plan.planned <= current * (1 + config.scale_up_tolerance)
    if recommendation > current > 0 and within_tolerance and not load.saturated and not plan.burst:
        recommendation = current
    if recommendation > current:
        recommendation = _clamp(max(floor, _ceil(plan.ahead * (1 + config.scale_up_headroom))), config)
    room = ""
    if keep_factor > 1.0 + config.scale_down_headroom + 1e-9:
        room = (
            f"; it keeps room for the {rise:.1f}x rise in request rate seen within a cold start in the last "
            f"{config.variability_window_seconds / 60:.0f} min"
        )
    desired, reason = _choose(
        state, observation, config, load, plan, recommendation, history, last_active, room
    )
    desired = _clamp(desired, config)
    new_state = PolicyState(
        samples=tuple(history),
        rises=rises,
        cost_per_request_rate=load.cost_per_request_rate,
        unloaded_tpot_seconds=load.unloaded_tpot_seconds,
        last_active_seconds=last_active,
        last_change_seconds=now if desired != current else state.last_change_seconds,
        scale_down_times=(*_scale_downs_within_hour(state, now), *((now,) if desired < current else ())),
    )
    return Decision(desired, reason, round(plan.planned, 3)), new_state


def _choose(
    state: PolicyState,
    observation: Observation,
    config: PolicyConfig,
    load: LoadEstimate,
    plan: Forecast,
    recommendation: int,
    history: list[DemandSample],
    last_active: float,
    room: str = "",
) -> tuple[int, str]:
    now = observation.time_seconds
    current = observation.replicas
    if current == 0:
        if observation.router_held > 0 or load.request_rate > 0:
            wanted = max(1, recommendation)
            held = observation.router_held
            return wanted, (
                f"Scale from zero to {wanted}: the router holds {held} request{'' if held == 1 else 's'} "
                "and no replica is up."
            )
        return 0, "Stay at zero: no request is held or arriving."
    idle_for = now - last_active
    if config.min_replicas == 0 and idle_for >= config.scale_to_zero_after_seconds:
        return 0, (
            f"Scale to zero: nothing in flight, held or arriving for {idle_for:.0f} s "
            f"(scaleToZeroAfter {config.scale_to_zero_after_seconds:.0f} s)."
        )
    figures = _figures(load, plan, config)
    if recommendation > current:
        loading = observation.loading_replicas
        on_the_way = f", counting the {loading} still loading" if loading else ""
        return recommendation, f"Scale up from {current} to {recommendation}: {figures}{on_the_way}."
    since_change = math.inf if state.last_change_seconds is None else now - state.last_change_seconds
    delay = config.scale_down_delay_seconds
    window = [sample.recommendation for sample in history if sample.time_seconds > now - delay]
    watched_long_enough = history[0].time_seconds <= now - delay + config.interval_seconds
    # Once every plan of the window wanted fewer, go to what the plan needs now (with its headroom).
    lower = history[-1].recommendation if max(window, default=current) < current else current
    if lower < current and since_change >= delay and watched_long_enough and not observation.loading_replicas:
        downs = _scale_downs_within_hour(state, now)
        limit = config.max_scale_downs_per_hour
        if limit is not None and len(downs) >= limit:
            wait = downs[len(downs) - limit] + HOUR_SECONDS - now
            return current, (
                f"Hold {current}: {figures}; {lower} would do, but the fleet scaled down {len(downs)} times "
                f"in the last hour (maxScaleDownsPerHour {limit}), so the next scale-down waits {wait:.0f} s."
            )
        return lower, (
            f"Scale down from {current} to {lower}: {figures}, and no plan in the last {delay:.0f} s "
            f"wanted more{room}."
        )
    if lower < current:
        return current, f"Hold {current}: {figures}; a scale-down waits for {delay:.0f} s of lower plans{room}."
    return current, f"Hold {current}: {figures}{room}."


def _scale_downs_within_hour(state: PolicyState, now: float) -> tuple[float, ...]:
    return tuple(moment for moment in state.scale_down_times if moment > now - HOUR_SECONDS)


def _figures(load: LoadEstimate, plan: Forecast, config: PolicyConfig) -> str:
    step_ms = config.tpot_target_fraction * config.tpot_slo_seconds * 1000
    text = f"the load needs {plan.planned:.1f} replicas at {step_ms:.0f} ms steps ({load.request_rate:.0f} req/s"
    if load.source == "request rate":
        text += ", measured by request rate as pods saturate"
    if plan.burst:
        text += ", a burst"
    elif plan.trend_per_minute > 0.01:
        text += f", rising {plan.trend_per_minute:.2f} replicas/min over a {config.cold_start_seconds:.0f} s cold start"
    if load.backlog:
        text += f", {load.backlog} queued"
    if load.floor_source == "queue" and load.floor_replicas >= plan.planned - 1e-6:
        text += f", held up by the queue: {load.backlog} waiting over queuePerReplica {config.queue_per_replica:g}"
    elif load.floor_source == "concurrency" and load.floor_replicas >= plan.planned - 1e-6:
        text += (f", held up by concurrency: {load.in_flight:.0f} in flight over concurrencyPerReplica "
                 f"{config.concurrency_per_replica:g}")
    return text + ")"
