"""kopf handlers: the only module that imports kopf. Each handler only asks the reconciler to run.

Every handler ends in the same level-triggered reconcile (`Reconciler.reconcile`), so which event
arrived never matters: create, update and resume of a Model, a periodic refresh, and changes of the
Deployments, LeaderWorkerSets and pods the operator owns (so status follows pods within a second).

Quiet by design: kopf keeps its handler progress and last-handled spec in annotations (never in
status, which is the operator's alone), posts no Events of its own (the reconciler posts them on
transitions), and a reconcile that changes nothing writes nothing.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import kopf

from tessera_operator.api.v1alpha1 import GROUP, VERSION
from tessera_operator.desired import labels as L
from tessera_operator.k8s import EventRecorder, Kube
from tessera_operator.observability import ModelMetrics
from tessera_operator.observability import serve as serve_metrics
from tessera_operator.planner import load_catalogue
from tessera_operator.reconcile import Reconciler, RetryLater
from tessera_operator.reconcile.autoscale import Autoscaler, AutoscalerSettings
from tessera_operator.settings import OperatorSettings
from tessera_runtime.kube_incluster import in_cluster, pod_namespace, service_account_dir

log = logging.getLogger("tessera_operator.handlers")
MODELS = (GROUP, VERSION, "models")
OWNED = {L.MANAGED_BY: L.MANAGER}
ANNOTATION_PREFIX = "tessera.dev"


def _reconcile(reconciler: Reconciler, namespace: str | None, name: str | None) -> None:
    """Run one reconcile; API trouble becomes a kopf retry with the reconciler's backoff."""
    if not namespace or not name:
        return
    try:
        reconciler.reconcile(namespace, name)
    except RetryLater as error:
        raise kopf.TemporaryError(str(error), delay=error.delay) from error


class RefreshBudget:
    """A token bucket shared by every Model's refresh timer (`rate` refreshes per second, bursts of one period)."""

    def __init__(self, rate: float, period: float) -> None:
        self.rate, self.capacity = rate, max(1.0, rate * period)
        self.tokens, self.stamp = self.capacity, time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        """Spend one refresh, or say there is none left right now."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


def _configure(settings: kopf.OperatorSettings, config: OperatorSettings) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/operator"
    settings.posting.enabled = False
    settings.peering.standalone = config.standalone
    settings.peering.name = config.peering_name
    settings.peering.mandatory = not config.standalone
    settings.execution.max_workers = config.workers
    settings.batching.error_delays = (1, 2, 5, 10, 30, 60, 120)
    settings.networking.request_timeout = 60


def build_registry(
    config: OperatorSettings, reconciler: Reconciler, metrics: ModelMetrics | None = None
) -> kopf.OperatorRegistry:
    """A kopf registry with every handler of the operator."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry, id="configure")
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        _configure(settings, config)

    @kopf.on.login(registry=registry, id="login")
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same lookup as the operator's own client: in-cluster (wherever the ServiceAccount is
        # mounted, see tessera_runtime.kube_incluster), else $KUBECONFIG or ~/.kube/config.
        if in_cluster() and not os.environ.get("KUBECONFIG"):
            folder = service_account_dir()
            return kopf.ConnectionInfo(
                server=f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ.get('KUBERNETES_SERVICE_PORT', '443')}",
                ca_path=str(folder / "ca.crt"),
                token=(folder / "token").read_text().strip(),
                scheme="Bearer",
                default_namespace=pod_namespace(),
            )
        return kopf.login_via_client(**kwargs)

    @kopf.on.probe(registry=registry, id="models-reconciled")
    def probe(**_: Any) -> str:
        return "ok"

    @kopf.on.create(*MODELS, registry=registry, id="reconcile-created")
    def on_create(namespace: str | None, name: str, **_: Any) -> None:
        _reconcile(reconciler, namespace, name)

    @kopf.on.update(*MODELS, registry=registry, id="reconcile-updated")
    def on_update(namespace: str | None, name: str, **_: Any) -> None:
        _reconcile(reconciler, namespace, name)

    @kopf.on.resume(*MODELS, registry=registry, id="reconcile-resumed")
    def on_resume(namespace: str | None, name: str, **_: Any) -> None:
        _reconcile(reconciler, namespace, name)

    @kopf.on.delete(*MODELS, registry=registry, id="forget", optional=True)
    def on_delete(namespace: str | None, name: str, **_: Any) -> None:
        # Owner references make the garbage collector remove the Model's objects; nothing to do here.
        reconciler.forget(namespace or "", name)
        if metrics is not None:
            metrics.forget(namespace or "", name)

    budget = RefreshBudget(config.max_refreshes_per_second, config.refresh_seconds)

    @kopf.timer(*MODELS, registry=registry, id="refresh", interval=config.refresh_seconds,
                initial_delay=config.refresh_seconds, sharp=False)
    def refresh(namespace: str | None, name: str, **_: Any) -> None:
        # Refreshes are the lowest priority: skipped when an event reconciled the Model recently, when
        # half the workers are busy with events (new and changed Models first), and beyond a shared
        # budget. At 1,000 Models a full refresh every 15 s each kept every worker busy and new Models
        # waited many minutes for their first reconcile (benchmarks/scale.py).
        if (reconciler.reconciled_within(namespace or "", name, 0.8 * config.refresh_seconds)
                or reconciler.running() >= max(1, config.workers // 2) or not budget.take()):
            return
        _reconcile(reconciler, namespace, name)

    if config.watch_owned:
        def on_owned(namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
            try:
                _reconcile(reconciler, namespace, labels.get(L.MODEL))
            except kopf.TemporaryError as error:  # the refresh timer retries; an event is not worth a retry loop
                log.info("reconcile after a change of an owned object failed: %s", error)

        kopf.on.event("apps", "v1", "deployments", registry=registry, id="owned-deployments", labels=OWNED)(on_owned)
        kopf.on.event("leaderworkerset.x-k8s.io", "v1", "leaderworkersets", registry=registry,
                      id="owned-leaderworkersets", labels=OWNED)(on_owned)
        kopf.on.event("", "v1", "pods", registry=registry, id="owned-pods",
                      labels={L.MODEL: kopf.PRESENT, L.MANAGED_BY: L.MANAGER})(on_owned)
    return registry


def run(config: OperatorSettings, kube: Kube | None = None) -> None:
    """Run the operator until it is stopped (SIGINT/SIGTERM)."""
    client = kube or Kube.from_kubeconfig()
    metrics = serve_metrics(config.metrics_port) if config.metrics_port else None
    reconciler = Reconciler(client, config.desired(), EventRecorder(client),
                            observers=(metrics.observe,) if metrics is not None else (),
                            catalogue=load_catalogue(config.gpu_catalogue),
                            autoscaler=Autoscaler(AutoscalerSettings.from_env(interval_seconds=config.refresh_seconds)))
    registry = build_registry(config, reconciler, metrics)
    namespaces = config.namespaces or (() if config.all_namespaces else ("default",))
    kopf.run(
        registry=registry,
        standalone=config.standalone,
        peering_name=None if config.standalone else config.peering_name,
        # kopf pauses every replica that sees a peer of equal or higher priority; a random draw
        # per process makes exactly one replica active (the highest), and another takes over when
        # its peering record expires.
        priority=0 if config.standalone else random.randrange(1, 1 << 30),
        liveness_endpoint=config.liveness,
        clusterwide=config.all_namespaces,
        namespaces=() if config.all_namespaces else namespaces,
    )
