"""The router's pure parts: weighted version choice, names, endpoint choice, object parsing."""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

import pytest

from tessera_runtime.router.auth import ApiKey, RateLimit, TokenBucket, digest, key_from_secret, parse_rate
from tessera_runtime.router.balancer import BalancerSettings, EndpointPicker, HashRing, prompt_prefix
from tessera_runtime.router.file_source import parse_routes
from tessera_runtime.router.kube_objects import model_spec, pod_endpoints, slice_endpoints
from tessera_runtime.router.scraper import parse_load
from tessera_runtime.router.table import Endpoint, EndpointState, ModelSpec, RoutingTable
from tessera_runtime.router.weights import SmoothWeightedRoundRobin


def test_smooth_weighted_round_robin_is_exact_and_spread() -> None:
    chooser = SmoothWeightedRoundRobin([("stable", 90), ("candidate", 10)])
    picks = [chooser.pick() for _ in range(1000)]
    assert Counter(picks) == {"stable": 900, "candidate": 100}
    # Spread, not bunched: every window of 10 holds exactly one candidate pick.
    assert all(picks[i:i + 10].count("candidate") == 1 for i in range(0, 1000, 10))


def test_smooth_weighted_round_robin_skips_unavailable_and_zero_weights() -> None:
    chooser = SmoothWeightedRoundRobin([("a", 50), ("b", 50), ("c", 0)])
    assert {chooser.pick(lambda v: v != "a") for _ in range(20)} == {"b"}
    assert chooser.pick(lambda v: False) is None
    assert "c" not in chooser.weights


def test_table_resolves_served_names_and_aliases_and_wakes_on_endpoints() -> None:
    table = RoutingTable()
    table.upsert_model(ModelSpec("team", "llama", "llama-3", aliases=("llama3", "default")))
    table.upsert_model(ModelSpec("other", "mistral", "mistral-7b", aliases=("default",)))
    assert table.lookup("llama-3") is table.lookup("llama3")
    route = table.lookup("llama3")
    assert route is not None and route.spec.name == "llama"
    # An alias claimed twice resolves the same way everywhere: first Model by (namespace, name).
    default = table.lookup("default")
    assert default is not None and default.spec.key == ("other", "mistral")
    assert table.lookup("nope") is None
    assert not route.has_capacity(0.0)
    table.set_group(("team", "llama"), "slice-a", "v1", [EndpointState("http://10.0.0.1:8000")])
    assert route.has_capacity(0.0)
    table.remove_group(("team", "llama"), "slice-a")
    assert not route.has_capacity(0.0)


def test_terminating_endpoints_take_no_new_requests_but_keep_their_counters() -> None:
    table = RoutingTable()
    table.upsert_model(ModelSpec("ns", "m", "m", traffic=(("v1", 100),), stable="v1"))
    table.set_group(("ns", "m"), "s", "v1", [EndpointState("http://a:1"), EndpointState("http://b:1")])
    route = table.models[("ns", "m")]
    endpoint_a = route.endpoints["v1"]["http://a:1"]
    endpoint_a.outstanding = 2
    table.set_group(("ns", "m"), "s", "v1", [EndpointState("http://a:1", ready=False, terminating=True),
                                             EndpointState("http://b:1")])
    assert route.endpoints["v1"]["http://a:1"] is endpoint_a and endpoint_a.outstanding == 2
    assert [e.url for e in route.accepting("v1", 0.0)] == ["http://b:1"]


def test_version_pins_resolve_roles_and_hashes() -> None:
    table = RoutingTable()
    table.upsert_model(ModelSpec("ns", "m", "m", traffic=(("aaa", 90), ("bbb", 10)), stable="aaa", candidate="bbb"))
    route = table.models[("ns", "m")]
    assert route.resolve_version("stable") == "aaa"
    assert route.resolve_version("candidate") == "bbb"
    assert route.resolve_version("bbb") == "bbb"
    assert route.resolve_version("zzz") is None


def _endpoints(count: int) -> list[Endpoint]:
    return [Endpoint(url=f"http://10.0.0.{i}:8000", version="v1") for i in range(count)]


