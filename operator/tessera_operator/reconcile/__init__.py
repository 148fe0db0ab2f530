"""Reconciling Models (not pure: reads and writes the cluster through `tessera_operator.k8s`)."""

from .reconciler import Reconciler, ReconcileResult, RetryLater

__all__ = ["ReconcileResult", "Reconciler", "RetryLater"]
