"""The local node: a kubelet-like agent that runs the pods bound to it as local processes.

See docs/devcluster.md for what it does and its limits (no containers, no kube-proxy, mount paths
mapped under each pod's directory).
"""
