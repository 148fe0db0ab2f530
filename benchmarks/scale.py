"""Scale: N Models on a few hundred kwok GPU nodes, against an empty kopf operator in the same run.

For each N (default 100, 300, 1000) on one local control plane (its own, in a temp folder; GPU
nodes are kwok's, so pods are marked Ready without running anything):
  1. Tessera's operator (`python -m tessera_operator.main`, production settings) watches a fresh
     namespace; N Models (the 8B example, one H100 each) are created; a watch records when each
     Model's Deployment appears and when the Model turns Ready=True. Then `--settle-seconds`, then
     an idle window of `--idle-seconds` (the issue's 5 minutes by default) in which every write of
     the operator's kinds is counted (target: zero).
  2. The baseline: a kopf operator with one no-op create handler (this file, `--kopf-baseline NS`)
     watches another namespace while the same N Models are created there; "handled" is when kopf
     stored its last-handled annotation. Same settle and idle windows.
Both operators' CPU seconds (utime+stime) and peak RSS (VmHWM) come from /proc. API writes come from
the apiserver's apiserver_request_total: writes to models (and models/status), deployments,
services, poddisruptionbudgets, leaderworkersets, minus the N creates; Events are counted apart.

    .venv/bin/python benchmarks/scale.py --counts 100 --idle-seconds 30          # a quick look
    nice .venv/bin/python benchmarks/scale.py                                   # the full run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tessera_operator.k8s.apiserver_metrics import WRITE_VERBS, request_samples, request_totals

ROOT = Path(__file__).resolve().parent.parent
Json = dict[str, Any]
KOPF_HANDLED = "kopf.zalando.org/last-handled-configuration"
OPERATOR_RESOURCES = {"models", "deployments", "services", "poddisruptionbudgets", "leaderworkersets"}
READ_RESOURCES = OPERATOR_RESOURCES | {"pods", "nodes", "jobs"}


# ---------------------------------------------------------------- the baseline operator
def run_kopf_baseline(namespace: str) -> None:
    """An empty kopf operator: one no-op create handler on Models, nothing else."""
    import kopf

    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        return kopf.login_via_client(**kwargs)

    @kopf.on.create("tessera.dev", "v1alpha1", "models", registry=registry)
    def created(**_: Any) -> None:
        return None

    kopf.run(registry=registry, standalone=True, namespaces=[namespace])


# ---------------------------------------------------------------- measuring a process
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """The process's high-water resident set size (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def api_writes(kube: Any) -> dict[str, float]:
    """Cumulative writes per resource[/subresource] of the operator's kinds (not workloads' /status,
    which the controllers write), plus `models:create`, from apiserver_request_total."""
    counts: dict[str, float] = {}
    for labels, value in request_samples(kube.get_text("/metrics")):
        resource, sub = labels.get("resource"), labels.get("subresource")
        if labels.get("verb") not in WRITE_VERBS or resource not in OPERATOR_RESOURCES:
            continue
        if sub and resource != "models":
            continue
        key = f"{resource}/{sub}" if sub else str(resource)
        counts[key] = counts.get(key, 0.0) + value
        if resource == "models" and not sub and labels["verb"] == "POST":
            counts["models:create"] = counts.get("models:create", 0.0) + value
    return counts


def api_reads(kube: Any) -> float:
    """Cumulative GETs and LISTs of the kinds the operator reads (its reconciles' cost to the apiserver)."""
    return sum(request_totals(kube.get_text("/metrics"), READ_RESOURCES, ("GET", "LIST")).values())


