"""How many replicas a version runs (pure): the seam where the autoscaler plugs in.

Until the tessera autoscaling loop writes its decision, every policy runs `spec.replicas` (set by a
user, or by HPA/KEDA through the scale subresource) or else `autoscaling.minReplicas`.
"""

from __future__ import annotations

from tessera_operator.api.v1alpha1 import ModelSpec, ModelStatus


def static_replicas(spec: ModelSpec) -> int:
    """spec.replicas when set, else autoscaling.minReplicas (0 only when minReplicas allows it)."""
    if spec.replicas is not None:
        return spec.replicas
    return spec.autoscaling.min_replicas


def desired_replicas(spec: ModelSpec, status: ModelStatus) -> int:
    """Replicas to run now.

    With policy `tessera`, the autoscaler records its decision in status.autoscaling.desiredReplicas;
    it is honoured (within the bounds) once present. Otherwise: `static_replicas`.
    """
    bounds = spec.autoscaling
    decision = status.autoscaling
    if bounds.policy == "tessera" and decision is not None and decision.reason:
        return max(bounds.min_replicas, min(bounds.max_replicas, decision.desired_replicas))
    return static_replicas(spec)
