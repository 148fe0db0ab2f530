"""The policies the simulator can run: Tessera's, the peers' (with their published defaults), static and
the oracle. `POLICIES` maps each name to its spec (how to build it, its setting and its sweep)."""

from tessera_operator.simulator.policies import aibrix, hpa, knative, kubeai, llmd, oracle, static, tessera
from tessera_operator.simulator.policies.base import PolicyContext, PolicySpec, SimulatedPolicy

POLICIES: dict[str, PolicySpec] = {
    spec.name: spec
    for spec in (
        tessera.SPEC,
        kubeai.SPEC,
        knative.SPEC,
        hpa.SPEC,
        aibrix.SPEC,
        llmd.SPEC,
        static.SPEC,
        oracle.SPEC,
    )
}

__all__ = ["POLICIES", "PolicyContext", "PolicySpec", "SimulatedPolicy"]