def writes_between(before: dict[str, float], after: dict[str, float]) -> float:
    """Writes in an interval, excluding the benchmark's own Model creates."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(before) | set(after)}
    return sum(v for k, v in delta.items() if k != "models:create") - delta.get("models:create", 0.0)


# ---------------------------------------------------------------- watching what happens
class Stopwatch:
    """Watches a namespace's Models (and Deployments) and records, per Model, when each milestone was seen."""

    def __init__(self, api: Any, namespace: str, milestones: dict[str, Callable[[str, Json], str | None]]) -> None:
        self.api, self.namespace, self.milestones = api, namespace, milestones
        self.seen: dict[str, dict[str, float]] = {name: {} for name in milestones}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=(kind,), daemon=True) for kind in ("models", "deployments")]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _list_call(self, kind: str) -> Callable[..., Any]:
        from kubernetes import client as k8s

        if kind == "models":
            custom = k8s.CustomObjectsApi(self.api)
            return lambda **kw: custom.list_namespaced_custom_object("tessera.dev", "v1alpha1", self.namespace, "models", **kw)
        apps = k8s.AppsV1Api(self.api)
        return lambda **kw: apps.list_namespaced_deployment(self.namespace, **kw)

    def _watch(self, kind: str) -> None:
        from kubernetes import watch

        call = self._list_call(kind)
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(call, timeout_seconds=30, _request_timeout=60)  # type: ignore[no-untyped-call]
                for event in stream:
                    obj = event["object"]
                    if not isinstance(obj, dict):
                        obj = self.api.sanitize_for_serialization(obj)
                    self._record(kind, obj)
                    if self._stop.is_set():
                        return
            except Exception:  # reconnect: the API may hiccup under load
                time.sleep(0.5)

    def _record(self, kind: str, obj: Json) -> None:
        now = time.monotonic()
        for milestone, check in self.milestones.items():
            if not milestone.startswith(kind):
                continue
            model = check(kind, obj)
            if model is not None:
                self.seen[milestone].setdefault(model, now)

    def count(self, milestone: str) -> int:
        return len(self.seen[milestone])


def deployment_created(_kind: str, obj: Json) -> str | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    model = labels.get("tessera.dev/model")
    return str(model) if model else None


def model_ready(_kind: str, obj: Json) -> str | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == "Ready" and item.get("status") == "True":
            return str(obj["metadata"]["name"])
    return None


def kopf_handled(_kind: str, obj: Json) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(obj["metadata"]["name"]) if KOPF_HANDLED in annotations else None


# ---------------------------------------------------------------- one phase
@dataclass
class PhaseResult:
    """One operator at one N."""

    operator: str
    models: int
    latencies: dict[str, list[float]] = field(default_factory=dict)
    complete: dict[str, int] = field(default_factory=dict)
    apply_seconds: float = 0.0
    cpu_seconds: float = 0.0
    idle_cpu_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    writes_per_model: float = 0.0
    reads_per_model: float = 0.0
    idle_reads_per_second: float = 0.0
    events_per_model: float = 0.0
    idle_writes: float = 0.0
    idle_seconds: float = 0.0
    summarised: set[str] = field(default_factory=set)

    def percentile(self, milestone: str, q: float) -> float:
        values = sorted(self.latencies.get(milestone) or [])
        if not values:
            return float("nan")
        if len(values) == 2 and milestone in self.summarised:  # read back from JSON: (p50, p99)
            return values[0] if q <= 0.5 else values[1]
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]

    def to_json(self) -> Json:
        out: Json = {
            "operator": self.operator, "models": self.models, "applySeconds": self.apply_seconds,
            "cpuSeconds": self.cpu_seconds, "idleCpuSeconds": self.idle_cpu_seconds,
            "peakRssMiB": self.peak_rss_mib, "writesPerModel": self.writes_per_model,
            "readsPerModel": self.reads_per_model, "idleReadsPerSecond": self.idle_reads_per_second,
            "eventsPerModel": self.events_per_model, "idleWrites": self.idle_writes,
            "idleSeconds": self.idle_seconds, "complete": self.complete,
        }
        for milestone in self.latencies:
            key = milestone.split(":")[1]
            out[f"{key}P50Seconds"] = self.percentile(milestone, 0.5)
            out[f"{key}P99Seconds"] = self.percentile(milestone, 0.99)
        return out

    @staticmethod
    def from_json(data: Json) -> PhaseResult:
        """A result written by an earlier run (its latencies as p50/p99 only)."""
        result = PhaseResult(data["operator"], data["models"], complete=data["complete"])
        for attribute, key in (("apply_seconds", "applySeconds"), ("cpu_seconds", "cpuSeconds"),
                               ("idle_cpu_seconds", "idleCpuSeconds"), ("peak_rss_mib", "peakRssMiB"),
                               ("writes_per_model", "writesPerModel"), ("reads_per_model", "readsPerModel"),
                               ("idle_reads_per_second", "idleReadsPerSecond"), ("events_per_model", "eventsPerModel"),
                               ("idle_writes", "idleWrites"), ("idle_seconds", "idleSeconds")):
            setattr(result, attribute, float(data.get(key, float("nan"))))
        for milestone in data["complete"]:
            key = milestone.split(":")[1]
            result.latencies[milestone] = [data[f"{key}P50Seconds"], data[f"{key}P99Seconds"]]
            result.summarised.add(milestone)
        return result


