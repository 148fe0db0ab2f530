"""A local Kubernetes control plane made of real components running as child processes.

    cluster = DevCluster.named("dev")          # or DevCluster(Path(dir), name)
    timings = cluster.up()                     # certificates, etcd, apiserver, controllers, kwok, nodes
    cluster.kubeconfig                         # admin kubeconfig
    cluster.down()                             # stops everything, frees every port

`up` records pids, ports and versions in cluster.json, so `status`/`down` work from another process.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tessera_operator.devcluster import components, processes
from tessera_operator.devcluster.binaries import Binaries, find_binaries
from tessera_operator.devcluster.certs import make_cluster_pki
from tessera_operator.devcluster.kubeconfig import write_kubeconfig
from tessera_operator.devcluster.layout import SERVICE_IP, ClusterState, Layout
from tessera_operator.devcluster.paths import clusters_root
from tessera_operator.devcluster.processes import ProcessRecord
from tessera_operator.devcluster.profile import Profile, dump_profile, load_profile
from tessera_operator.devcluster.readiness import (
    ComponentDiedError,
    RestClient,
    create_nodes,
    http_ok,
    https_ok,
    wait_for,
    wait_nodes_ready,
    wait_service_account,
)

STAGES_FILE = Path(__file__).parent / "stages" / "kwok-stages.yaml"
Reporter = Callable[[str], None]


@dataclass
class UpTimings:
    """Seconds spent in each step of `up`, in order."""

    steps: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.steps.values())


@dataclass(frozen=True)
class ComponentStatus:
    """One component as `status` sees it."""

    name: str
    pid: int
    alive: bool
    log: str


class DevCluster:
    """One local cluster, identified by its directory."""

    def __init__(
        self,
        directory: Path,
        name: str | None = None,
        *,
        profile: Profile | None = None,
        audit: bool = False,
        die_with_parent: bool = False,
    ) -> None:
        self.layout = Layout(directory)
        self.name = name or directory.name
        self._profile = profile
        self.audit = audit
        self.die_with_parent = die_with_parent
        self._binaries: Binaries | None = None

    @staticmethod
    def named(name: str, *, profile: Profile | None = None, audit: bool = False) -> DevCluster:
        """The cluster kept under ~/.cache/tessera/clusters/<name>/."""
        return DevCluster(clusters_root() / name, name, profile=profile, audit=audit)

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    @property
    def profile(self) -> Profile:
        if self._profile is None:
            saved = self.layout.profile
            self._profile = load_profile(saved if saved.is_file() else None)
        return self._profile

    def state(self) -> ClusterState | None:
        return ClusterState.load(self.layout)

    def is_running(self) -> bool:
        """Whether the recorded apiserver process is alive."""
        state = self.state()
        record = state.processes.get("kube-apiserver") if state else None
        return record is not None and processes.is_alive(record)

    # ---------------------------------------------------------------- up
    def up(self, report: Reporter | None = None) -> UpTimings:
        """Start a fresh cluster and wait until the API answers and every node is Ready."""
        say = report or (lambda _msg: None)
        if self.is_running():
            raise RuntimeError(f"cluster {self.name!r} is already running (see `tessera dev cluster status`)")
        self.down()  # clear leftovers of a crashed run
        timings = UpTimings()
        mark = time.monotonic()

        def step(label: str) -> None:
            nonlocal mark
            now = time.monotonic()
            timings.steps[label] = now - mark
            mark = now
            say(f"{label} ({timings.steps[label]:.1f} s)")

        self._binaries = find_binaries()
        state = self._prepare()
        step("certificates and configuration")
        try:
            self._start(state, "etcd", self._argv("etcd", state))
            wait_for(
                "etcd",
                lambda: http_ok(f"http://127.0.0.1:{state.ports['etcd']}/health"),
                30,
                self._watch(state, "etcd"),
            )
            step("etcd ready")
            self._start(state, "kube-apiserver", self._argv("kube-apiserver", state))
            # These wait for the apiserver themselves: starting them now overlaps their start-up
            # (binaries loading, Python imports) with the apiserver's.
            for early in ("kube-scheduler", "local-node"):
                if early != "local-node" or state.local_node:
                    self._start(state, early, self._argv(early, state))
            self._wait_apiserver(state)
            step("kube-apiserver ready")
            # Not earlier: the controller-manager exits when its health check is forbidden, which
            # happens until the apiserver has bootstrapped its RBAC roles (part of /readyz).
            self._start(state, "kube-controller-manager", self._argv("kube-controller-manager", state))
            self._start(state, "kwok", self._argv("kwok", state))
            client = self.rest_client(state)
            create_nodes(client, self.profile)
            expected = sum(pool.count for pool in self.profile.node_pools) + (1 if state.local_node else 0)
            wait_nodes_ready(client, expected, 90, self._watch(state, *state.processes))
            step(f"{expected} nodes Ready")
            wait_service_account(
                client, "default", "default", 60, self._watch(state, "kube-controller-manager")
            )
            step("controller-manager serving accounts")
        except BaseException:
            self.down()
            raise
        state.up_seconds = timings.total
        state.save(self.layout)
        return timings

    def rest_client(self, state: ClusterState | None = None) -> RestClient:
        """A small admin REST client (used where importing `kubernetes` would cost seconds)."""
        state = state or self.state()
        if state is None:
            raise RuntimeError(f"cluster {self.name!r} has no state (not started)")
        pki = self.layout.pki
        return RestClient(state.server, pki / "ca.crt", pki / "admin.crt", pki / "admin.key")

    def _prepare(self) -> ClusterState:
        assert self._binaries is not None
        root = self.layout.root
        for stale in ("pki", "etcd-data", "kubeconfigs", "node"):
            shutil.rmtree(root / stale, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        self.layout.logs.mkdir(exist_ok=True)
        for old_log in self.layout.logs.glob("*.log"):
            old_log.unlink()
        local = self.profile.local_node.name if self.profile.local_node.enabled else None
        ports = {"etcd": 0, "etcdPeer": 0, "apiserver": 0, "localNode": 0}
        chosen: set[int] = set()
        for key in ports:
            port = processes.free_port()
            while port in chosen:
                port = processes.free_port()
            chosen.add(port)
            ports[key] = port
        pki = make_cluster_pki(
            self.layout.pki,
            components.identities(local),
            SERVICE_IP,
            extra_servers={"local-node-serving": ("127.0.0.1",)} if local else None,
        )
        server = f"https://127.0.0.1:{ports['apiserver']}"
        write_kubeconfig(
            self.kubeconfig, self.name, server, pki["ca"].cert, pki["admin"].cert, pki["admin"].key
        )
        for identity in components.identities(local):
            if identity.file_stem in ("admin", "apiserver-kubelet-client"):
                continue
            paths = pki[identity.file_stem]
            write_kubeconfig(
                self.layout.component_kubeconfig(identity.file_stem),
                self.name,
                server,
                pki["ca"].cert,
                paths.cert,
                paths.key,
            )
        dump_profile(self.profile, self.layout.profile)
        shutil.copyfile(STAGES_FILE, self.layout.kwok_stages)
        if self.audit:
            components.write_audit_policy(self.layout.audit_policy)
        state = ClusterState(
            self.name,
            ports,
            kubernetes_version=self._binaries.kubernetes_version,
            local_node=local,
            audit=self.audit,
        )
        state.save(self.layout)
        return state

    def _start(self, state: ClusterState, component: str, argv: list[str]) -> ProcessRecord:
        record = processes.start(
            component,
            argv,
            self.layout.log(component),
            cwd=self.layout.root,
            die_with_parent=self.die_with_parent,
        )
        state.processes[component] = record
        state.save(self.layout)
        return record

    def _wait_apiserver(self, state: ClusterState) -> None:
        pki = self.layout.pki
        url = f"{state.server}/readyz"
        wait_for(
            "kube-apiserver",
            lambda: https_ok(url, pki / "ca.crt", pki / "admin.crt", pki / "admin.key"),
            120,
            self._watch(state, "kube-apiserver"),
        )

    def _watch(self, state: ClusterState, *names: str) -> Callable[[], None]:
        """A check, called while waiting, that fails fast with the log tail when a component died."""

        def check() -> None:
            for name in names:
                record = state.processes.get(name)
                if record is not None and not processes.is_alive(record):
                    raise ComponentDiedError(name, Path(record.log))

        return check

    # ---------------------------------------------------------------- restart / down / status
    def restart_component(self, component: str) -> None:
        """Stop one component and start it again with the same ports and data (e.g. the apiserver)."""
        state = self.state()
        if state is None or component not in state.processes:
            raise RuntimeError(f"{component} is not part of running cluster {self.name!r}")
        self._binaries = self._binaries or find_binaries()
        grace = components.STOP_GRACE.get(component, components.DEFAULT_STOP_GRACE)
        processes.stop(state.processes.pop(component), grace_seconds=grace)
        self._start(state, component, self._argv(component, state))
        if component == "kube-apiserver":
            self._wait_apiserver(state)
        state.save(self.layout)

    def _argv(self, component: str, state: ClusterState) -> list[str]:
        binaries = self._binaries or find_binaries()
        if component == "etcd":
            return components.etcd(binaries, self.layout, state.ports)
        if component == "kube-apiserver":
            return components.kube_apiserver(binaries, self.layout, state.ports, state.audit)
        if component == "kube-controller-manager":
            return components.kube_controller_manager(binaries, self.layout)
        if component == "kube-scheduler":
            return components.kube_scheduler(binaries, self.layout)
        if component == "kwok":
            return components.kwok(binaries, self.layout)
        if component == "local-node":
            return components.local_node(self.layout)
        raise ValueError(f"unknown component {component!r}")

    def down(self) -> list[str]:
        """Stop every component (reverse start order) and any pod process the local node left; returns names stopped."""
        state = self.state()
        if state is None:
            return []
        stopped: list[str] = []
        for name in reversed(components.ORDER):
            record = state.processes.get(name)
            if record is None:
                continue
            alive = processes.is_alive(record)
            grace = components.STOP_GRACE.get(name, components.DEFAULT_STOP_GRACE)
            processes.stop(record, grace_seconds=grace)
            if alive:
                stopped.append(name)
        self._sweep_pod_processes()
        state.processes.clear()
        state.save(self.layout)
        return stopped

    def _sweep_pod_processes(self) -> None:
        """Kill pod processes a crashed local node agent could have left (it records them)."""
        record_file = self.layout.node_dir / "processes.json"
        with contextlib.suppress(FileNotFoundError, ValueError):
            for entry in json.loads(record_file.read_text()):
                processes.stop(ProcessRecord.from_json(entry), grace_seconds=2)

    def delete(self) -> None:
        """Stop the cluster and remove its directory."""
        self.down()
        shutil.rmtree(self.layout.root, ignore_errors=True)

    def component_status(self) -> list[ComponentStatus]:
        """Whether each recorded component still runs."""
        state = self.state()
        if state is None:
            return []
        return [
            ComponentStatus(name, record.pid, processes.is_alive(record), record.log)
            for name, record in state.processes.items()
        ]

    def log_tails(self, lines: int = 40) -> dict[str, str]:
        """The last lines of each component's log (attached to failing tests' reports)."""
        tails: dict[str, str] = {}
        for log in sorted(self.layout.logs.glob("*.log")):
            if log.name == "audit.log":
                continue
            with log.open("rb") as handle:
                handle.seek(0, 2)
                handle.seek(max(0, handle.tell() - 200 * lines))
                text = handle.read().decode(errors="replace")
            tails[log.stem] = "\n".join(text.splitlines()[-lines:])
        return tails
