"""The pod template of a version: fetch init container, engine container, probes, volumes, scheduling.

Every choice that matters to a person debugging a pod is here: what runs (`tessera-runtime fetch`
then `serve` or `vllm`), where (GPU product affinity, tolerations), with what (GPU limits,
memory-backed /dev/shm, weights volume, credentials as a file) and how it is judged alive
(startup budget from the planner's load estimate, readiness on /ready, liveness on /health).
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from typing import Any, Literal

from tessera_operator.api.v1alpha1 import ModelSpec

from . import labels as L
from .inputs import DesiredSettings, WorkloadPlan
from .versioning import weights_cache_key

Json = dict[str, Any]
PodRole = Literal["server", "leader", "worker"]

MODEL_MOUNT = "/models"
CREDENTIALS_MOUNT = "/var/run/secrets/tessera/source"
CREDENTIALS_FILE = "credentials"
PVC_MOUNT_ROOT = "/mnt/pvc"
CACHE_MOUNT = "/var/cache/tessera"
RUN_AS_USER = 1000
# Plan "quantizations" that are plain dtypes: vLLM gets no --quantization flag for them.
UNQUANTIZED = frozenset({"none", "auto", "bf16", "bfloat16", "fp16", "float16", "half", "fp32", "float32"})


def model_path(spec: ModelSpec) -> str:
    """Path the engine loads: the .gguf file for GGUF sources, the weights folder otherwise."""
    source = spec.source
    if source.format == "gguf":
        uri_name = PurePosixPath(source.uri.split("://", 1)[-1]).name
        if uri_name.endswith(".gguf"):
            return f"{MODEL_MOUNT}/{uri_name}"
        if source.file:
            return f"{MODEL_MOUNT}/{source.file.lstrip('/')}"
    return MODEL_MOUNT


def served_model_name(spec: ModelSpec, model_name: str) -> str:
    """The name clients pass as `model` (spec.servedModelName, else the Model's name)."""
    return spec.served_model_name or model_name


def startup_failure_threshold(plan: WorkloadPlan, settings: DesiredSettings) -> int:
    """Startup-probe attempts: the planner's load estimate times a safety factor, never below the floor."""
    estimate = plan.plan.estimated_load_seconds or 0.0
    budget = max(float(settings.startup_budget_floor_seconds), estimate * settings.startup_budget_factor)
    return max(1, math.ceil(budget / settings.probe_period_seconds))


def startup_budget_seconds(plan: WorkloadPlan, settings: DesiredSettings) -> int:
    """Seconds a server may take to start before it is restarted."""
    return startup_failure_threshold(plan, settings) * settings.probe_period_seconds


def _security_context() -> Json:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security_context() -> Json:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _field_env(name: str, path: str) -> Json:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _weights_mount(settings: DesiredSettings, spec: ModelSpec, read_only: bool) -> Json:
    mount: Json = {"name": "weights", "mountPath": MODEL_MOUNT}
    if settings.weights_cache_claim:
        mount["subPath"] = weights_cache_key(spec.source)
    if read_only:
        mount["readOnly"] = True
    return mount


def _pvc_source_claim(spec: ModelSpec) -> str | None:
    if spec.source.uri.startswith("pvc://"):
        return spec.source.uri[len("pvc://"):].split("/", 1)[0]
    return None


def fetch_container(spec: ModelSpec, settings: DesiredSettings) -> Json:
    """The init container that materialises the weights into the weights volume."""
    source = spec.source
    args = ["fetch", "--source", source.uri, "--dest", MODEL_MOUNT]
    if source.revision and source.uri.startswith("hf://"):
        args += ["--revision", source.revision]
    mounts = [_weights_mount(settings, spec, read_only=False)]
    if source.credentials_secret_ref is not None:
        args += ["--credentials-file", f"{CREDENTIALS_MOUNT}/{CREDENTIALS_FILE}"]
        mounts.append({"name": "source-credentials", "mountPath": CREDENTIALS_MOUNT, "readOnly": True})
    claim = _pvc_source_claim(spec)
    if claim:
        mounts.append({"name": "source-pvc", "mountPath": f"{PVC_MOUNT_ROOT}/{claim}", "readOnly": True})
        args += ["--pvc-root", PVC_MOUNT_ROOT]
    return {
        "name": "fetch-weights",
        "image": spec.engine.image or settings.runtime_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": args,
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        "securityContext": _security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }


def _cpu_threads(cpu: str) -> int:
    value = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, math.ceil(value))


