"""The operator's settings, read from TESSERA_* environment variables (flags of `tessera-operator` override them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from tessera_operator.desired import DesiredSettings
from tessera_operator.desired.inputs import DEFAULT_RUNTIME_IMAGE

ENV_PREFIX = "TESSERA_"


def parse_selector(text: str) -> dict[str, str]:
    """`key=value,key2=value2` as a dict (empty text: empty dict)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"not a key=value pair: {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


@dataclass(frozen=True)
class OperatorSettings:
    """Everything configurable about a running operator.

    Each field reads TESSERA_<FIELD NAME IN UPPER CASE>, e.g. TESSERA_REFRESH_SECONDS=20.
    """

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch (TESSERA_NAMESPACES=a,b); empty with all_namespaces false means `default`."""
    all_namespaces: bool = False
    standalone: bool = False
    """Run without peering (tests, single replica). With peering, several replicas elect one active."""
    peering_name: str = "tessera-operator"
    """The KopfPeering object replicas of the operator coordinate through (installed by the chart)."""
    liveness: str | None = None
    """Liveness endpoint, e.g. http://0.0.0.0:8080/healthz."""
    metrics_port: int | None = None
    """Port of the Prometheus endpoint with every Model's status as gauges (none when unset)."""
    log_level: str = "INFO"
    refresh_seconds: float = 15.0
    """Period of the status refresh of every Model (reads only, writes when something changed)."""
    max_refreshes_per_second: float = 20.0
    """Budget of periodic refreshes, all Models together: beyond it (e.g. 1,000 Models at a 15 s period) a
    refresh is skipped until the Model's next period, so refreshes never crowd out new or changed Models."""
    watch_owned: bool = True
    """Reconcile a Model as soon as its Deployments or pods change (not only on the refresh timer)."""
    workers: int = 8
    """Threads running reconciles (each Model runs one reconcile at a time)."""
    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    image_pull_policy: str = "IfNotPresent"
    weights_cache_claim: str | None = None
    drain_seconds: int = 60
    startup_budget_floor_seconds: int = 300
    startup_budget_factor: float = 3.0
    cpu_node_selector: dict[str, str] = field(default_factory=dict)
    """Node selector for CPU models (TESSERA_CPU_NODE_SELECTOR=tessera.dev/local-node=true on the dev cluster)."""
    cluster_domain: str = "cluster.local"
    evaluator_cluster_role: str = "tessera-evaluator"
    """The ClusterRole evaluation Jobs are bound to in a Model's namespace (the chart's `<release>-evaluator`);
    the operator may bind only this role (the chart grants `bind` on this name alone)."""
    gpu_catalogue: str | None = None
    """A YAML/JSON file of GPU catalogue overrides for the planner (prices, new GPU types)."""

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> OperatorSettings:
        """Read TESSERA_* variables; unset ones keep their defaults; malformed ones raise ValueError."""
        source = os.environ if env is None else env
        values: dict[str, object] = {}
        for item in fields(OperatorSettings):
            raw = source.get(ENV_PREFIX + item.name.upper())
            if raw is None:
                continue
            kind = str(item.type)
            value: object
            if item.name == "namespaces":
                value = tuple(filter(None, (n.strip() for n in raw.split(","))))
            elif item.name == "cpu_node_selector":
                value = parse_selector(raw)
            elif kind == "bool":
                value = _bool(raw)
            elif kind in ("int", "int | None"):
                value = int(raw) if raw.strip() else None
            elif kind == "float":
                value = float(raw)
            else:
                value = raw or None if item.name in ("liveness", "weights_cache_claim", "gpu_catalogue") else raw
            values[item.name] = value
        return OperatorSettings(**values)  # type: ignore[arg-type]

    def desired(self) -> DesiredSettings:
        """The part the pure builders need."""
        return DesiredSettings(
            runtime_image=self.runtime_image,
            image_pull_policy=self.image_pull_policy,
            weights_cache_claim=self.weights_cache_claim,
            drain_seconds=self.drain_seconds,
            startup_budget_floor_seconds=self.startup_budget_floor_seconds,
            startup_budget_factor=self.startup_budget_factor,
            cpu_node_selector=dict(self.cpu_node_selector),
            cluster_domain=self.cluster_domain,
            evaluator_cluster_role=self.evaluator_cluster_role,
        )
