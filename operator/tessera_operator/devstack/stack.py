"""`tessera dev up` step by step: binaries, cluster, chart, examples, Ready Model, first token.

Each step is timed and reported through a `Reporter` (the CLI draws it with rich), and the
result is recorded in `<cluster>/devstack.json` for `status` and for scripts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from tessera_operator.devcluster import binaries
from tessera_operator.devcluster.cluster import DevCluster
from tessera_operator.devcluster.paths import cache_root, clusters_root, repo_root
from tessera_operator.devcluster.profile import load_profile
from tessera_operator.devcluster.readiness import RestClient
from tessera_operator.devstack import kube
from tessera_operator.devstack.chat import ChatResult, stream_chat
from tessera_operator.devstack.state import StackState, processes_of

CPU_EXAMPLES = ("examples/smollm2-cpu.yaml", "examples/evaluationsuite.yaml")
GPU_EXAMPLES = ("examples/llama-3.1-8b-gpu.yaml", "examples/llama-3.1-70b-sharded.yaml")
CHART = "charts/tessera"
LOCAL_VALUES = "charts/tessera/values-local-node.yaml"
ROUTER_SELECTOR = "app.kubernetes.io/component=router"
MODEL_POD_SELECTOR = "app.kubernetes.io/name=tessera-model"
COLD_BUILD_NOTE = "a cold build takes about 26 min for the control plane and 37 min with helm on 2 cores"


class Reporter(Protocol):
    """Where steps are shown: `begin` when one starts, `end` with its seconds and a short note."""

    def begin(self, label: str) -> None: ...

    def end(self, label: str, seconds: float, note: str) -> None: ...

    def info(self, message: str) -> None: ...


@dataclass
class UpOptions:
    """What `tessera dev up` was asked for."""

    name: str = "dev"
    directory: Path | None = None
    with_gpu_examples: bool = False
    timeout: float = 600.0
    helm_set: tuple[str, ...] = ()
    started_at: float = field(default_factory=time.monotonic)


@dataclass
class UpResult:
    """What `up` produced: the recorded state and the measured first token."""

    state: StackState
    chat: ChatResult
    first_token_seconds: float
    gpu_models: list[kube.ModelSummary]


def cluster_for(name: str, directory: Path | None = None) -> DevCluster:
    """The DevCluster of a stack name (same folder as `tessera dev cluster --name`)."""
    return DevCluster((directory or clusters_root() / name).resolve(), name)


class Stack:
    """One run of `tessera dev up`."""

    def __init__(self, options: UpOptions, reporter: Reporter) -> None:
        self.options = options
        self.reporter = reporter
        root = repo_root()
        if root is None or not (root / CHART / "Chart.yaml").is_file():
            raise kube.StackError("run from a Tessera checkout: the chart and examples come from it")
        self.repo = root
        self.cluster = cluster_for(options.name, options.directory)
        self.state = StackState(name=options.name, kubeconfig=str(self.cluster.kubeconfig))
        self._deadline = options.started_at + options.timeout

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[list[str]]:
        """Time a step; the body may append a note shown with its time."""
        note: list[str] = []
        self.reporter.begin(label)
        start = time.monotonic()
        yield note
        seconds = time.monotonic() - start
        self.state.step_seconds[label] = round(seconds, 2)
        self.reporter.end(label, seconds, " ".join(note))

    def remaining(self) -> float:
        """Seconds left of --timeout for the next wait (at least a few, so errors say what is missing)."""
        return max(5.0, self._deadline - time.monotonic())

    # ------------------------------------------------------------------ up
    def up(self) -> UpResult:
        """Every step in order; raises StackError (the cluster is left running for debugging)."""
        self._binaries()
        self._cluster()
        rest = self.cluster.rest_client()
        self._chart(rest)
        self._examples(rest)
        router_url = self._router(rest)
        self._model_ready(rest, "smollm2")
        with self.step("first token through the router") as note:
            self.state.served_model = self.served_name(rest, "smollm2")
            chat = stream_chat(router_url, self.state.served_model, timeout=self.remaining())
            first_token = chat.first_token_at - self.options.started_at
            note.append(f"command → first token {first_token:.1f} s")
        self.state.first_token_seconds = round(first_token, 2)
        self.state.answer = chat.answer
        gpu_models = self._gpu_examples_placed(rest) if self.options.with_gpu_examples else []
        self.state.save(self.cluster.layout.root)
        return UpResult(self.state, chat, first_token, gpu_models)

    def served_name(self, rest: RestClient, name: str) -> str:
        """The name clients pass as `model`: spec.servedModelName, else the Model's name."""
        model = kube.get_model(rest, self.state.models_namespace, name) or {}
        return str((model.get("spec") or {}).get("servedModelName") or name)

    def _binaries(self) -> None:
        wanted = (*binaries.CONTROL_PLANE, "helm")
        missing = binaries.missing_components(wanted)
        if not missing:
            with self.step("binaries") as note:
                note.append("reused from the cache")
            return
        # The build draws its own progress, so it runs outside a step's spinner.
        self.reporter.info(f"building {', '.join(missing)} ({COLD_BUILD_NOTE})")
        start = time.monotonic()
        built = binaries.build(wanted)
        seconds = time.monotonic() - start
        self.state.step_seconds["binaries"] = round(seconds, 2)
        self.reporter.end(
            "binaries", seconds, "built " + ", ".join(f"{c} {s:.0f} s" for c, s in built.items())
        )

    def _cluster(self) -> None:
        if self.cluster.is_running():
            raise kube.StackError(
                f"cluster {self.options.name!r} is already running: `tessera dev status --name "
                f"{self.options.name}` shows it, `tessera dev down --name {self.options.name}` stops it"
            )
        self.cluster = DevCluster(self.cluster.layout.root, self.options.name, profile=load_profile(None))
        with self.step("control plane, GPU node pools and local node") as note:
            timings = self.cluster.up()
            note.append(", ".join(label for label in timings.steps if "nodes Ready" in label))
        self.state.save(self.cluster.layout.root)

    def helm(self) -> Path:
        """The pinned helm executable."""
        return binaries.component_dir("helm") / "helm"

    def kubectl(self) -> list[str]:
        """kubectl with this cluster's admin kubeconfig."""
        return [str(binaries.find_binaries().kubectl), "--kubeconfig", str(self.cluster.kubeconfig)]

    def _chart(self, rest: RestClient) -> None:
        with self.step("helm install (operator and router on the local node)") as note:
            kube.run_tool(
                [
                    str(self.helm()),
                    "install",
                    self.state.release,
                    str(self.repo / CHART),
                    "--namespace",
                    self.state.release_namespace,
                    "--create-namespace",
                    "--values",
                    str(self.repo / LOCAL_VALUES),
                    # The local node's loopback pod IPs cannot be in EndpointSlices: the router
                    # must watch pods (values-local-node.yaml says so too; this makes it certain).
                    "--set",
                    "router.endpointsFrom=pods",
                    *(arg for value in self.options.helm_set for arg in ("--set", value)),
                ],
                env=kube.kubeconfig_env(self.cluster.kubeconfig, self.cluster.layout.root / "helm"),
            )
            kube.poll("Tessera CRDs", lambda: kube.crds_established(rest), self.remaining(), lambda: "")
            note.append(f"release {self.state.release} in {self.state.release_namespace}")

    def _examples(self, rest: RestClient) -> None:
        files = CPU_EXAMPLES + (GPU_EXAMPLES if self.options.with_gpu_examples else ())
        with self.step("apply examples") as note:
            if self.options.with_gpu_examples:
                self._placeholder_hf_secret()
            for relative in files:
                manifest = _local_source((self.repo / relative).read_text())
                kube.run_tool(
                    [*self.kubectl(), "apply", "-n", self.state.models_namespace, "-f", "-"], stdin=manifest
                )
            note.append(", ".join(Path(f).name for f in files))

    def _placeholder_hf_secret(self) -> None:
        # The GPU examples name a Hugging Face token Secret. Their pods run on fake nodes and never
        # download, so a placeholder lets them be created exactly as on a real cluster.
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hf-token", "labels": {"app.kubernetes.io/part-of": "tessera-dev"}},
            "stringData": {"token": "placeholder-for-tessera-dev"},
        }
        kube.run_tool(
            [*self.kubectl(), "apply", "-n", self.state.models_namespace, "-f", "-"],
            stdin=yaml.safe_dump(secret),
        )

    def _router(self, rest: RestClient) -> str:
        namespace = self.state.release_namespace
        with self.step("router pod Ready") as note:
            kube.poll(
                "router pod",
                lambda: any(kube.pod_ready(p) for p in kube.pods(rest, namespace, ROUTER_SELECTOR)),
                self.remaining(),
                lambda: (
                    kube.describe_pods(rest, namespace, ROUTER_SELECTOR)
                    + f" (logs: tessera dev logs POD -n {namespace} --name {self.options.name})"
                ),
            )
            pod = next(p for p in kube.pods(rest, namespace, ROUTER_SELECTOR) if kube.pod_ready(p))
            url = f"http://{pod['status']['podIP']}:{_http_port(pod)}"
            note.append(url)
        self.state.router_url = url
        self.state.save(self.cluster.layout.root)
        return url

    def _model_ready(self, rest: RestClient, name: str) -> None:
        namespace = self.state.models_namespace

        def ready() -> bool:
            model = kube.get_model(rest, namespace, name)
            return model is not None and kube.condition(model, "Ready").get("status") == "True"

        def explain() -> str:
            model = kube.get_model(rest, namespace, name) or {}
            ready_condition = kube.condition(model, "Ready")
            selector = f"{MODEL_POD_SELECTOR},tessera.dev/model={name}"
            return (
                f"Model {namespace}/{name} Ready={ready_condition.get('status')} "
                f"({ready_condition.get('reason')}: {ready_condition.get('message')}); pods: "
                f"{kube.describe_pods(rest, namespace, selector)}; operator: "
                f"{kube.describe_pods(rest, self.state.release_namespace, 'app.kubernetes.io/component=operator')}"
            )

        with self.step(f"Model {name} Ready") as note:
            kube.poll(f"Model {namespace}/{name}", ready, self.remaining(), explain)
            model = kube.get_model(rest, namespace, name) or {}
            note.append(str(((model.get("status") or {}).get("plan") or {}).get("summary", "")))

    def _gpu_examples_placed(self, rest: RestClient) -> list[kube.ModelSummary]:
        """Wait (bounded) until the GPU examples are planned and their pods bound to fake GPU nodes."""
        names = {"llama-3-1-8b", "llama-3-1-70b"}
        namespace = self.state.models_namespace

        def placed() -> bool:
            for name in names:
                model = kube.get_model(rest, namespace, name) or {}
                if not (model.get("status") or {}).get("plan"):
                    return False
                selector = f"{MODEL_POD_SELECTOR},tessera.dev/model={name}"
                scheduled = [p for p in kube.pods(rest, namespace, selector) if p["spec"].get("nodeName")]
                if not scheduled:
                    return False
            return True

        with self.step("GPU examples planned and scheduled on fake nodes") as note:
            try:
                kube.poll("GPU examples", placed, min(self.remaining(), 120), lambda: "")
            except kube.StackError as error:
                note.append(f"[not all placed: {error}]")
        return [m for m in kube.list_models(rest) if m.name in names]


