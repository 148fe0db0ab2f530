"""The control plane's binaries: find them in the cache, or build them with hack/build-binaries.sh.

The versions come from hack/versions.env (the one place that pins them); binaries live in
`<cache>/bin/<component>-<version>/` and a `.complete` marker says a build finished.
"""

from __future__ import annotations

import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tessera_operator.devcluster import paths

BUILD_HINT = (
    "build them with `make cluster-binaries` (or `hack/build-binaries.sh` from the repository root; "
    "a cold build takes 25 to 40 minutes on 2 cores) or run `tessera dev cluster up --build`"
)

# component name in build-binaries.sh -> (version key in versions.env, executables it provides)
COMPONENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "etcd": ("ETCD_VERSION", ("etcd",)),
    "kubernetes": (
        "KUBERNETES_VERSION",
        ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"),
    ),
    "kwok": ("KWOK_VERSION", ("kwok",)),
    "helm": ("HELM_VERSION", ("helm",)),
}
CONTROL_PLANE = ("etcd", "kubernetes", "kwok")


class BinariesMissingError(RuntimeError):
    """Raised when a binary the control plane needs has not been built."""


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the executables a cluster runs."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    kubernetes_version: str


def versions() -> dict[str, str]:
    """The pinned versions from hack/versions.env."""
    root = paths.repo_root()
    if root is None:
        raise BinariesMissingError(
            "cannot find hack/versions.env (run from a Tessera checkout or set TESSERA_REPO)"
        )
    return paths.read_env_file(root / paths.VERSIONS_FILE)


def component_dir(component: str, pinned: dict[str, str] | None = None) -> Path:
    """The cache folder of one component at its pinned version."""
    pinned = pinned if pinned is not None else versions()
    key, _ = COMPONENTS[component]
    return paths.binaries_root() / f"{component}-{pinned[key]}"


def missing_components(components: tuple[str, ...] = CONTROL_PLANE) -> list[str]:
    """Components whose build is not complete in the cache."""
    pinned = versions()
    return [c for c in components if not (component_dir(c, pinned) / ".complete").is_file()]


def find_binaries() -> Binaries:
    """Locate the control plane's executables, or raise BinariesMissingError with how to build them."""
    pinned = versions()
    missing = missing_components()
    if missing:
        where = ", ".join(str(component_dir(c, pinned)) for c in missing)
        raise BinariesMissingError(f"control-plane binaries not built ({where}): {BUILD_HINT}")
    kube = component_dir("kubernetes", pinned)
    return Binaries(
        etcd=component_dir("etcd", pinned) / "etcd",
        kube_apiserver=kube / "kube-apiserver",
        kube_controller_manager=kube / "kube-controller-manager",
        kube_scheduler=kube / "kube-scheduler",
        kubectl=kube / "kubectl",
        kwok=component_dir("kwok", pinned) / "kwok",
        kubernetes_version=pinned["KUBERNETES_VERSION"],
    )


def build(components: tuple[str, ...] = CONTROL_PLANE, console: Console | None = None) -> dict[str, float]:
    """Build the missing components with hack/build-binaries.sh, showing progress; returns seconds each."""
    console = console or Console(stderr=True)
    root = paths.repo_root()
    if root is None:
        raise BinariesMissingError("cannot find hack/build-binaries.sh (run from a Tessera checkout)")
    timings: dict[str, float] = {}
    for component in missing_components(components):
        start = time.monotonic()
        _run_build(root, component, console)
        timings[component] = time.monotonic() - start
        console.print(f"[green]built[/] {component} in {timings[component]:.0f} s")
    return timings


def _run_build(root: Path, component: str, console: Console) -> None:
    command = ["bash", str(root / paths.BUILD_SCRIPT), component]
    last_lines: deque[str] = deque(maxlen=30)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with (
        subprocess.Popen(
            command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as process,
        Progress(*columns, console=console, transient=True) as progress,
    ):
        task = progress.add_task(f"building {component}", total=None)
        assert process.stdout is not None
        for line in process.stdout:
            last_lines.append(line.rstrip())
            progress.update(task, description=f"building {component}: {line.strip()[:80]}")
        code = process.wait()
    if code != 0:
        tail = "\n".join(last_lines)
        raise RuntimeError(f"building {component} failed (exit {code}):\n{tail}")
