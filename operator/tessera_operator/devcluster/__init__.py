"""A real local Kubernetes control plane for development and tests (see docs/devcluster.md).

etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from Go modules, kwok
playing the kubelets of fake GPU node pools, and a local node agent that runs its pods as
processes. Entry points: `tessera_operator.devcluster.cluster.DevCluster` (Python),
`tessera dev cluster ...` (CLI) and the pytest plugin `tessera_operator.devcluster.pytest_plugin`.
Nothing is imported here, so the node agent starts without loading the Kubernetes client.
"""
