#!/usr/bin/env python3
"""Write the chart's generated assets: the Grafana dashboard and the Argo CD health snippet.

charts/tessera/dashboards/tessera-models.json is the per-Model dashboard. Panels read vLLM's metric names (every Tessera engine exports them; the PodMonitor adds the
`namespace`, `model` and `version` labels from the serving pods' labels), the router's
`tessera_router_*` series and the operator's `tessera_model_*` series (docs/observability.md).
examples/gitops/argocd-cm-health.yaml embeds the Lua health checks of charts/tessera/argocd/ in
the argocd-cm keys Argo CD reads. Run `hack/gen-chart-assets.py` after editing either; `--check`
exits 1 when a committed file differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts" / "tessera" / "dashboards" / "tessera-models.json"
HEALTH_SCRIPTS = ROOT / "charts" / "tessera" / "argocd"
ARGOCD_CM = ROOT / "examples" / "gitops" / "argocd-cm-health.yaml"
# Kind -> Lua file; Argo CD's key is resource.customizations.health.<group>_<Kind>.
HEALTH_KINDS = {
    "Model": "model-health.lua",
    "EvaluationSuite": "evaluationsuite-health.lua",
    "ModelEvaluation": "modelevaluation-health.lua",
}

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
MODEL = 'namespace="$namespace", model="$model"'


def target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def panel(
    title: str, kind: str, grid: tuple[int, int, int, int], targets: list[dict[str, Any]],
    unit: str = "short", description: str = "", **extra: Any,
) -> dict[str, Any]:
    x, y, w, h = grid
    body: dict[str, Any] = {
        "title": title,
        "type": kind,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
    }
    body.update(extra)
    return body


def quantiles(metric: str) -> list[dict[str, Any]]:
    return [
        target(
            f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{MODEL}}}[$__rate_interval])))",
            f"p{int(q * 100)}", chr(ord("A") + i),
        )
        for i, q in enumerate((0.5, 0.95, 0.99))
    ]


def panels() -> list[dict[str, Any]]:
    return [
        panel("Replicas", "timeseries", (0, 0, 8, 8), [
            target(f"max(tessera_model_replicas{{{MODEL}}})", "replicas", "A"),
            target(f"max(tessera_model_ready_replicas{{{MODEL}}})", "ready", "B"),
            target(f"max(tessera_model_desired_replicas{{{MODEL}}})", "desired (autoscaler)", "C"),
        ], description="Replicas of the current versions, ready replicas and the autoscaler's target."),
        panel("Rollout", "stat", (8, 0, 4, 4), [
            target(f"max by (phase) (tessera_model_rollout_phase{{{MODEL}}}) == 1", "{{phase}}", "A"),
        ], description="Current rollout phase (status.rollout.phase).",
            options={"reduceOptions": {"calcs": ["lastNotNull"], "values": False}, "textMode": "name"}),
        panel("Cost per hour", "stat", (12, 0, 4, 4), [
            target(f"sum(tessera_model_cost_per_hour{{{MODEL}}})", "USD/h", "A"),
        ], unit="currencyUSD", description="Ready replicas times the planner's cost per replica-hour (catalogue prices)."),
        panel("Traffic by version", "timeseries", (16, 0, 8, 8), [
            target(f"max by (version) (tessera_model_traffic_weight{{{MODEL}}})", "{{version}}", "A"),
        ], unit="percent", description="Share of requests the router sends to each version (status.traffic)."),
        panel("Ready", "stat", (8, 4, 8, 4), [
            target(f'max by (type) (tessera_model_condition{{{MODEL}, status="True"}})', "{{type}}", "A"),
        ], description="Conditions that are True (Ready, Progressing, Degraded).",
            options={"reduceOptions": {"calcs": ["lastNotNull"], "values": False}, "textMode": "name"}),
        panel("Queue", "timeseries", (0, 8, 12, 8), [
            target(f"sum(vllm:num_requests_waiting{{{MODEL}}})", "waiting in engines", "A"),
            target(f"sum(vllm:num_requests_running{{{MODEL}}})", "running in engines", "B"),
            target(f"sum(tessera_router_held_requests{{{MODEL}}})", "held by the router (scale from zero)", "C"),
            target(f"sum(tessera_router_inflight_requests{{{MODEL}}})", "in flight through the router", "D"),
        ]),
        panel("KV-cache usage", "timeseries", (12, 8, 12, 8), [
            target(f"max by (pod) (vllm:kv_cache_usage_perc{{{MODEL}}})", "{{pod}}", "A"),
        ], unit="percentunit", description="Share of each replica's KV cache in use (1 = full)."),
        panel("Time to first token", "timeseries", (0, 16, 12, 8),
              quantiles("vllm:time_to_first_token_seconds"), unit="s"),
        panel("Time per output token", "timeseries", (12, 16, 12, 8),
              quantiles("vllm:inter_token_latency_seconds"), unit="s"),
        panel("Tokens per second", "timeseries", (0, 24, 12, 8), [
            target(f"sum(rate(vllm:generation_tokens_total{{{MODEL}}}[$__rate_interval]))", "generated", "A"),
            target(f"sum(rate(vllm:prompt_tokens_total{{{MODEL}}}[$__rate_interval]))", "prompt", "B"),
        ], unit="short"),
        panel("Router requests by code", "timeseries", (12, 24, 12, 8), [
            target(f"sum by (code) (rate(tessera_router_requests_total{{{MODEL}}}[$__rate_interval]))", "{{code}}", "A"),
            target(f"sum by (cause) (rate(tessera_router_errors_total{{{MODEL}}}[$__rate_interval]))",
                   "error: {{cause}}", "B"),
        ], unit="reqps"),
        panel("Router hold time and upstream TTFT (p95)", "timeseries", (0, 32, 24, 8), [
            target(f"histogram_quantile(0.95, sum by (le) (rate(tessera_router_hold_seconds_bucket{{{MODEL}}}"
                   "[$__rate_interval])))", "held (scale from zero)", "A"),
            target(f"histogram_quantile(0.95, sum by (le) (rate(tessera_router_upstream_ttft_seconds_bucket{{{MODEL}}}"
                   "[$__rate_interval])))", "first byte through the router", "B"),
        ], unit="s"),
    ]


def variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "query": {"query": query, "refId": name}, "definition": query, "refresh": 2, "sort": 1,
        "includeAll": False, "multi": False,
    }


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    return {
        "uid": "tessera-models",
        "title": "Tessera / Models",
        "description": "One Model: replicas, queue, KV cache, latency percentiles, tokens/s, cost and rollout.",
        "tags": ["tessera", "llm"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
            variable("namespace", "label_values(tessera_model_replicas, namespace)", "Namespace"),
            variable("model", 'label_values(tessera_model_replicas{namespace="$namespace"}, model)', "Model"),
        ]},
        "panels": panels(),
    }


def render_dashboard() -> str:
    """The dashboard file's text."""
    return json.dumps(dashboard(), indent=2, sort_keys=False) + "\n"


def render_argocd_cm() -> str:
    """The argocd-cm patch that registers the health checks (a strategic merge patch of data)."""
    lines = [
        "# Generated by hack/gen-chart-assets.py from charts/tessera/argocd/*.lua. Do not edit.",
        "# Argo CD health checks for Tessera's kinds: merge into the argocd-cm ConfigMap, e.g.",
        "#   kubectl -n argocd patch configmap argocd-cm --patch-file argocd-cm-health.yaml",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: argocd-cm",
        "  namespace: argocd",
        "  labels:",
        "    app.kubernetes.io/part-of: argocd",
        "data:",
    ]
    for kind, file in HEALTH_KINDS.items():
        script = (HEALTH_SCRIPTS / file).read_text(encoding="utf-8")
        lines.append(f"  resource.customizations.health.tessera.dev_{kind}: |")
        lines.extend(f"    {line}" if line else "" for line in script.splitlines())
    return "\n".join(lines) + "\n"


def outputs() -> dict[Path, str]:
    """Every generated file and its expected text."""
    return {DASHBOARD: render_dashboard(), ARGOCD_CM: render_argocd_cm()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(ROOT)))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"{', '.join(stale)} differ from hack/gen-chart-assets.py: run it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
