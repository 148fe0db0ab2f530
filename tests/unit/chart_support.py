"""Render the Helm chart with the project's pinned helm, and read what it renders.

helm is built from its Go module by hack/build-binaries.sh into the binaries cache (the version is
pinned in hack/versions.env); tests that need it FAIL, saying how to build it, when it is missing.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tessera_operator.devcluster.binaries import component_dir

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tessera"
CI_VALUES = CHART / "ci"
RELEASE, NAMESPACE = "tessera", "tessera-system"
MONITORING_APIS = (
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)
Json = dict[str, Any]


def helm_binary() -> Path:
    """The pinned helm, or a test failure that says how to build it."""
    folder = component_dir("helm")
    binary = folder / "helm"
    if not (folder / ".complete").is_file() or not binary.is_file():
        pytest.fail(f"helm is not built ({binary}): run `hack/build-binaries.sh helm` (or `make cluster-binaries`)")
    return binary


def helm(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run helm with the given arguments (no kubeconfig: template and lint never reach a cluster)."""
    result = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, timeout=timeout,
                            check=False, env={"HOME": "/tmp/tessera-helm-home", "PATH": "/usr/bin:/bin",
                                              "HELM_CACHE_HOME": "/tmp/tessera-helm-cache",
                                              "HELM_CONFIG_HOME": "/tmp/tessera-helm-config",
                                              "HELM_DATA_HOME": "/tmp/tessera-helm-data"})
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def template_args(values: Sequence[str | Path] = (), sets: Sequence[str] = (),
                  api_versions: Sequence[str] = ()) -> list[str]:
    """Arguments of `helm template` for the chart with these values files, --set pairs and APIs."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", "1.34.0"]
    for path in values:
        args += ["--values", str(path)]
    for pair in sets:
        args += ["--set", pair]
    for api in api_versions:
        args += ["--api-versions", api]
    return args


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (the apiserver's strict decoding refuses them too)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    keys = [loader.construct_object(key, deep=deep) for key, _ in node.value]
    duplicates = sorted({str(k) for k in keys if keys.count(k) > 1})
    if duplicates:
        raise AssertionError(f"duplicate keys {duplicates} in the rendered chart at {node.start_mark}")
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


@functools.lru_cache(maxsize=64)
def _rendered_text(args: tuple[str, ...]) -> str:
    return helm(*args).stdout


def render(values: Sequence[str | Path] = (), sets: Sequence[str] = (),
           api_versions: Sequence[str] = ()) -> list[Json]:
    """Every object `helm template` renders (hooks included); fresh objects, cached helm runs."""
    output = _rendered_text(tuple(template_args(values, sets, api_versions)))
    return [doc for doc in yaml.load_all(output, Loader=_StrictLoader) if doc]


def find(objects: list[Json], kind: str, name: str | None = None) -> list[Json]:
    """Objects of a kind (and name)."""
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Json], kind: str, name: str | None = None) -> Json:
    """The single object of a kind (and name)."""
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(objects: list[Json]) -> Iterator[tuple[str, Json]]:
    """(object name, pod spec) of every pod template the chart renders."""
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            yield f"{obj['kind']}/{obj['metadata']['name']}", spec["template"]["spec"]
        elif obj["kind"] == "CronJob":
            yield f"CronJob/{obj['metadata']['name']}", spec["jobTemplate"]["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            yield f"Pod/{obj['metadata']['name']}", spec


def env_of(container: Json) -> dict[str, str]:
    """A container's literal environment values."""
    return {e["name"]: e.get("value", "") for e in container.get("env") or [] if "value" in e}


VALUES_SETS: dict[str, tuple[list[Path], list[str]]] = {
    "default": ([], []),
    "ha": ([CI_VALUES / "ha-values.yaml"], []),
    "monitoring": ([CI_VALUES / "monitoring-values.yaml"], list(MONITORING_APIS)),
    "api-keys": ([CI_VALUES / "api-keys-values.yaml"], []),
    "local-node": ([CHART / "values-local-node.yaml"], []),
}


def render_set(name: str) -> list[Json]:
    """Render one of the named values sets."""
    values, apis = VALUES_SETS[name]
    return render(values, api_versions=apis)


def load_yaml(path: Path) -> Any:
    """A YAML file's content."""
    return yaml.safe_load(path.read_text())