def engine_args(spec: ModelSpec, model_name: str, plan: WorkloadPlan, settings: DesiredSettings) -> list[str]:
    """Arguments of the engine container (`tessera-runtime serve` on CPU, `tessera-runtime vllm` on GPUs)."""
    resolved = plan.plan
    common = ["--model", model_path(spec), "--served-model-name", served_model_name(spec, model_name)]
    if plan.on_cpu:
        args = ["serve", *common, "--host", "$(POD_IP)", "--port", str(L.HTTP_PORT),
                "--drain-timeout", str(settings.drain_seconds), "--threads", str(_cpu_threads(plan.cpu))]
        if resolved.max_model_len:
            args += ["--max-model-len", str(resolved.max_model_len)]
        return args + list(spec.engine.args)
    args = ["vllm", *common,
            "--tensor-parallel-size", str(resolved.tensor_parallel),
            "--pipeline-parallel-size", str(resolved.pipeline_parallel)]
    if resolved.max_model_len:
        args += ["--max-model-len", str(resolved.max_model_len)]
    if resolved.gpu_memory_utilization:
        args += ["--gpu-memory-utilization", f"{resolved.gpu_memory_utilization:g}"]
    if resolved.quantization and resolved.quantization.lower() not in UNQUANTIZED:
        args += ["--quantization", resolved.quantization]
    if resolved.kv_cache_dtype and resolved.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", resolved.kv_cache_dtype]
    args += ["--host", "$(POD_IP)", "--port", str(L.HTTP_PORT)]
    if plan.multi_node:
        args += ["--master-port", str(settings.vllm_master_port)]
    if spec.engine.args:
        args += ["--", *spec.engine.args]
    return args


