"""Command lines of the control plane's components, and the identities they authenticate as."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from tessera_operator.devcluster.binaries import Binaries
from tessera_operator.devcluster.certs import ClientIdentity
from tessera_operator.devcluster.layout import ADMIN_USER, FAKE_POD_CIDR, SERVICE_CIDR, Layout
from tessera_operator.devcluster.profile import FAKE_NODE_ANNOTATION

# Start order; `down` stops in reverse.
ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "local-node")
# Seconds between SIGTERM and SIGKILL. The local node first stops its pods. The apiserver's graceful
# termination waits on its clients' long watches; its state is in etcd, so it need not wait long.
STOP_GRACE = {"local-node": 40.0, "kube-apiserver": 3.0}
DEFAULT_STOP_GRACE = 10.0


def identities(local_node: str | None) -> tuple[ClientIdentity, ...]:
    """Client-certificate users: admin and kwok are cluster admins; the others get their own RBAC."""
    users = [
        ClientIdentity("admin", ADMIN_USER, ("system:masters",)),
        ClientIdentity("kube-controller-manager", "system:kube-controller-manager"),
        ClientIdentity("kube-scheduler", "system:kube-scheduler"),
        ClientIdentity("kwok", "tessera-dev-kwok", ("system:masters",)),
        ClientIdentity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)),
    ]
    if local_node:
        # The local node authenticates like a kubelet, so the Node authorizer and NodeRestriction apply.
        users.append(ClientIdentity("local-node", f"system:node:{local_node}", ("system:nodes",)))
    return tuple(users)


def etcd(binaries: Binaries, layout: Layout, ports: dict[str, int]) -> list[str]:
    client = f"http://127.0.0.1:{ports['etcd']}"
    peer = f"http://127.0.0.1:{ports['etcdPeer']}"
    return [
        str(binaries.etcd),
        "--name=default",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--log-level=warn",
        # A throw-away local store: skipping fsync makes writes fast on slow disks.
        "--unsafe-no-fsync=true",
        "--quota-backend-bytes=4294967296",
    ]


def kube_apiserver(binaries: Binaries, layout: Layout, ports: dict[str, int], audit: bool) -> list[str]:
    pki = layout.pki
    argv = [
        str(binaries.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports['apiserver']}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=Node,RBAC",
        # PodSecurity and the others are on by default; NodeRestriction confines the local node.
        "--enable-admission-plugins=NodeRestriction",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # One apiserver on loopback: no endpoint reconciling for the `kubernetes` Service.
        "--endpoint-reconciler-type=none",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--allow-privileged=true",
        "--v=1",
    ]
    if audit:
        argv += [
            f"--audit-policy-file={layout.audit_policy}",
            f"--audit-log-path={layout.audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxsize=200",
        ]
    return argv


def kube_controller_manager(binaries: Binaries, layout: Layout) -> list[str]:
    pki = layout.pki
    return [
        str(binaries.kube_controller_manager),
        f"--kubeconfig={layout.component_kubeconfig('kube-controller-manager')}",
        "--controllers=*",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        "--use-service-account-credentials=true",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--leader-elect=false",
        "--secure-port=0",  # no metrics/health listener: no port to clean up
        "--v=1",
    ]


def kube_scheduler(binaries: Binaries, layout: Layout) -> list[str]:
    return [
        str(binaries.kube_scheduler),
        f"--kubeconfig={layout.component_kubeconfig('kube-scheduler')}",
        "--leader-elect=false",
        "--secure-port=0",
        "--v=1",
    ]


def kwok(binaries: Binaries, layout: Layout) -> list[str]:
    key, value = FAKE_NODE_ANNOTATION
    return [
        str(binaries.kwok),
        f"--kubeconfig={layout.component_kubeconfig('kwok')}",
        f"--config={layout.kwok_stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={key}={value}",
        f"--cidr={FAKE_POD_CIDR}",
        "--node-ip=127.0.0.1",
        "--node-lease-duration-seconds=40",
        "--v=WARN",  # INFO logs every lease renewal of every fake node
    ]


def local_node(layout: Layout) -> list[str]:
    """The agent behind `tessera dev node`, from this Python environment.

    Started as `python -m tessera_operator.devcluster.node` (the same code): the full `tessera` CLI
    imports every command group, which would add seconds to each cluster start.
    """
    return [sys.executable, "-m", "tessera_operator.devcluster.node", "--cluster-dir", str(layout.root)]


def write_audit_policy(path: Path) -> None:
    """Record writes at Metadata level (enough to count the operator's idle writes); skip reads."""
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "None", "verbs": ["get", "list", "watch"]},
            {"level": "Metadata"},
        ],
    }
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
