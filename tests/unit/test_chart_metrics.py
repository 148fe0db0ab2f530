"""Metric names: the dashboard and the alerts read only series that Tessera's code exports.

Engines export vLLM's names (tessera_runtime.metrics), the router `tessera_router_*`
(router/metrics.py), the operator `tessera_model_*` (tessera_operator.observability). Each is
instantiated here and its exposition parsed, so a renamed metric fails this test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from chart_support import CHART, ROOT, one, render_set
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tessera_operator.observability import METRIC_NAMES, ModelMetrics
from tessera_runtime.metrics import EngineMetrics
from tessera_runtime.router.metrics import RouterMetrics

SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")
FIXTURES = yaml.safe_load((Path(__file__).parent / "fixtures" / "gitops-health.yaml").read_text())


def _exported(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        names.update(sample.name for sample in family.samples)
        names.add(family.name)
    return names


def exported_series() -> set[str]:
    """Every series name an engine, a router and the operator expose."""
    engine = EngineMetrics("m", max_model_len=2048)
    router = RouterMetrics()
    router.series("m", "ns")
    router.count_request("m", "ns", 200)
    router.count_error("m", "ns", "hold_timeout")
    registry = CollectorRegistry()
    operator = ModelMetrics(registry)
    for case in FIXTURES["models"]:
        operator.observe(case["object"])
    return _exported(engine.registry) | _exported(router.registry) | _exported(registry)


def used_series(text: str) -> set[str]:
    """Metric names in PromQL text: vllm:* and tessera_* identifiers (recording rules excluded)."""
    return set(re.findall(r"\b(vllm:[a-z_]+|tessera_[a-z_]+)\b", text)) - {"tessera_models", "tessera_dev"}


def test_dashboard_and_alerts_read_exported_metrics() -> None:
    objects = render_set("monitoring")
    rules = json.dumps(one(objects, "PrometheusRule")["spec"])
    dashboard = (CHART / "dashboards" / "tessera-models.json").read_text()
    exported = exported_series()
    for where, text in (("PrometheusRule", rules), ("dashboard", dashboard)):
        used = used_series(text)
        assert used, where
        unknown = sorted(name for name in used if name not in exported)
        assert not unknown, f"{where} reads series no code exports: {unknown}"


def test_operator_exports_only_its_documented_names() -> None:
    registry = CollectorRegistry()
    metrics = ModelMetrics(registry)
    for case in FIXTURES["models"]:
        metrics.observe(case["object"])
    families = {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert families == set(METRIC_NAMES)
    docs = (ROOT / "docs" / "observability.md").read_text()
    undocumented = [name for name in METRIC_NAMES if not re.search(rf"`{name}[`{{]", docs)]
    assert not undocumented, f"docs/observability.md does not list {undocumented}"


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_operator_metrics_follow_the_status() -> None:
    registry = CollectorRegistry()
    metrics = ModelMetrics(registry)
    canary: dict[str, Any] = next(c["object"] for c in FIXTURES["models"] if c["case"].startswith("canary"))
    canary = {**canary, "status": {**canary["status"], "plan": {"accelerator": "H100-80GB", "costPerHour": 4.5}}}
    metrics.observe(canary)
    key = (("model", "llama-8b"), ("namespace", "demo"))
    assert _samples(registry, "tessera_model_replicas") == {key: 3.0}
    assert _samples(registry, "tessera_model_cost_per_hour") == {key: 13.5}
    weights = _samples(registry, "tessera_model_traffic_weight")
    assert weights == {(*key[:1], key[1], ("version", "4f2a9c1d0e")): 90.0,
                       (*key[:1], key[1], ("version", "9b1c7d3e2a")): 10.0}
    phases = {dict(k)["phase"]: v for k, v in _samples(registry, "tessera_model_rollout_phase").items()}
    assert phases["Canary"] == 1.0 and sum(phases.values()) == 1.0
    conditions = {(dict(k)["type"], dict(k)["status"]): v for k, v in _samples(registry, "tessera_model_condition").items()}
    assert conditions[("Progressing", "True")] == 1.0 and conditions[("Degraded", "False")] == 1.0
    assert conditions[("Ready", "False")] == 0.0
    metrics.forget("demo", "llama-8b")
    assert _samples(registry, "tessera_model_replicas") == {}