def _http_port(pod: dict[str, Any]) -> int:
    for container in pod["spec"]["containers"]:
        for port in container.get("ports") or []:
            if port.get("name") == "http":
                return int(port["containerPort"])
    return 8080


def _local_source(manifest: str) -> str:
    """The example manifest, adjusted for pods that are processes of this machine.

    - CPU Models get `TESSERA_GGUF_CACHE` pointing at this machine's Tessera cache: a local pod's
      HOME is its own fresh folder, so without it every start converts the GGUF file again (over
      a minute on 2 cores), while a real node keeps such a cache on its disk.
    """
    documents = list(yaml.safe_load_all(manifest))
    for document in documents:
        if not isinstance(document, dict) or document.get("kind") != "Model":
            continue
        spec = document.setdefault("spec", {})
        if "cpu" in ((spec.get("placement") or {}).get("accelerators") or []):
            env = spec.setdefault("engine", {}).setdefault("env", {})
            env.setdefault("TESSERA_GGUF_CACHE", str(cache_root() / "gguf"))
    return yaml.safe_dump_all(documents, sort_keys=False)


# -------------------------------------------------------------------- down / status
@dataclass(frozen=True)
class DownResult:
    """What `down` stopped and what (if anything) is still alive afterwards."""

    stopped: list[str]
    leftover: dict[int, str]
    seconds: float