def model_manifest(name: str) -> Json:
    manifest: Json = yaml.safe_load((ROOT / "examples" / "llama-3.1-8b-gpu.yaml").read_text())
    manifest["spec"]["source"].pop("credentialsSecretRef", None)
    manifest["spec"]["placement"]["accelerators"] = ["H100-80GB"]
    manifest["metadata"] = {"name": name}
    return manifest


def run_phase(
    ctx: BenchContext, operator: str, n: int, argv: list[str], milestones: dict[str, Callable[[str, Json], str | None]],
) -> PhaseResult:
    """Start an operator on a fresh namespace, create n Models, wait for every milestone, settle, idle."""
    from tessera_operator.k8s.resources import EVENT, MODEL

    namespace = f"{operator}-{n}"
    ctx.create_namespace(namespace)
    log = ctx.work / f"{namespace}.log"
    env = {**os.environ, "KUBECONFIG": str(ctx.kubeconfig), "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        process = subprocess.Popen([*argv, namespace], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, cwd=ROOT)
    result = PhaseResult(operator, n)
    watcher = Stopwatch(ctx.api, namespace, milestones)
    watcher.start()
    try:
        time.sleep(3)  # let it start watching (its start-up CPU counts: it is part of running it)
        writes_before, reads_before = api_writes(ctx.kube), api_reads(ctx.kube)
        applied: dict[str, float] = {}

        def create(index: int) -> None:
            name = f"m-{index:04d}"
            ctx.kube.create(MODEL, namespace, {**model_manifest(name), "metadata": {"name": name, "namespace": namespace}})
            applied[name] = time.monotonic()

        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(create, range(n)))
        result.apply_seconds = time.monotonic() - started
        deadline = time.monotonic() + 180 + n * 2.0
        with ctx.progress(f"{operator} N={n}", n * len(milestones)) as advance:
            while time.monotonic() < deadline and process.poll() is None:
                advance(sum(watcher.count(m) for m in milestones))
                if all(watcher.count(m) >= n for m in milestones):
                    break
                time.sleep(0.5)
        for milestone in milestones:
            seen = watcher.seen[milestone]
            result.latencies[milestone] = [seen[m] - applied[m] for m in seen if m in applied]
            result.complete[milestone] = len(seen)
        time.sleep(ctx.settle_seconds)
        if process.poll() is not None:
            raise RuntimeError(f"{operator} exited ({process.returncode}); see {log}")
        writes_settled, reads_settled = api_writes(ctx.kube), api_reads(ctx.kube)
        result.reads_per_model = (reads_settled - reads_before) / n
        cpu_settled = cpu_seconds(process.pid)
        result.writes_per_model = writes_between(writes_before, writes_settled) / n
        ctx.say(f"{operator} N={n}: idle window of {ctx.idle_seconds:.0f} s")
        time.sleep(ctx.idle_seconds)
        result.idle_writes = writes_between(writes_settled, api_writes(ctx.kube))
        result.idle_reads_per_second = (api_reads(ctx.kube) - reads_settled) / ctx.idle_seconds
        result.idle_seconds = ctx.idle_seconds
        result.cpu_seconds = cpu_seconds(process.pid)
        result.idle_cpu_seconds = result.cpu_seconds - cpu_settled
        result.peak_rss_mib = peak_rss_mib(process.pid)
        events = [e for e in ctx.kube.list(EVENT, namespace) if e.get("reportingComponent") == "tessera-operator"]
        result.events_per_model = sum(int(e.get("count") or 1) for e in events) / n
    finally:
        watcher.stop()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        ctx.clear_namespace(namespace)
    return result


