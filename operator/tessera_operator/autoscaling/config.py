"""The Tessera policy's settings: the Model's bounds and SLO, and the policy's targets and windows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Everything `decide` needs besides the observation and its own state.

    The operator fills it from `spec.autoscaling`, `spec.slo` and the resolved plan; the simulator from
    its profile. Defaults are the policy's published defaults.
    """

    min_replicas: int = 0
    max_replicas: int = 8
    #: Idle time (no request in flight, held or arriving) after which the Model goes to zero replicas.
    scale_to_zero_after_seconds: float = 600.0
    #: The Model's SLO: time to first token and time per output token.
    ttft_slo_seconds: float = 1.0
    tpot_slo_seconds: float = 0.05
    #: How long a new replica takes to become ready (from the plan, or measured on past starts).
    cold_start_seconds: float = 90.0
    #: Time per output token of a replica with a single sequence: the fixed cost of one engine step.
    #: None learns it as the smallest time per output token any pod has reported.
    unloaded_tpot_seconds: float | None = None
    #: Size the fleet so that an engine step takes this fraction of the TPOT SLO on average: the
    #: policy's main target. The rest absorbs what a mean hides: a request's time per output token
    #: swings with the prefill chunks that share its steps (a full 8k-token chunk step takes ~190 ms
    #: on the default profile), with uneven routing and with bursts shorter than a cold start.
    tpot_target_fraction: float = 0.35
    #: KV-cache usage a pod should stay under on average (vLLM queues requests when it is full).
    kv_cache_target: float = 0.8
    #: Waiting requests each replica may hold (`targets.queuePerReplica`): the waiting and held requests
    #: over it are a floor on replicas, as an HPA's AverageValue target would be, and a queue beyond it
    #: counts as saturation. 0: any queue asks for one more replica. None: no floor.
    queue_per_replica: float | None = None
    #: Requests in flight (running and waiting) per replica to aim for (`targets.concurrencyPerReplica`):
    #: a floor on replicas next to the load's own. None: no floor.
    concurrency_per_replica: float | None = None
    #: How often the operator (or the simulator) calls `decide`.
    interval_seconds: float = 5.0
    #: Burst window: a short mean that reacts within seconds.
    fast_window_seconds: float = 30.0
    #: Stable window: the mean the trend is drawn through.
    stable_window_seconds: float = 120.0
    #: Trend window: the span the demand slope is fitted over for the forecast.
    trend_window_seconds: float = 300.0
    #: Share of the fitted rising slope that is carried forward (1 = all of it; 0 = no forecast). Half:
    #: a ramp seen over five minutes rarely keeps its full pace through the next cold start.
    trend_weight: float = 0.5
    #: A slope counts only when it stands this many standard errors above zero: the forecast follows
    #: clear ramps, not the wandering of a noisy but level load.
    trend_significance: float = 3.0
    #: A burst (the fast window's mean) moves the plan at once when it exceeds the replicas there are by
    #: more than this fraction; smaller bursts are absorbed by the headroom the TPOT target leaves.
    burst_tolerance: float = 0.15
    #: Scale down only to a fleet that keeps at least this much headroom over the plan (hysteresis).
    scale_down_headroom: float = 0.1
    #: A plan above the replicas there are by no more than this fraction does not scale up, unless pods
    #: saturate or a burst overloads them (a tolerance band, as an HPA's).
    scale_up_tolerance: float = 0.1
    #: Scale up to the plan with this much headroom on top, so that a load still rising does not need
    #: another change a minute later.
    scale_up_headroom: float = 0.0
    #: Scale-down stabilization: replicas go only when every recommendation over this span wanted fewer,
    #: and not sooner than this after the last change.
    scale_down_delay_seconds: float = 240.0
    #: At most this many scale-downs in any hour (None: no limit). Scale-ups are never held back, and a
    #: fleet rarely goes up more often than it comes down, so 3 keeps changes near 6 an hour: a load
    #: that swings faster than that is cheaper to hold than to chase through 90 s cold starts.
    max_scale_downs_per_hour: int | None = 3
    #: Half-life of the learned cost of one request per second (how fast a new request mix is learned).
    cost_half_life_seconds: float = 120.0
    #: Backlog (held and waiting requests) is planned to drain within this many seconds.
    backlog_drain_seconds: float = 30.0
    #: Headroom that follows the load (see `variability`): the rises of the request rate within one
    #: reaction time, recorded every `rise_every_seconds` over the last `variability_window_seconds`. A
    #: scale-down keeps room for their `rise_quantile` (1: the largest), with engine steps allowed to
    #: reach `peak_tpot_fraction` of the TPOT SLO while the rise lasts.
    variability_window_seconds: float = 1800.0
    rise_every_seconds: float = 30.0
    rise_quantile: float = 1.0
    peak_tpot_fraction: float = 0.5
    #: The rise assumed until `variability_min_rises` have been recorded.
    default_rise: float = 1.2
    variability_min_rises: int = 10

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < max(1, self.min_replicas):
            raise ValueError("replica bounds need 0 <= minReplicas <= maxReplicas and maxReplicas >= 1")
        if not 0 < self.tpot_target_fraction < 1:
            raise ValueError("tpotTargetFraction is a fraction between 0 and 1")
        if not 0 < self.kv_cache_target <= 1:
            raise ValueError("kvCacheTarget is a fraction between 0 and 1")
        if self.queue_per_replica is not None and self.queue_per_replica < 0:
            raise ValueError("queuePerReplica cannot be negative")
        if self.concurrency_per_replica is not None and self.concurrency_per_replica <= 0:
            raise ValueError("concurrencyPerReplica must be positive")
        if not 0 < self.peak_tpot_fraction < 1 or not 0 < self.rise_quantile <= 1:
            raise ValueError("peakTpotFraction and riseQuantile are fractions between 0 and 1")
        if self.max_scale_downs_per_hour is not None and self.max_scale_downs_per_hour < 1:
            raise ValueError("maxScaleDownsPerHour must be at least 1 (or unset for no limit)")
        if self.interval_seconds <= 0 or self.cold_start_seconds < 0:
            raise ValueError("the interval must be positive and the cold start not negative")
