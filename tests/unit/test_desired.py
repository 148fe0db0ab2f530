"""The pure builders of desired state: names, labels, owner references, GPU scheduling, probes,
restricted security, LeaderWorkerSets for multi-node replicas, and the version hash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tessera_operator.api.v1alpha1 import Model, ModelSpec, ResolvedPlan
from tessera_operator.desired import (
    DesiredSettings,
    ModelRef,
    ObjectKey,
    WorkloadPlan,
    desired_objects,
    version_hash,
)
from tessera_operator.desired import labels as L
from tessera_operator.desired.pod import model_path, startup_budget_seconds

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
Json = dict[str, Any]
REF = ModelRef("llama-3-1-8b", "team-a", "0b3c2d1e-aaaa-bbbb-cccc-000000000001")


def example(name: str) -> Model:
    return Model.model_validate(yaml.safe_load((EXAMPLES / name).read_text()))


def gpu_plan(gpus: int = 1, nodes: int = 1, load: float = 90.0, products: tuple[str, ...] = ("NVIDIA-H100-80GB-HBM3",)) -> WorkloadPlan:
    return WorkloadPlan(
        ResolvedPlan(accelerator="H100-80GB", gpus_per_replica=gpus, tensor_parallel=gpus // nodes,
                     pipeline_parallel=nodes, nodes_per_replica=nodes, max_model_len=16384,
                     gpu_memory_utilization=0.9, quantization="bf16", kv_cache_dtype="auto",
                     estimated_load_seconds=load, summary="test plan"),
        cpu="8", memory="64Gi", gpu_products=products,
    )


def cpu_plan() -> WorkloadPlan:
    return WorkloadPlan(ResolvedPlan(accelerator="cpu", max_model_len=2048, estimated_load_seconds=20),
                        cpu="1", memory="2Gi")


def by_kind(objects: list[Json]) -> dict[str, list[Json]]:
    out: dict[str, list[Json]] = {}
    for obj in objects:
        out.setdefault(obj["kind"], []).append(obj)
    return out


def pod_spec_of(workload: Json) -> Json:
    return workload["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def engine_of(pod_spec: Json) -> Json:
    return next(c for c in pod_spec["containers"] if c["name"] == "engine")


# ---------------------------------------------------------------- version hash

def test_version_hash_is_short_stable_and_ignores_what_does_not_define_a_version() -> None:
    spec = example("llama-3.1-8b-gpu.yaml").spec
    first = version_hash(spec)
    assert len(first) == 10 and all(c in "0123456789abcdef" for c in first)
    assert version_hash(spec.to_api()) == first  # wire form and typed form agree
    rescaled = spec.model_copy(deep=True)
    rescaled.autoscaling.max_replicas = 3
    rescaled.replicas = 2
    rescaled.autoscaling.min_replicas = 2
    assert version_hash(rescaled) == first


@pytest.mark.parametrize("change", [
    lambda s: setattr(s.source, "revision", "another-commit"),
    lambda s: setattr(s.source, "uri", "hf://meta-llama/Llama-3.1-8B"),
    lambda s: s.engine.args.append("--enable-prefix-caching"),
    lambda s: s.engine.env.update({"VLLM_LOGGING_LEVEL": "DEBUG"}),
    lambda s: setattr(s.engine, "image", "registry.example/vllm:custom"),
    lambda s: setattr(s.placement, "max_model_len", 8192),
    lambda s: setattr(s.placement, "tensor_parallel", 2),
])
def test_version_hash_changes_with_each_version_defining_field(change: Any) -> None:
    spec = example("llama-3.1-8b-gpu.yaml").spec
    changed = spec.model_copy(deep=True)
    change(changed)
    assert version_hash(changed) != version_hash(spec)


def test_version_hash_does_not_move_when_an_empty_default_appears() -> None:
    spec = example("smollm2-cpu.yaml").spec.to_api()
    with_empty = {**spec, "placement": {**spec["placement"], "nodeSelector": {}, "tolerations": []}}
    assert version_hash(with_empty) == version_hash(spec)


# ---------------------------------------------------------------- objects, names, labels, owners

def test_single_node_gpu_model_becomes_a_deployment_and_two_services() -> None:
    spec = example("llama-3.1-8b-gpu.yaml").spec
    version = version_hash(spec)
    objects = desired_objects(spec, REF, version, gpu_plan(), 1, DesiredSettings())
    kinds = by_kind(objects)
    assert sorted(kinds) == ["Deployment", "Service"]
    name = f"{REF.name}-{version}"
    assert kinds["Deployment"][0]["metadata"]["name"] == name
    assert sorted(s["metadata"]["name"] for s in kinds["Service"]) == sorted([name, REF.name])
    for obj in objects:
        meta = obj["metadata"]
        assert meta["namespace"] == REF.namespace
        assert meta["ownerReferences"] == [{
            "apiVersion": "tessera.dev/v1alpha1", "kind": "Model", "name": REF.name, "uid": REF.uid,
            "controller": True, "blockOwnerDeletion": True,
        }]
        assert meta["labels"][L.NAME] == "tessera-model"
        assert meta["labels"][L.INSTANCE] == REF.name
        assert meta["labels"][L.MANAGED_BY] == "tessera"
        assert meta["labels"][L.MODEL] == REF.name


def test_serving_pods_carry_the_contract_labels_and_services_select_them() -> None:
    spec = example("llama-3.1-8b-gpu.yaml").spec
    version = version_hash(spec)
    kinds = by_kind(desired_objects(spec, REF, version, gpu_plan(), 1, DesiredSettings()))
    deployment = kinds["Deployment"][0]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for key, value in {
        "app.kubernetes.io/name": "tessera-model", "app.kubernetes.io/instance": REF.name,
        "app.kubernetes.io/version": version, "app.kubernetes.io/managed-by": "tessera",
        "app.kubernetes.io/component": "server", "tessera.dev/model": REF.name, "tessera.dev/version": version,
    }.items():
        assert pod_labels[key] == value
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    services = {s["metadata"]["name"]: s for s in kinds["Service"]}
    per_version = services[f"{REF.name}-{version}"]
    assert per_version["spec"]["selector"].items() <= pod_labels.items()
    assert per_version["metadata"]["labels"]["tessera.dev/version"] == version  # mirrored onto EndpointSlices
    assert per_version["spec"]["ports"][0] == {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    per_model = services[REF.name]
    assert per_model["spec"]["selector"].items() <= pod_labels.items()
    assert "tessera.dev/version" not in per_model["spec"]["selector"]


def test_builders_are_deterministic() -> None:
    spec = example("llama-3.1-8b-gpu.yaml").spec
    version = version_hash(spec)
    first = desired_objects(spec, REF, version, gpu_plan(), 2, DesiredSettings())
    second = desired_objects(spec.model_copy(deep=True), REF, version, gpu_plan(), 2, DesiredSettings())
    assert first == second
    assert len({ObjectKey.of(o) for o in first}) == len(first)


def test_pod_disruption_budget_only_with_more_than_one_replica() -> None:
    spec = example("llama-3.1-8b-gpu.yaml").spec
    version = version_hash(spec)
    assert "PodDisruptionBudget" not in by_kind(desired_objects(spec, REF, version, gpu_plan(), 1, DesiredSettings()))
    pdb = by_kind(desired_objects(spec, REF, version, gpu_plan(), 3, DesiredSettings()))["PodDisruptionBudget"][0]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == {"tessera.dev/model": REF.name, "tessera.dev/version": version}


# ---------------------------------------------------------------- pod template

def test_gpu_pod_asks_for_its_gpus_on_the_chosen_product_and_tolerates_gpu_taints() -> None:
    spec = example("llama-3.1-70b-sharded.yaml").spec
    plan = gpu_plan(gpus=4, products=("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-SXM5-80GB"))
    deployment = by_kind(desired_objects(spec, REF, version_hash(spec), plan, 1, DesiredSettings()))["Deployment"][0]
    pod = pod_spec_of(deployment)
    engine = engine_of(pod)
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert engine["resources"]["requests"]["nvidia.com/gpu"] == "4"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                             "values": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-SXM5-80GB"]}]}]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    args = engine["args"]
    assert args[0] == "vllm"
    assert args[args.index("--tensor-parallel-size") + 1] == "4"
    assert args[args.index("--max-model-len") + 1] == "16384"
    assert "--quantization" not in args  # bf16 is a dtype, not a vLLM quantization
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in engine["volumeMounts"]


def test_weights_are_fetched_by_an_init_container_and_credentials_are_a_file() -> None:
    spec = example("llama-3.1-8b-gpu.yaml").spec
    pod = pod_spec_of(by_kind(desired_objects(spec, REF, version_hash(spec), gpu_plan(), 1, DesiredSettings()))["Deployment"][0])
    fetch = pod["initContainers"][0]
    assert fetch["args"][:5] == ["fetch", "--source", spec.source.uri, "--dest", "/models"]
    assert fetch["args"][fetch["args"].index("--revision") + 1] == spec.source.revision
    credentials = fetch["args"][fetch["args"].index("--credentials-file") + 1]
    assert credentials.startswith("/var/run/secrets/tessera/")
    secret = next(v for v in pod["volumes"] if "secret" in v)["secret"]
    assert secret["secretName"] == "hf-token"
    assert secret["items"] == [{"key": "token", "path": "credentials"}]
    for container in pod["initContainers"] + pod["containers"]:  # never an environment variable
        for env in container.get("env", []):
            assert "secretKeyRef" not in env.get("valueFrom", {})
    weights = next(v for v in pod["volumes"] if v["name"] == "weights")
    assert weights == {"name": "weights", "emptyDir": {}}
    engine_mount = next(m for m in engine_of(pod)["volumeMounts"] if m["name"] == "weights")
    assert engine_mount["readOnly"] is True


def test_a_weights_cache_claim_replaces_the_empty_dir_with_a_folder_per_source() -> None:
    spec = example("llama-3.1-8b-gpu.yaml").spec
    settings = DesiredSettings(weights_cache_claim="model-cache")
    pod = pod_spec_of(by_kind(desired_objects(spec, REF, version_hash(spec), gpu_plan(), 1, settings))["Deployment"][0])
    weights = next(v for v in pod["volumes"] if v["name"] == "weights")
    assert weights["persistentVolumeClaim"] == {"claimName": "model-cache"}
    sub_paths = {m["subPath"] for c in pod["initContainers"] + pod["containers"] for m in c["volumeMounts"]
                 if m["name"] == "weights"}
    assert len(sub_paths) == 1


def test_startup_probe_budget_grows_with_the_load_estimate() -> None:
    settings = DesiredSettings()
    small, big = gpu_plan(load=20), gpu_plan(gpus=4, load=900)
    assert startup_budget_seconds(small, settings) == settings.startup_budget_floor_seconds
    assert startup_budget_seconds(big, settings) >= 900 * settings.startup_budget_factor
    spec = example("llama-3.1-70b-sharded.yaml").spec
    engine = engine_of(pod_spec_of(by_kind(desired_objects(spec, REF, "v", big, 1, settings))["Deployment"][0]))
    startup = engine["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 2700
    assert engine["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert engine["livenessProbe"]["httpGet"]["path"] == "/health"


def _restricted(context: Json | None, pod_context: Json) -> bool:
    merged = {**pod_context, **(context or {})}
    return (
        merged.get("runAsNonRoot") is True
        and merged.get("runAsUser", 0) != 0
        and (context or {}).get("allowPrivilegeEscalation") is False
        and (context or {}).get("capabilities", {}).get("drop") == ["ALL"]
        and not (context or {}).get("capabilities", {}).get("add")
        and merged.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost")
        and not merged.get("privileged")
    )


@pytest.mark.parametrize("example_name", ["llama-3.1-8b-gpu.yaml", "smollm2-cpu.yaml"])
def test_every_container_meets_the_restricted_pod_security_standard(example_name: str) -> None:
    spec = example(example_name).spec
    plan = cpu_plan() if example_name.startswith("smollm2") else gpu_plan()
    pod = pod_spec_of(by_kind(desired_objects(spec, REF, "v", plan, 1, DesiredSettings()))["Deployment"][0])
    assert pod["securityContext"]["runAsUser"] == 1000
    for container in pod["initContainers"] + pod["containers"]:
        assert _restricted(container.get("securityContext"), pod["securityContext"]), container["name"]
    allowed = {"emptyDir", "secret", "persistentVolumeClaim", "configMap", "downwardAPI", "projected", "ephemeral", "csi"}
    for volume in pod["volumes"]:
        assert set(volume) - {"name"} <= allowed
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")


def test_graceful_termination_covers_the_drain_and_pod_ip_comes_from_the_downward_api() -> None:
    spec = example("llama-3.1-8b-gpu.yaml").spec
    settings = DesiredSettings(drain_seconds=120)
    pod = pod_spec_of(by_kind(desired_objects(spec, REF, "v", gpu_plan(), 1, settings))["Deployment"][0])
    assert pod["terminationGracePeriodSeconds"] > 120
    engine = engine_of(pod)
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in engine["env"]
    assert engine["args"][engine["args"].index("--host") + 1] == "$(POD_IP)"
    assert engine["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_cpu_model_serves_with_the_torch_engine_on_the_local_node() -> None:
    spec = example("smollm2-cpu.yaml").spec
    settings = DesiredSettings(cpu_node_selector={"tessera.dev/local-node": "true"})
    pod = pod_spec_of(by_kind(desired_objects(spec, REF, "v", cpu_plan(), 1, settings))["Deployment"][0])
    engine = engine_of(pod)
    assert engine["args"][:3] == ["serve", "--model", "/models/SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert engine["args"][engine["args"].index("--served-model-name") + 1] == "smollm2-135m-instruct"
    assert engine["args"][engine["args"].index("--max-model-len") + 1] == "2048"
    assert engine["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi", "cpu": "1"}}
    assert "nvidia.com/gpu" not in str(engine["resources"])
    assert {"key": "tessera.dev/local-node", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"tessera.dev/local-node": "true"}
    expression = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert expression == [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "DoesNotExist"}]}]


def test_model_path_points_at_the_gguf_file_or_the_weights_folder() -> None:
    assert model_path(example("smollm2-cpu.yaml").spec) == "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert model_path(example("llama-3.1-8b-gpu.yaml").spec) == "/models"
    spec = ModelSpec.model_validate({"source": {"uri": "hf://org/repo-GGUF", "format": "gguf", "file": "m.Q4.gguf"},
                                     "engine": {"name": "transformers"}})
    assert model_path(spec) == "/models/m.Q4.gguf"


# ---------------------------------------------------------------- multi-node

def test_a_replica_spanning_nodes_becomes_a_leader_worker_set() -> None:
    spec = example("llama-3.1-70b-sharded.yaml").spec
    plan = gpu_plan(gpus=16, nodes=2)
    objects = by_kind(desired_objects(spec, REF, "v1", plan, 2, DesiredSettings()))
    assert "Deployment" not in objects
    lws = objects["LeaderWorkerSet"][0]
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    assert lws["metadata"]["name"] == f"{REF.name}-v1"
    template = lws["spec"]["leaderWorkerTemplate"]
    assert lws["spec"]["replicas"] == 2 and template["size"] == 2
    leader, worker = template["leaderTemplate"], template["workerTemplate"]
    for pod_template in (leader, worker):
        engine = engine_of(pod_template["spec"])
        assert engine["resources"]["limits"]["nvidia.com/gpu"] == "8"  # 16 GPUs over 2 nodes
        args = engine["args"]
        assert args[0] == "vllm"
        assert args[args.index("--pipeline-parallel-size") + 1] == "2"
        assert "--master-port" in args
    assert "readinessProbe" in engine_of(leader["spec"])
    assert "readinessProbe" not in engine_of(worker["spec"])  # headless workers serve no HTTP
    assert leader["metadata"]["labels"]["app.kubernetes.io/component"] == "server"
    assert worker["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    service = next(s for s in objects["Service"] if s["metadata"]["name"] == f"{REF.name}-v1")
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "server"  # leaders only


def test_the_plan_is_recorded_on_the_workload_and_read_back() -> None:
    plan = gpu_plan(gpus=2)
    spec = example("llama-3.1-8b-gpu.yaml").spec
    deployment = by_kind(desired_objects(spec, REF, "v", plan, 1, DesiredSettings()))["Deployment"][0]
    text = deployment["metadata"]["annotations"][L.PLAN]
    assert WorkloadPlan.from_annotation(text) == plan
    assert WorkloadPlan.from_annotation("{not json") is None
    assert WorkloadPlan.from_annotation(None) is None
