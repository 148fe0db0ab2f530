"""Shared pytest setup: the local control plane's plugin (fixtures dev_cluster, kubeconfig_path,
kube_api, namespace; see tessera_operator.devcluster.pytest_plugin). The cluster starts only when
a test asks for it, so unit tests never pay for it."""

pytest_plugins = ["tessera_operator.devcluster.pytest_plugin"]
