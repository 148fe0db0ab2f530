"""Tessera's LLM-aware autoscaling policy (pure: data in, data out; no I/O, no Kubernetes).

The operator's loop and the simulator call the same function:

    decision, state = decide(state, observation, config)

`Observation` carries the router's and the pods' metrics, `PolicyConfig` the Model's bounds, SLO and the
policy's targets, `PolicyState` what the policy remembers between calls (serialisable for Model.status),
and `Decision` the desired replica count with a one-sentence reason.
"""

from tessera_operator.autoscaling.config import PolicyConfig
from tessera_operator.autoscaling.observation import Decision, Observation, PodSample
from tessera_operator.autoscaling.policy import decide
from tessera_operator.autoscaling.state import DemandSample, PolicyState

__all__ = ["Decision", "DemandSample", "Observation", "PodSample", "PolicyConfig", "PolicyState", "decide"]