def down(name: str, directory: Path | None = None, wait_leftovers: float = 10.0) -> DownResult:
    """Stop the cluster (which stops every local pod), then check no process of it is left."""
    start = time.monotonic()
    cluster = cluster_for(name, directory)
    stopped = cluster.down()
    root = cluster.layout.root
    leftover = processes_of(root) if root.is_dir() else {}
    deadline = time.monotonic() + wait_leftovers
    while leftover and time.monotonic() < deadline:  # processes in their last SIGKILL'd moments
        time.sleep(0.2)
        leftover = processes_of(root)
    state = StackState.load(root)
    if state is not None:
        state.router_url = None
        state.save(root)
    return DownResult(stopped, leftover, time.monotonic() - start)


def models_or_empty(cluster: DevCluster) -> list[kube.ModelSummary]:
    """Models when the API answers, else none (status must print with the cluster down)."""
    try:
        return kube.list_models(cluster.rest_client()) if cluster.is_running() else []
    except (OSError, RuntimeError):
        return []


def live_router_url(cluster: DevCluster, namespace: str) -> str | None:
    """The URL of a Ready router pod now (pod IPs change when a pod is replaced), or None."""
    try:
        ready = [p for p in kube.pods(cluster.rest_client(), namespace, ROUTER_SELECTOR) if kube.pod_ready(p)]
    except (OSError, RuntimeError):
        return None
    return f"http://{ready[0]['status']['podIP']}:{_http_port(ready[0])}" if ready else None


def pod_endpoints(cluster: DevCluster) -> list[dict[str, str]]:
    """The serving and Tessera pods with their loopback IPs (what `status` lists as endpoints)."""
    try:
        rest = cluster.rest_client()
        items = rest.checked("GET", "/api/v1/pods")["items"] if cluster.is_running() else []
    except (OSError, RuntimeError):
        return []
    rows = []
    for pod in items:
        labels = pod["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/name") not in ("tessera-model", "tessera"):
            continue
        rows.append(
            {
                "namespace": pod["metadata"]["namespace"],
                "pod": pod["metadata"]["name"],
                "component": labels.get("app.kubernetes.io/component", ""),
                "model": labels.get("tessera.dev/model", ""),
                "node": pod["spec"].get("nodeName") or "",
                "ip": (pod.get("status") or {}).get("podIP") or "",
                "ready": "yes" if kube.pod_ready(pod) else "no",
            }
        )
    return rows
