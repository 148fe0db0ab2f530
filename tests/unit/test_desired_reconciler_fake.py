"""The reconciler's orchestration against an in-memory API (no cluster): what it writes on the first
run, that a second run writes nothing, how status follows the workload, and a surge rollout."""

from __future__ import annotations

import builtins
import copy
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from tessera_operator.desired import DesiredSettings, version_hash
from tessera_operator.desired.build import ObjectKey
from tessera_operator.k8s import NotFound
from tessera_operator.k8s.events import EventRecorder
from tessera_operator.k8s.resources import LEADER_WORKER_SET, MODEL, NODE, Resource, resource_of
from tessera_operator.reconcile import Reconciler

Json = dict[str, Any]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMESPACE = "team-a"


def _merged(target: Json, patch: Json) -> Json:
    """A JSON merge patch (RFC 7386), as the apiserver applies it: objects merge, null removes."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _matches(obj: Json, selector: str | None) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeKube:
    """Just enough of the API: objects by (resource, namespace, name), SSA as replace, counted writes."""

    def __init__(self, nodes: list[Json], serve_lws: bool = True) -> None:
        self.objects: dict[tuple[str, str | None, str], Json] = {}
        self.writes: list[str] = []
        self.events: list[Json] = []
        self.status_patches: list[Json] = []
        self.versions = itertools.count(1)
        self.serve_lws = serve_lws
        for node in nodes:
            self.objects[("nodes", None, node["metadata"]["name"])] = node

    def _key(self, resource: Resource, namespace: str | None, name: str) -> tuple[str, str | None, str]:
        return (resource.plural, namespace if resource.namespaced else None, name)

    def get(self, resource: Resource, namespace: str | None, name: str) -> Json | None:
        found = self.objects.get(self._key(resource, namespace, name))
        return copy.deepcopy(found) if found else None

    def list(self, resource: Resource, namespace: str | None = None, label_selector: str | None = None) -> list[Json]:
        if resource is LEADER_WORKER_SET and not self.serve_lws:
            raise NotFound(404, "NotFound", "the server could not find the requested resource")
        return [copy.deepcopy(o) for (plural, ns, _), o in sorted(self.objects.items(), key=lambda i: str(i[0]))
                if plural == resource.plural and (namespace is None or ns == namespace) and _matches(o, label_selector)]

    def apply(self, obj: Json, force: bool = True) -> Json:
        resource = resource_of(obj)
        meta = obj["metadata"]
        key = self._key(resource, meta.get("namespace"), meta["name"])
        before = self.objects.get(key)
        stored = copy.deepcopy(obj)
        stored["metadata"]["uid"] = (before or {}).get("metadata", {}).get("uid", f"uid-{meta['name']}")
        stored["metadata"]["resourceVersion"] = str(next(self.versions))
        stored["metadata"]["generation"] = (before or {}).get("metadata", {}).get("generation", 0) + 1
        stored["status"] = (before or {}).get("status", {})
        self.objects[key] = stored
        self.writes.append(f"apply {obj['kind']}/{meta['name']}")
        return copy.deepcopy(stored)

    def merge_patch(self, resource: Resource, namespace: str | None, name: str, patch: Json,
                    subresource: str | None = None) -> Json:
        obj = self.objects[self._key(resource, namespace, name)]
        if "status" in patch:
            self.status_patches.append(copy.deepcopy(patch["status"]))
            obj["status"] = _merged(obj.get("status") or {}, patch["status"])
        obj["metadata"]["resourceVersion"] = str(next(self.versions))
        self.writes.append(f"patch {resource.kind}/{name}/{subresource or ''}")
        return copy.deepcopy(obj)

    def create(self, resource: Resource, namespace: str | None, obj: Json) -> Json:
        self.events.append(obj)
        return obj

    def delete(self, resource: Resource, namespace: str | None, name: str, uid: str | None = None) -> bool:
        self.writes.append(f"delete {resource.kind}/{name}")
        return self.objects.pop(self._key(resource, namespace, name), None) is not None

    # test helpers
    def add_model(self, manifest: Json) -> None:
        model = copy.deepcopy(manifest)
        model["metadata"].update({"namespace": NAMESPACE, "uid": "model-uid", "generation": 1})
        self.objects[("models", NAMESPACE, model["metadata"]["name"])] = model

    def model(self, name: str) -> Json:
        return self.objects[("models", NAMESPACE, name)]

    def set_ready(self, kind_plural: str, name: str, ready: int) -> None:
        obj = self.objects[(kind_plural, NAMESPACE, name)]
        replicas = obj["spec"]["replicas"]
        obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "replicas": replicas,
                         "updatedReplicas": replicas, "readyReplicas": ready}

    def kinds(self, plural: str) -> builtins.list[str]:
        return sorted(name for (p, _, name) in self.objects if p == plural)


def h100_node(name: str) -> Json:
    return {"metadata": {"name": name, "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
            "status": {"allocatable": {"cpu": "192", "memory": "2000Gi", "nvidia.com/gpu": "8"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


@pytest.fixture
def fake() -> FakeKube:
    return FakeKube([h100_node("h100-0"), h100_node("h100-1")])


def reconciler(fake: FakeKube) -> Reconciler:
    kube: Any = fake
    return Reconciler(kube, DesiredSettings(), EventRecorder(kube, "test"), clock=lambda: "2025-01-01T00:00:00Z")


def manifest() -> Json:
    data = yaml.safe_load((EXAMPLES / "llama-3.1-8b-gpu.yaml").read_text())
    return data  # type: ignore[no-any-return]


def conditions(model: Json) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in model["status"]["conditions"]}


def test_first_reconcile_creates_the_objects_and_a_second_writes_nothing(fake: FakeKube) -> None:
    fake.add_model(manifest())
    version = version_hash(manifest()["spec"])
    result = reconciler(fake).reconcile(NAMESPACE, "llama-3-1-8b")
    assert result is not None and result.status_written
    assert fake.kinds("deployments") == [f"llama-3-1-8b-{version}"]
    assert fake.kinds("services") == sorted(["llama-3-1-8b", f"llama-3-1-8b-{version}"])
    status = fake.model("llama-3-1-8b")["status"]
    assert status["plan"]["accelerator"] == "H100-80GB"
    assert status["stable"]["version"] == version and status["observedGeneration"] == 1
    assert conditions(fake.model("llama-3-1-8b"))["Ready"] == ("False", "Loading")
    assert [e["reason"] for e in fake.events] == ["Planned", "Loading"]
    fake.writes.clear()
    fake.events.clear()
    again = reconciler(fake).reconcile(NAMESPACE, "llama-3-1-8b")
    assert again is not None and not again.status_written and not again.applied.changed
    assert fake.writes == [] and fake.events == []


def test_status_follows_the_workload_to_ready_with_one_status_write(fake: FakeKube) -> None:
    fake.add_model(manifest())
    version = version_hash(manifest()["spec"])
    run = reconciler(fake)
    run.reconcile(NAMESPACE, "llama-3-1-8b")
    fake.set_ready("deployments", f"llama-3-1-8b-{version}", 1)
    fake.writes.clear()
    run.reconcile(NAMESPACE, "llama-3-1-8b")
    assert fake.writes == ["patch Model/llama-3-1-8b/status"]
    model = fake.model("llama-3-1-8b")
    assert conditions(model) == {"Ready": ("True", "Available"), "Progressing": ("False", "Available"),
                                 "Degraded": ("False", "AsExpected")}
    assert model["status"]["readyReplicas"] == 1
    assert [e["reason"] for e in fake.events][-1] == "Available"


def test_a_new_revision_surges_then_replaces_the_old_version(fake: FakeKube) -> None:
    fake.add_model(manifest())
    old = version_hash(manifest()["spec"])
    run = reconciler(fake)
    run.reconcile(NAMESPACE, "llama-3-1-8b")
    fake.set_ready("deployments", f"llama-3-1-8b-{old}", 1)
    run.reconcile(NAMESPACE, "llama-3-1-8b")
    model = fake.model("llama-3-1-8b")
    model["spec"]["source"]["revision"] = "another"
    model["metadata"]["generation"] = 2
    new = version_hash(model["spec"])
    run.reconcile(NAMESPACE, "llama-3-1-8b")
    assert fake.kinds("deployments") == sorted([f"llama-3-1-8b-{old}", f"llama-3-1-8b-{new}"])
    status = fake.model("llama-3-1-8b")["status"]
    assert (status["stable"]["version"], status["candidate"]["version"]) == (old, new)
    assert status["traffic"] == [{"version": old, "weight": 100}]
    assert conditions(fake.model("llama-3-1-8b"))["Progressing"] == ("True", "RollingOut")
    fake.set_ready("deployments", f"llama-3-1-8b-{new}", 1)
    run.reconcile(NAMESPACE, "llama-3-1-8b")
    assert fake.kinds("deployments") == [f"llama-3-1-8b-{new}"]
    assert fake.kinds("services") == sorted(["llama-3-1-8b", f"llama-3-1-8b-{new}"])
    status = fake.model("llama-3-1-8b")["status"]
    assert status["stable"] == {"version": new, "revision": "another", "since": "2025-01-01T00:00:00Z"}
    assert "candidate" not in status and status["traffic"] == [{"version": new, "weight": 100}]


def test_bad_spec_is_degraded_not_a_crash(fake: FakeKube) -> None:
    broken = manifest()
    broken["spec"]["placement"]["tensorParallel"] = "eight"
    fake.add_model(broken)
    reconciler(fake).reconcile(NAMESPACE, "llama-3-1-8b")
    model = fake.model("llama-3-1-8b")
    assert conditions(model)["Degraded"] == ("True", "InvalidSpec")
    assert "tensorParallel" in next(c["message"] for c in model["status"]["conditions"] if c["type"] == "Degraded")
    assert fake.kinds("deployments") == []


def test_multi_node_plan_without_the_leader_worker_set_api_says_so() -> None:
    fake = FakeKube([{**h100_node(f"l4-{i}"), "metadata": {"name": f"l4-{i}", "labels": {"nvidia.com/gpu.product": "NVIDIA-L4"}},
                     "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "1"},
                                "conditions": [{"type": "Ready", "status": "True"}]}} for i in range(4)],
                    serve_lws=False)
    spread = manifest()
    spread["spec"]["placement"] = {"accelerators": ["L4"], "pipelineParallel": 2, "maxModelLen": 8192}
    del spread["spec"]["slo"]  # two L4s in a pipeline miss its 50 ms per token
    fake.add_model(spread)
    reconciler(fake).reconcile(NAMESPACE, "llama-3-1-8b")
    assert conditions(fake.model("llama-3-1-8b"))["Degraded"] == ("True", "LeaderWorkerSetMissing")
    fake.serve_lws = True
    reconciler(fake).reconcile(NAMESPACE, "llama-3-1-8b")
    assert len(fake.kinds("leaderworkersets")) == 1


def test_objects_keys_are_unique_across_kinds() -> None:
    assert ObjectKey("v1", "Service", "a") != ObjectKey("apps/v1", "Deployment", "a")
    assert MODEL.path("ns", "m", "status") == "/apis/tessera.dev/v1alpha1/namespaces/ns/models/m/status"
    assert NODE.path(None, "n1") == "/api/v1/nodes/n1"
