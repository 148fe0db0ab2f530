"""The pure decisions around the builders: when to write, what the conditions say, which version
serves, what a pod's state means, how nodes become planner offers, and the operator's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tessera_operator.api.v1alpha1 import Condition, Model, ModelStatus
from tessera_operator.k8s.compare import desired_hash, is_subset, needs_apply, with_applied_hash
from tessera_operator.k8s.status import status_patch
from tessera_operator.reconcile.conditions import Assessment, ConditionValue, assess, merge, transitions
from tessera_operator.reconcile.diagnose import Problem, pod_problems, version_problems, workload_problems
from tessera_operator.reconcile.planning import inventory_from_nodes, plan_version
from tessera_operator.reconcile.report import condition_events
from tessera_operator.reconcile.versions import SurgeStrategy, VersionContext, VersionState
from tessera_operator.settings import OperatorSettings

Json = dict[str, Any]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> Model:
    return Model.model_validate(yaml.safe_load((EXAMPLES / name).read_text()))


# ---------------------------------------------------------------- write only when needed

DESIRED: Json = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "m-abc", "namespace": "ns", "labels": {"a": "b"}},
    "spec": {"replicas": 2, "template": {"spec": {"containers": [
        {"name": "engine", "resources": {"requests": {"cpu": "0.5", "memory": "2Gi"}}}]}}},
}


def live_copy(desired: Json) -> Json:
    """What the apiserver returns after applying: defaults added, quantities normalised."""
    live = with_applied_hash(desired)
    live["metadata"]["resourceVersion"] = "42"
    live["metadata"]["managedFields"] = [{"manager": "tessera-operator"}]
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["resources"]["requests"]["cpu"] = "500m"
    container["imagePullPolicy"] = "IfNotPresent"
    container["terminationMessagePath"] = "/dev/termination-log"
    live["status"] = {"readyReplicas": 2}
    return live


def test_nothing_is_written_when_the_live_object_matches() -> None:
    assert not needs_apply(DESIRED, live_copy(DESIRED))


def test_a_missing_object_is_written() -> None:
    assert needs_apply(DESIRED, None)


def test_a_changed_desired_object_is_written_even_when_a_field_was_only_removed() -> None:
    live = live_copy(DESIRED)
    smaller = {**DESIRED, "metadata": {**DESIRED["metadata"], "labels": {}}}
    assert is_subset(with_applied_hash(smaller)["spec"], live["spec"])  # the subset check alone cannot see it
    assert needs_apply(smaller, live)  # the hash does


def test_drift_of_an_owned_field_is_written_back() -> None:
    live = live_copy(DESIRED)
    live["spec"]["replicas"] = 5
    assert needs_apply(DESIRED, live)


def test_an_object_being_deleted_is_left_alone() -> None:
    live = live_copy(DESIRED)
    live["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    live["spec"]["replicas"] = 5
    assert not needs_apply(DESIRED, live)


def test_quantities_compare_by_value_and_lists_by_position() -> None:
    assert is_subset({"m": "1Gi"}, {"m": "1024Mi"})
    assert not is_subset({"m": "1Gi"}, {"m": "1G"})
    assert not is_subset({"l": [1, 2]}, {"l": [1, 2, 3]})
    assert not is_subset({"b": True}, {"b": 1})
    assert desired_hash(DESIRED) == desired_hash(with_applied_hash(DESIRED))


def test_status_patch_is_none_when_unchanged_and_nulls_removed_fields() -> None:
    old = {"replicas": 1, "candidate": {"version": "x"}, "conditions": [{"type": "Ready"}]}
    assert status_patch(old, dict(old)) is None
    assert status_patch(old, {"replicas": 2, "conditions": [{"type": "Ready"}]}) == {"replicas": 2, "candidate": None}


# ---------------------------------------------------------------- conditions

def values(conditions: list[ConditionValue]) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in conditions}


def test_ready_and_converged() -> None:
    stable = VersionState("v1", replicas=2, ready_replicas=2)
    result = values(assess(Assessment(2, stable, None)))
    assert result == {"Ready": ("True", "Available"), "Progressing": ("False", "Available"),
                      "Degraded": ("False", "AsExpected")}


def test_plan_infeasible_without_a_running_version() -> None:
    problem = Problem("PlanInfeasible", "No plan fits. Closest: 4x L4 ...")
    conditions = assess(Assessment(1, None, None, (problem,)))
    assert values(conditions) == {"Ready": ("False", "PlanInfeasible"), "Progressing": ("False", "PlanInfeasible"),
                                  "Degraded": ("True", "PlanInfeasible")}
    assert "No plan fits" in conditions[2].message


def test_loading_is_progress_not_degradation() -> None:
    loading = Problem("Loading", "pod m-1: loading the model")
    result = values(assess(Assessment(1, VersionState("v1", 1, 0), None, (loading,))))
    assert result == {"Ready": ("False", "Loading"), "Progressing": ("True", "Loading"),
                      "Degraded": ("False", "AsExpected")}


def test_a_serving_model_with_an_unschedulable_extra_replica_is_ready_but_degraded() -> None:
    problem = Problem("Unschedulable", "pod m-3 cannot be scheduled: 0/11 nodes are available: Insufficient nvidia.com/gpu")
    result = values(assess(Assessment(3, VersionState("v1", 3, 2, up_to_date=False), None, (problem,))))
    assert result == {"Ready": ("True", "Available"), "Progressing": ("False", "Unschedulable"),
                      "Degraded": ("True", "Unschedulable")}


def test_rollout_in_progress_and_scale_to_zero() -> None:
    rolling = assess(Assessment(1, VersionState("v1", 1, 1), VersionState("v2", 1, 0), ()))
    assert values(rolling)["Progressing"] == ("True", "RollingOut")
    assert values(rolling)["Ready"] == ("True", "Available")
    zero = assess(Assessment(0, VersionState("v1", 0, 0), None, ()))
    assert values(zero)["Ready"] == ("True", "ScaledToZero")


def test_transition_times_survive_unchanged_statuses_and_transitions_are_reported() -> None:
    old = [Condition(type="Ready", status="False", reason="Loading", message="", last_transition_time="2025-01-01T00:00:00Z")]
    new = [ConditionValue("Ready", "False", "Unschedulable", "x"), ConditionValue("Degraded", "True", "Unschedulable", "x")]
    merged = merge(old, new, 3, "2025-01-02T00:00:00Z")
    assert merged[0].last_transition_time == "2025-01-01T00:00:00Z"  # status unchanged, reason changed
    assert merged[1].last_transition_time == "2025-01-02T00:00:00Z"
    assert all(c.observed_generation == 3 for c in merged)
    assert [c.type for c in transitions(old, new)] == ["Ready", "Degraded"]
    events = condition_events(ModelStatus(conditions=old), new)
    assert [(e.type, e.reason) for e in events] == [("Warning", "Unschedulable")]  # one event, not two


# ---------------------------------------------------------------- versions

def context(desired: str, versions: dict[str, VersionState], stable: str | None, feasible: bool = True) -> VersionContext:
    spec = example("llama-3.1-8b-gpu.yaml").spec
    return VersionContext(spec, ModelStatus(), desired, feasible, versions, stable)


def test_first_version_becomes_stable_with_all_traffic() -> None:
    decision = SurgeStrategy().decide(context("v1", {}, None))
    assert (decision.stable, decision.candidate, decision.run_desired, decision.traffic) == ("v1", None, True, (("v1", 100),))


def test_new_version_surges_beside_the_stable_one_then_replaces_it() -> None:
    stable = VersionState("v1", 2, 2)
    starting = SurgeStrategy().decide(context("v2", {"v1": stable}, "v1"))
    assert (starting.stable, starting.candidate, starting.delete, starting.traffic) == ("v1", "v2", (), (("v1", 100),))
    assert [e.reason for e in starting.events] == ["RolloutStarted"]
    half = SurgeStrategy().decide(context("v2", {"v1": stable, "v2": VersionState("v2", 2, 1)}, "v1"))
    assert (half.stable, half.candidate, half.delete) == ("v1", "v2", ())
    done = SurgeStrategy().decide(context("v2", {"v1": stable, "v2": VersionState("v2", 2, 2)}, "v1"))
    assert (done.stable, done.candidate, done.delete, done.traffic) == ("v2", None, ("v1",), (("v2", 100),))


def test_an_infeasible_new_spec_keeps_the_stable_version_serving() -> None:
    decision = SurgeStrategy().decide(context("v3", {"v1": VersionState("v1", 1, 1), "v2": VersionState("v2", 1, 0)},
                                              "v1", feasible=False))
    assert (decision.stable, decision.candidate, decision.run_desired, decision.delete) == ("v1", None, False, ("v2",))


def test_reverting_the_spec_removes_the_abandoned_candidate() -> None:
    decision = SurgeStrategy().decide(context("v1", {"v1": VersionState("v1", 1, 1), "v2": VersionState("v2", 1, 0)}, "v1"))
    assert (decision.stable, decision.candidate, decision.delete) == ("v1", None, ("v2",))


# ---------------------------------------------------------------- pod diagnosis

def pod(name: str = "m-1", **status: Any) -> Json:
    return {"metadata": {"name": name}, "status": status}


def test_unschedulable_pod_carries_the_scheduler_message() -> None:
    message = "0/11 nodes are available: 11 Insufficient nvidia.com/gpu."
    problems = pod_problems(pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                             "message": message}]))
    assert problems[0].reason == "Unschedulable" and message in problems[0].message


def test_failed_fetch_and_crash_loop_and_missing_secret() -> None:
    fetch_failed = pod(initContainerStatuses=[{"name": "fetch-weights", "restartCount": 2,
                                               "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                               "lastState": {"terminated": {"exitCode": 1, "message": "error: 401 Unauthorized"}}}])
    assert [p.reason for p in pod_problems(fetch_failed)] == ["FetchFailed"]
    assert "401 Unauthorized" in pod_problems(fetch_failed)[0].message
    crashing = pod(containerStatuses=[{"name": "engine", "restartCount": 4, "ready": False,
                                       "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                       "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}])
    assert [p.reason for p in pod_problems(crashing)] == ["CrashLooping"]
    assert "OOMKilled" in pod_problems(crashing)[0].message
    no_secret = pod(initContainerStatuses=[{"name": "fetch-weights", "state": {"waiting": {
        "reason": "CreateContainerConfigError", "message": 'secret "hf-token" not found'}}}])
    assert [p.reason for p in pod_problems(no_secret)] == ["ConfigError"]


def test_loading_pod_and_ready_pod() -> None:
    loading = pod(containerStatuses=[{"name": "engine", "ready": False, "started": False, "state": {"running": {}}}])
    assert [p.reason for p in pod_problems(loading)] == ["Loading"]
    ready = pod(containerStatuses=[{"name": "engine", "ready": True, "started": True, "state": {"running": {}}}])
    assert pod_problems(ready) == []


def test_problems_of_a_version_are_deduplicated_and_include_the_workload() -> None:
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no GPU"}
    pods = [pod("m-2", conditions=[unschedulable]), pod("m-1", conditions=[unschedulable])]
    workload = {"kind": "Deployment", "metadata": {"name": "m"}, "status": {"conditions": [
        {"type": "ReplicaFailure", "status": "True", "message": "pods is forbidden: violates PodSecurity"}]}}
    problems = version_problems(workload, pods)
    assert [p.reason for p in problems] == ["PodCreationFailed", "Unschedulable"]
    assert "m-1" in problems[1].message
    assert workload_problems(None) == []


# ---------------------------------------------------------------- nodes to offers, and planning

def node(name: str, product: str | None, gpus: int, ready: bool = True) -> Json:
    labels = {"kubernetes.io/hostname": name} | ({"nvidia.com/gpu.product": product} if product else {})
    allocatable = {"cpu": "192", "memory": "2000Gi"} | ({"nvidia.com/gpu": str(gpus)} if gpus else {})
    return {"metadata": {"name": name, "labels": labels},
            "status": {"allocatable": allocatable,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


NODES = [node("h1", "NVIDIA-H100-80GB-HBM3", 8), node("h2", "NVIDIA-H100-80GB-HBM3", 8),
         node("a1", "NVIDIA-A100-SXM4-80GB", 8), node("l1", "NVIDIA-L4", 1), node("l2", "NVIDIA-L4", 1),
         node("cpu", None, 0), node("down", "NVIDIA-L4", 1, ready=False)]


def test_nodes_become_offers_by_gpu_type_and_count() -> None:
    inventory = inventory_from_nodes(NODES)
    groups = {(g.gpu, g.gpus_per_node): (g.nodes, sorted(g.products)) for g in inventory.groups}
    assert groups == {("H100-80GB", 8): (2, ["NVIDIA-H100-80GB-HBM3"]), ("A100-80GB", 8): (1, ["NVIDIA-A100-SXM4-80GB"]),
                      ("L4", 1): (2, ["NVIDIA-L4"])}
    assert "2 nodes with 8x H100-80GB" in inventory.describe()


def test_the_8b_example_is_planned_onto_a_preferred_gpu_the_cluster_has() -> None:
    outcome = plan_version(example("llama-3.1-8b-gpu.yaml").spec, inventory_from_nodes(NODES))
    assert outcome.workload is not None
    plan = outcome.workload.plan
    assert plan.accelerator == "H100-80GB"  # L4 is cheaper but not in spec.placement.accelerators
    assert outcome.workload.gpu_products == ("NVIDIA-H100-80GB-HBM3",)
    assert plan.gpus_per_replica >= 1 and (plan.estimated_load_seconds or 0) > 0


def test_an_accelerator_the_cluster_lacks_is_infeasible_with_what_it_has() -> None:
    spec = example("llama-3.1-8b-gpu.yaml").spec
    spec.placement.accelerators = ["L40S"]
    outcome = plan_version(spec, inventory_from_nodes(NODES))
    assert outcome.workload is None
    assert "L40S" in outcome.explanation and "H100-80GB" in outcome.explanation


def test_a_model_too_big_for_every_node_pool_is_infeasible_with_the_planner_reasons() -> None:
    spec = example("llama-3.1-70b-sharded.yaml").spec
    spec.placement.accelerators = ["L4"]
    spec.placement.quantization = "none"
    spec.placement.max_model_len = 131072
    outcome = plan_version(spec, inventory_from_nodes(NODES))
    assert outcome.workload is None
    assert "No plan fits" in outcome.explanation


def test_cpu_models_use_the_given_resources() -> None:
    outcome = plan_version(example("smollm2-cpu.yaml").spec, inventory_from_nodes([]))
    assert outcome.workload is not None
    assert (outcome.workload.cpu, outcome.workload.memory, outcome.workload.plan.accelerator) == ("1", "2Gi", "cpu")


# ---------------------------------------------------------------- settings

def test_settings_from_environment() -> None:
    settings = OperatorSettings.from_env({
        "TESSERA_REFRESH_SECONDS": "5", "TESSERA_STANDALONE": "true", "TESSERA_NAMESPACES": "a, b",
        "TESSERA_CPU_NODE_SELECTOR": "tessera.dev/local-node=true", "TESSERA_DRAIN_SECONDS": "30",
    })
    assert settings.refresh_seconds == 5.0 and settings.standalone and settings.namespaces == ("a", "b")
    desired = settings.desired()
    assert desired.cpu_node_selector == {"tessera.dev/local-node": "true"} and desired.drain_seconds == 30
    with pytest.raises(ValueError):
        OperatorSettings.from_env({"TESSERA_STANDALONE": "maybe"})