def test_least_loaded_prefers_idle_pods_and_rotates_ties() -> None:
    picker = EndpointPicker()
    endpoints = _endpoints(3)
    endpoints[0].outstanding = 5
    endpoints[1].waiting = 3
    assert picker.pick(endpoints) is endpoints[2]
    for e in endpoints:
        e.outstanding, e.waiting = 0, 0.0
    assert {picker.pick(endpoints).url for _ in range(6)} == {e.url for e in endpoints}
    endpoints[0].kv_cache_usage = 0.95  # nearly full cache: last resort only
    assert all(picker.pick(endpoints) is not endpoints[0] for _ in range(10))


def test_prefix_affinity_sticks_until_the_pod_is_overloaded() -> None:
    picker = EndpointPicker(BalancerSettings(prefix_chars=32, overload_slack=4, overload_factor=1.5))
    endpoints = _endpoints(4)
    key = "You are a helpful assistant. " * 3
    first = picker.pick(endpoints, key)
    assert all(picker.pick(endpoints, key) is first for _ in range(20))
    # Different prefixes spread over the pods.
    owners = {picker.pick(endpoints, f"prefix number {i} " * 4).url for i in range(64)}
    assert len(owners) == 4
    first.outstanding = 10  # far above the mean: affinity yields to load
    assert picker.pick(endpoints, key) is not first
    first.outstanding = 0
    first.kv_cache_usage = 0.99
    assert picker.pick(endpoints, key) is not first


def test_hash_ring_moves_only_the_leaving_pods_keys() -> None:
    urls = [f"http://10.0.0.{i}:8000" for i in range(5)]
    before = HashRing(urls)
    after = HashRing(urls[:-1])
    keys = [f"key-{i}" for i in range(2000)]
    moved = [k for k in keys if before.owner(k) != after.owner(k)]
    assert all(before.owner(k) == urls[-1] for k in moved)
    assert 0 < len(moved) < len(keys) * 0.35


def test_prompt_prefix_of_completions_and_chat() -> None:
    long = "x" * 300
    assert prompt_prefix({"prompt": long}, 256) == long[:256]
    assert prompt_prefix({"prompt": "short"}, 256) is None
    assert prompt_prefix({"prompt": [long, "other"]}, 256) == long[:256]
    assert prompt_prefix({"prompt": list(range(400))}, 64) is not None
    chat = {"messages": [{"role": "system", "content": long}, {"role": "user", "content": "hi"}]}
    assert prompt_prefix(chat, 256) == ("system:" + long)[:256]
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": long}]}]}
    assert prompt_prefix(parts, 256) == ("user:" + long)[:256]
    assert prompt_prefix({"prompt": long}, 0) is None


def test_model_objects_become_routes() -> None:
    obj = {
        "apiVersion": "tessera.dev/v1alpha1", "kind": "Model",
        "metadata": {"name": "llama", "namespace": "team"},
        "spec": {"source": {"uri": "hf://a/b"}, "servedModelName": "llama-3", "aliases": ["l3"]},
        "status": {"traffic": [{"version": "aaa", "weight": 90}, {"version": "bbb", "weight": 10}],
                   "stable": {"version": "aaa"}, "candidate": {"version": "bbb"}},
    }
    spec = model_spec(obj)
    assert spec == ModelSpec("team", "llama", "llama-3", ("l3",), (("aaa", 90), ("bbb", 10)), "aaa", "bbb")
    bare = model_spec({"metadata": {"name": "tiny", "namespace": "x"}, "spec": {}})
    assert bare.served_name == "tiny" and bare.traffic == () and bare.stable is None


def test_endpoint_slices_become_endpoints_with_conditions() -> None:
    obj = {
        "metadata": {"name": "llama-aaa-x1", "namespace": "team",
                     "labels": {"tessera.dev/model": "llama", "tessera.dev/version": "aaa"}},
        "addressType": "IPv4",
        "ports": [{"name": "metrics", "port": 9000}, {"name": "http", "port": 8000}],
        "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": True, "serving": True, "terminating": False}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": False, "serving": True, "terminating": True}},
            {"addresses": ["10.0.0.3"]},
        ],
    }
    parsed = slice_endpoints(obj)
    assert parsed is not None
    model, name, version, endpoints = parsed
    assert (model, name, version) == (("team", "llama"), "llama-aaa-x1", "aaa")
    assert endpoints == [
        EndpointState("http://10.0.0.1:8000"),
        EndpointState("http://10.0.0.2:8000", ready=False, serving=True, terminating=True),
        EndpointState("http://10.0.0.3:8000"),
    ]
    assert slice_endpoints({"metadata": {"name": "other", "labels": {}}}) is None


