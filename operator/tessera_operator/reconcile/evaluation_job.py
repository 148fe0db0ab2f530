"""The evaluation Job of a gated rollout: its objects, its idempotent creation, and what it found.

The Job runs `tessera-runtime evaluate` against the pods of the candidate and of the stable version
(their pod IPs: the per-version Services' endpoints, reached without the router), under a
ServiceAccount bound in the Model's namespace to the evaluator ClusterRole the operator is configured with
(TESSERA_EVALUATOR_CLUSTER_ROLE; the chart's `<release>-evaluator`, the only role it may bind). Every
object is owned by the Model, so deleting the Model removes them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from tessera_operator.desired import DesiredSettings
from tessera_operator.desired import labels as L
from tessera_operator.desired.pod import RUN_AS_USER
from tessera_operator.k8s import Conflict, Kube
from tessera_operator.k8s.resources import JOB, MODEL_EVALUATION, ROLE_BINDING, SERVICE_ACCOUNT
from tessera_operator.rollout import CreateEvaluation, EvaluationObservation
from tessera_operator.rollout.timeutil import parse_time

Json = dict[str, Any]

EVALUATOR_ACCOUNT = "tessera-evaluator"
EVALUATION_LABEL = "tessera.dev/evaluation"


def job_name(model: str, candidate: str, baseline: str, attempt: int) -> str:
    """Deterministic Job name from the Model, the versions compared and the attempt (at most 63 chars,
    so the Job controller's `job-name` pod label stays valid)."""
    digest = hashlib.sha256(f"{model}/{candidate}/{baseline}/{attempt}".encode()).hexdigest()[:8]
    suffix = f"-eval-{candidate[:10]}-{attempt}-{digest}"
    return model[: 63 - len(suffix)].rstrip("-.") + suffix


def _metadata(ref: L.ModelRef, name: str, extra_labels: dict[str, str] | None = None) -> Json:
    labels = {L.MANAGED_BY: L.MANAGER, L.MODEL: ref.name, **(extra_labels or {})}
    return {"name": name, "namespace": ref.namespace, "labels": labels, "ownerReferences": [ref.owner_reference()]}


def evaluator_rbac(ref: L.ModelRef, cluster_role: str) -> list[Json]:
    """The ServiceAccount the Job runs as and its binding to the evaluator ClusterRole `cluster_role`."""
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(ref, EVALUATOR_ACCOUNT)}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": _metadata(ref, f"{EVALUATOR_ACCOUNT}-{ref.name}"[:253]),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": EVALUATOR_ACCOUNT, "namespace": ref.namespace}],
    }
    return [account, binding]


def evaluation_job(
    ref: L.ModelRef, action: CreateEvaluation, candidate_url: str, baseline_url: str, settings: DesiredSettings,
    node_selector: dict[str, str] | None = None,
) -> Json:
    """The Job that writes the ModelEvaluation `action.name` (one `--suite-name` per suite)."""
    args = ["evaluate", "--namespace", ref.namespace, "--model", ref.name,
            "--candidate-url", candidate_url, "--baseline-url", baseline_url,
            "--candidate-version", action.candidate, "--baseline-version", action.baseline,
            "--output-name", action.name]
    for suite in action.suites:
        args += ["--suite-name", suite]
    pod: Json = {
        "serviceAccountName": EVALUATOR_ACCOUNT,
        "restartPolicy": "Never",
        "containers": [{
            "name": "evaluate", "image": settings.runtime_image, "imagePullPolicy": settings.image_pull_policy,
            "command": ["tessera-runtime"], "args": args,
            # The namespace may enforce the restricted Pod Security Standard, as for serving pods.
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                "runAsNonRoot": True, "runAsUser": RUN_AS_USER,
                                "seccompProfile": {"type": "RuntimeDefault"}},
        }],
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER,
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if node_selector:  # CPU models' node selector (the local dev node), whose taint serving pods tolerate too
        pod["nodeSelector"] = dict(sorted(node_selector.items()))
        pod["tolerations"] = [{"key": L.LOCAL_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]
    labels = {EVALUATION_LABEL: action.name}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _metadata(ref, job_name(ref.name, action.candidate, action.baseline, action.attempt), labels),
        # One try: a failed evaluation is retried by the rollout (with backoff and a fresh name), not by the Job.
        "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 86400,
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
    }


def ensure_evaluation_objects(kube: Kube, ref: L.ModelRef, job: Json, cluster_role: str) -> bool:
    """Create the evaluator's ServiceAccount, RoleBinding (to `cluster_role`) and the Job unless they exist
    (idempotent; a Conflict means a concurrent run created it). True when this call created the Job."""
    account, binding = evaluator_rbac(ref, cluster_role)
    namespace = ref.namespace
    try:
        if kube.get(SERVICE_ACCOUNT, namespace, account["metadata"]["name"]) is None:
            kube.create(SERVICE_ACCOUNT, namespace, account)
        if kube.get(ROLE_BINDING, namespace, binding["metadata"]["name"]) is None:
            kube.create(ROLE_BINDING, namespace, binding)
    except Conflict:
        pass
    existing = kube.get(JOB, namespace, job["metadata"]["name"])
    if existing is not None:
        meta = existing["metadata"]
        wanted = job["metadata"]["labels"].get(EVALUATION_LABEL)
        if (meta.get("labels") or {}).get(EVALUATION_LABEL) != wanted and not meta.get("deletionTimestamp"):
            # Left by a run killed between creating it and recording its evaluation's name in status: it
            # would write a ModelEvaluation that no status names, and the rollout would wait forever.
            # Replace it: the next reconcile creates the Job of the evaluation the status names.
            kube.delete(JOB, namespace, meta["name"], uid=meta.get("uid"))
        return False
    try:
        kube.create(JOB, namespace, job)
    except Conflict:
        return False
    return True


def pod_url(pods: list[Json]) -> str | None:
    """The OpenAI API base URL of a ready pod of a version (by pod IP), or None when none is ready."""
    for pod in sorted(pods, key=lambda p: str(p.get("metadata", {}).get("name"))):
        status = pod.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if ready and status.get("podIP") and not pod.get("metadata", {}).get("deletionTimestamp"):
            return f"http://{status['podIP']}:{L.HTTP_PORT}/v1"
    return None


def observe_evaluation(kube: Kube, namespace: str, name: str | None, now: datetime) -> EvaluationObservation | None:
    """The verdict of the ModelEvaluation `name`; a Job that failed without writing one is an Error."""
    if not name:
        return None
    evaluation = kube.get(MODEL_EVALUATION, namespace, name)
    result = ((evaluation or {}).get("status") or {}).get("result")
    if result:
        return EvaluationObservation(name, result.get("verdict"), str(result.get("reason", "")),
                                     parse_time(result.get("finished")) or now)
    jobs = kube.list(JOB, namespace, label_selector=f"{EVALUATION_LABEL}={name}")
    if not jobs:
        return None
    job = jobs[0]
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            reason = f"evaluation Job {job['metadata']['name']} failed without a result: " \
                     f"{condition.get('reason', '')} {condition.get('message', '')}".strip()
            # Unknown failure time: None makes the machine count the backoff from the step's start.
            return EvaluationObservation(name, "Error", reason, parse_time(condition.get("lastTransitionTime")))
        if condition.get("type") == "Complete" and condition.get("status") == "True" and evaluation is None:
            return EvaluationObservation(name, "Error", "the evaluation Job completed without writing its result",
                                         parse_time((job.get("status") or {}).get("completionTime")))
    return EvaluationObservation(name, None)