# ---------------------------------------------------------------- the cluster around the phases
class BenchContext:
    """The benchmark's own local cluster and clients."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.idle_seconds = float(args.idle_seconds)
        self.settle_seconds = float(args.settle_seconds)
        self.work = Path(tempfile.mkdtemp(prefix="tessera-scale-"))
        from rich.console import Console

        self.console = Console(stderr=True)

    def say(self, text: str) -> None:
        self.console.log(text)

    def progress(self, label: str, total: int) -> Any:
        from contextlib import contextmanager

        from rich.progress import Progress

        @contextmanager
        def bar() -> Any:
            with Progress(console=self.console, transient=True) as progress:
                task = progress.add_task(label, total=total)
                yield lambda done: progress.update(task, completed=done)

        return bar()

    def up(self) -> None:
        from tessera_operator.devcluster.cluster import DevCluster
        from tessera_operator.devcluster.profile import Gpu, LocalNode, NodePool, Profile
        from tessera_operator.k8s import Kube, load_api_client

        profile = Profile(
            node_pools=[NodePool(name="h100", count=self.args.nodes, cpu="192", memory="2000Gi",
                                 gpu=Gpu(product="NVIDIA-H100-80GB-HBM3", count=8, memory_mi_b=81559))],
            local_node=LocalNode(enabled=False),
        )
        self.cluster = DevCluster(self.work / "cluster", "scale", profile=profile, die_with_parent=True)
        timings = self.cluster.up(report=self.say)
        self.say(f"cluster with {self.args.nodes} kwok GPU nodes up in {timings.total:.0f} s")
        self.kubeconfig = self.cluster.kubeconfig
        self.kube = Kube(load_api_client(self.kubeconfig), field_manager="tessera-scale-bench")
        from kubernetes import client as k8s
        from kubernetes import config as k8s_config

        self.api = k8s_config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]
        self.core = k8s.CoreV1Api(self.api)
        for crd in sorted((ROOT / "crds").glob("*.yaml")):
            for document in yaml.safe_load_all(crd.read_text()):
                if document:
                    self.kube.apply(document)
        from tessera_operator.k8s.resources import MODEL

        deadline = time.monotonic() + 60
        while True:
            try:
                self.kube.list(MODEL, "default")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def create_namespace(self, name: str) -> None:
        from kubernetes import client as k8s

        self.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))

    def clear_namespace(self, name: str) -> None:
        """Drop the Models' finalizers (their operator is gone) and delete the namespace; wait a while for it."""
        from tessera_operator.k8s.resources import MODEL

        models = self.kube.list(MODEL, name)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda m: self.kube.merge_patch(MODEL, name, m["metadata"]["name"],
                                                          {"metadata": {"finalizers": None}}), models))
        self.core.delete_namespace(name)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if not [n for n in self.core.list_namespace().items if n.metadata and n.metadata.name == name]:
                return
            time.sleep(2)
        self.say(f"namespace {name} still terminating; going on")

    def down(self) -> None:
        if hasattr(self, "cluster"):
            self.cluster.down()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)