def test_serving_pods_become_endpoints() -> None:
    pod: dict[str, Any] = {
        "metadata": {"name": "llama-aaa-7f", "namespace": "team",
                     "labels": {"tessera.dev/model": "llama", "tessera.dev/version": "aaa"}},
        "spec": {"containers": [{"name": "server", "ports": [{"name": "http", "containerPort": 8000}]}]},
        "status": {"phase": "Running", "podIP": "127.10.0.7",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert pod_endpoints(pod) == (("team", "llama"), "pod/llama-aaa-7f", "aaa",
                                  [EndpointState("http://127.10.0.7:8000")])
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    parsed = pod_endpoints(pod)
    assert parsed is not None and parsed[3] == [
        EndpointState("http://127.10.0.7:8000", ready=False, serving=True, terminating=True)]
    pod["status"] = {"phase": "Pending"}
    parsed = pod_endpoints(pod)
    assert parsed is not None and parsed[3] == []
    assert pod_endpoints({"metadata": {"name": "x", "labels": {}}}) is None


def test_routes_file_parses_models_versions_and_keys() -> None:
    routes = parse_routes({
        "models": [{"name": "llama", "servedModelName": "llama-3", "aliases": ["l3"], "stable": "v1",
                    "versions": [{"version": "v1", "weight": 90, "endpoints": ["http://127.0.0.1:1/"]},
                                 {"version": "v2", "weight": 10,
                                  "endpoints": [{"url": "http://127.0.0.1:2", "terminating": True}]}]}],
        "apiKeys": [{"name": "team", "key": "secret-1", "models": ["llama"], "rateLimit": "5/s"}],
    })
    assert routes.models[0].traffic == (("v1", 90), ("v2", 10))
    assert routes.groups[(("default", "llama"), "routes-file/v1")] == ("v1", [EndpointState("http://127.0.0.1:1")])
    assert routes.groups[(("default", "llama"), "routes-file/v2")][1][0].terminating
    assert routes.keys[0].digest == digest("secret-1") and routes.keys[0].rate == RateLimit(5, 1.0)
    with pytest.raises(ValueError):
        parse_routes({"models": [{"versions": []}]})


def test_api_key_secrets_and_rates() -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    key = key_from_secret({"metadata": {"name": "k", "namespace": "ns",
                                        "annotations": {"tessera.dev/rate-limit": "2/m"}},
                           "data": {"key": b64("sk-123"), "models": b64("llama, mistral")}})
    assert key == ApiKey("ns/k", digest("sk-123"), frozenset({"llama", "mistral"}), RateLimit(2, 60.0))
    assert "sk-123" not in repr(key)
    assert key_from_secret({"metadata": {}, "data": {}}) is None
    assert parse_rate("10") == RateLimit(10, 60.0) and parse_rate(None) is None
    with pytest.raises(ValueError):
        parse_rate("fast")
    bucket = TokenBucket(RateLimit(2, 60.0), stamp=0.0)
    assert bucket.take(0.0) == 0 and bucket.take(0.0) == 0
    assert bucket.take(0.0) == pytest.approx(30.0)
    assert bucket.take(30.0) == 0


def test_scraped_load_parses_vllm_gauges() -> None:
    text = (
        "# HELP vllm:num_requests_waiting Number of requests waiting.\n"
        'vllm:num_requests_waiting{engine="0",model_name="m"} 3.0\n'
        'vllm:num_requests_running{engine="0",model_name="m"} 9.0\n'
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.42 1700000000\n'
    )
    assert parse_load(text) == (3.0, 0.42)
    assert parse_load("vllm:num_requests_waiting 2\n") == (2.0, None)
    assert parse_load("") == (None, None)