def _http_probe(path: str, period: int, failures: int, timeout: int) -> Json:
    return {
        "httpGet": {"path": path, "port": L.HTTP_PORT_NAME},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def _resources(plan: WorkloadPlan) -> Json:
    requests: Json = {"cpu": plan.cpu, "memory": plan.memory}
    limits: Json = {"memory": plan.memory}
    if plan.on_cpu:
        limits["cpu"] = plan.cpu
    else:
        requests[L.GPU_RESOURCE] = str(plan.gpus_per_pod)
        limits[L.GPU_RESOURCE] = str(plan.gpus_per_pod)
    return {"requests": requests, "limits": limits}


def engine_container(
    spec: ModelSpec, model: L.ModelRef, version: str, plan: WorkloadPlan, settings: DesiredSettings, role: PodRole
) -> Json:
    """The serving container (or, for a worker of a multi-node replica, its headless engine)."""
    env: list[Json] = [
        _field_env("POD_IP", "status.podIP"),
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        {"name": "TESSERA_MODEL", "value": model.name},
        {"name": "TESSERA_VERSION", "value": version},
    ]
    mounts: list[Json] = [_weights_mount(settings, spec, read_only=True), {"name": "dshm", "mountPath": "/dev/shm"}]
    if not plan.on_cpu:
        # vLLM and torch write compile caches under $HOME; the image's HOME may not be writable by uid 1000.
        env += [{"name": "HOME", "value": CACHE_MOUNT}, {"name": "XDG_CACHE_HOME", "value": CACHE_MOUNT}]
        mounts.append({"name": "cache", "mountPath": CACHE_MOUNT})
    env += [{"name": key, "value": value} for key, value in sorted(spec.engine.env.items())]
    container: Json = {
        "name": "engine",
        "image": spec.engine.image or settings.runtime_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": engine_args(spec, model.name, plan, settings),
        "env": env,
        "resources": _resources(plan),
        "securityContext": _security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
    ports: list[Json] = []
    if role != "worker":
        ports.append({"name": L.HTTP_PORT_NAME, "containerPort": L.HTTP_PORT, "protocol": "TCP"})
        container["startupProbe"] = _http_probe(
            "/health", settings.probe_period_seconds, startup_failure_threshold(plan, settings), 5
        )
        container["readinessProbe"] = _http_probe("/ready", 5, 3, 3)
        container["livenessProbe"] = _http_probe("/health", settings.probe_period_seconds, 6, 5)
    if role == "leader":
        ports.append({"name": "dist", "containerPort": settings.vllm_master_port, "protocol": "TCP"})
    if ports:
        container["ports"] = ports
    return container


def _volumes(spec: ModelSpec, plan: WorkloadPlan, settings: DesiredSettings) -> list[Json]:
    weights: Json = (
        {"name": "weights", "persistentVolumeClaim": {"claimName": settings.weights_cache_claim}}
        if settings.weights_cache_claim
        else {"name": "weights", "emptyDir": {}}
    )
    shm_size = settings.cpu_shm_size if plan.on_cpu else settings.gpu_shm_size
    volumes = [weights, {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}}]
    if not plan.on_cpu:
        volumes.append({"name": "cache", "emptyDir": {}})
    ref = spec.source.credentials_secret_ref
    if ref is not None:
        volumes.append({
            "name": "source-credentials",
            "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": CREDENTIALS_FILE}], "defaultMode": 0o440},
        })
    claim = _pvc_source_claim(spec)
    if claim:
        volumes.append({"name": "source-pvc", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
    return volumes


def _scheduling(spec: ModelSpec, plan: WorkloadPlan, settings: DesiredSettings) -> Json:
    placement = spec.placement
    if plan.on_cpu:
        # CPU models stay off GPU nodes (GPUs are too dear to idle under a CPU server).
        expression: Json = {"key": L.GPU_PRODUCT_LABEL, "operator": "DoesNotExist"}
        tolerations: list[Json] = [{"key": L.LOCAL_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]
        node_selector = {**settings.cpu_node_selector, **placement.node_selector}
    else:
        expression = {"key": L.GPU_PRODUCT_LABEL, "operator": "In", "values": sorted(set(plan.gpu_products))}
        tolerations = [{"key": L.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
        node_selector = dict(placement.node_selector)
    tolerations += [t.to_api() for t in placement.tolerations]
    scheduling: Json = {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [expression]}],
        }}},
        "tolerations": tolerations,
    }
    if node_selector:
        scheduling["nodeSelector"] = dict(sorted(node_selector.items()))
    if placement.priority_class_name:
        scheduling["priorityClassName"] = placement.priority_class_name
    return scheduling


def pod_template(
    spec: ModelSpec, model: L.ModelRef, version: str, plan: WorkloadPlan, settings: DesiredSettings,
    role: PodRole = "server",
) -> Json:
    """The pod template of one version (role leader/worker for the pods of a multi-node replica)."""
    component = L.COMPONENT_WORKER if role == "worker" else L.COMPONENT_SERVER
    pod_labels = L.version_labels(model.name, version, component)
    pod_labels[L.ROLE] = role
    pod_spec: Json = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security_context(),
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        # Every pod of a multi-node replica loads its own shard from its own volume, so each fetches.
        "initContainers": [fetch_container(spec, settings)],
        "containers": [engine_container(spec, model, version, plan, settings, role)],
        "volumes": _volumes(spec, plan, settings),
        **_scheduling(spec, plan, settings),
    }
    return {"metadata": {"labels": pod_labels}, "spec": pod_spec}