# ---------------------------------------------------------------- reporting
def report(results: list[PhaseResult], json_path: Path, plot_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Scale: Tessera vs an empty kopf operator (same cluster, same run)")
    for column in ("operator", "N", "apply s", "created p50/p99 s", "Ready|handled p50/p99 s", "done",
                   "CPU s", "idle CPU s", "peak RSS MiB", "writes/Model", "reads/Model", "idle reads/s", "events/Model", "idle writes"):
        table.add_column(column, justify="right")
    for r in results:
        first, last = next(iter(r.latencies)), list(r.latencies)[-1]
        created = f"{r.percentile(first, 0.5):.1f}/{r.percentile(first, 0.99):.1f}" if len(r.latencies) > 1 else "-"
        table.add_row(
            r.operator, str(r.models), f"{r.apply_seconds:.1f}", created,
            f"{r.percentile(last, 0.5):.1f}/{r.percentile(last, 0.99):.1f}",
            "/".join(str(v) for v in r.complete.values()), f"{r.cpu_seconds:.1f}", f"{r.idle_cpu_seconds:.1f}",
            f"{r.peak_rss_mib:.0f}", f"{r.writes_per_model:.2f}", f"{r.reads_per_model:.1f}",
            f"{r.idle_reads_per_second:.1f}", f"{r.events_per_model:.2f}",
            f"{r.idle_writes:.0f} in {r.idle_seconds:.0f} s",
        )
    Console(width=220).print(table)
    for n in sorted({r.models for r in results}):
        pair = {r.operator: r for r in results if r.models == n}
        if "tessera" in pair and "kopf" in pair:
            t, k = pair["tessera"], pair["kopf"]
            Console().print(f"N={n}: Tessera/kopf CPU x{t.cpu_seconds / max(k.cpu_seconds, 1e-9):.2f}, "
                            f"peak RSS x{t.peak_rss_mib / max(k.peak_rss_mib, 1e-9):.2f}")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"results": [r.to_json() for r in results]}, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, cost) = plt.subplots(1, 2, figsize=(11, 4.2))
    for operator, milestone, label in (("tessera", "deployments:created", "Tessera: workload created"),
                                       ("tessera", "models:ready", "Tessera: Model Ready"),
                                       ("kopf", "models:handled", "empty kopf: handled")):
        rows = sorted((r for r in results if r.operator == operator), key=lambda r: r.models)
        if not rows:
            continue
        ns = [r.models for r in rows]
        line = latency.plot(ns, [r.percentile(milestone, 0.5) for r in rows], marker="o", label=f"{label} p50")[0]
        latency.plot(ns, [r.percentile(milestone, 0.99) for r in rows], marker="x", linestyle="--",
                     color=line.get_color(), label=f"{label} p99")
    latency.set(xlabel="Models", ylabel="seconds from create", title="Latency against N", xscale="log")
    latency.legend(fontsize=7)
    for operator in ("tessera", "kopf"):
        rows = sorted((r for r in results if r.operator == operator), key=lambda r: r.models)
        if rows:
            cost.plot([r.models for r in rows], [r.cpu_seconds for r in rows], marker="o", label=f"{operator} CPU s")
            cost.plot([r.models for r in rows], [r.peak_rss_mib for r in rows], marker="s", linestyle=":",
                      label=f"{operator} peak RSS MiB")
    cost.set(xlabel="Models", title="Operator cost against N", xscale="log")
    cost.legend(fontsize=7)
    figure.tight_layout()
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(plot_path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 300, 1000], help="numbers of Models")
    parser.add_argument("--nodes", type=int, default=250, help="kwok H100 nodes (8 GPUs each)")
    parser.add_argument("--idle-seconds", type=float, default=300.0, help="idle window after settling")
    parser.add_argument("--settle-seconds", type=float, default=30.0, help="wait after the last milestone")
    parser.add_argument("--no-baseline", action="store_true", help="skip the empty kopf operator")
    parser.add_argument("--json", type=Path, default=ROOT / "out" / "scale.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "out" / "scale.png")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument("--report-from", type=Path, nargs="+", metavar="JSON",
                        help="no run: print the table and draw the plot of earlier runs' JSON files together")
    parser.add_argument("--kopf-baseline", metavar="NAMESPACE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kopf_baseline:
        run_kopf_baseline(args.kopf_baseline)
        return
    if args.report_from:
        merged = [PhaseResult.from_json(r) for f in args.report_from for r in json.loads(f.read_text())["results"]]
        report(sorted(merged, key=lambda r: (r.models, r.operator != "tessera")), args.json, args.plot)
        return
    ctx = BenchContext(args)
    results: list[PhaseResult] = []
    tessera = [sys.executable, "-m", "tessera_operator.main", "--standalone", "--namespace"]
    baseline = [sys.executable, str(Path(__file__).resolve()), "--kopf-baseline"]
    try:
        ctx.up()
        for n in args.counts:
            results.append(run_phase(ctx, "tessera", n, tessera,
                                     {"deployments:created": deployment_created, "models:ready": model_ready}))
            if not args.no_baseline:
                results.append(run_phase(ctx, "kopf", n, baseline, {"models:handled": kopf_handled}))
            report(results, args.json, args.plot)
    finally:
        ctx.down()
    print(f"JSON: {args.json}  plot: {args.plot}  operator logs: {ctx.work if args.keep else '(removed; --keep)'}")


if __name__ == "__main__":
    main()
