"""Faults on the operator's side (issue 14), with GPU Models on kwok nodes (cheap: nothing runs).

The operator is SIGKILLed at seeded random points while it creates and scales a Model, and started
again each time; the Model must end exactly as an undisturbed twin does (same operator, same steps,
no kill): same objects, replicas, versions, traffic and conditions, and never a duplicate workload.
The `long` variants kill at more points, with more seeds (`make test-long`).
"""

from __future__ import annotations

import pytest
from fault_helpers import (
    assert_no_duplicate_workloads,
    end_state,
    gpu_model,
    kill_and_restart,
    kill_points,
    wait_same_state,
)
from operator_helpers import (  # noqa: F401 (the *_fixture names register fixtures)
    OperatorProcess,
    create_model,
    kube_fixture,
    operator_fixture,
    tessera_crds_fixture,
    wait_condition,
    wait_until,
)

from tessera_operator.k8s import Kube
from tessera_operator.k8s.resources import MODEL

pytestmark = pytest.mark.cluster
# Each step: the replicas the Model is patched to (None: created with 1).
STEPS: tuple[int | None, ...] = (None, 3, 2)


def _step(kube: Kube, namespace: str, name: str, replicas: int | None) -> None:
    if replicas is None:
        create_model(kube, namespace, gpu_model(name, replicas=1))
    else:
        kube.merge_patch(MODEL, namespace, name, {"spec": {"replicas": replicas}})


def _settled(kube: Kube, namespace: str, name: str, count: int) -> bool:
    """All `count` replicas ready, in the pods and in status, and nothing in progress."""
    state = end_state(kube, namespace, name)
    return (state["readyPods"] == count and state["replicas"] == (count, count)
            and ("Progressing", "False", "Available") in state["conditions"])


def _wait_settled(kube: Kube, namespace: str, name: str, count: int) -> None:
    wait_until(f"{count} settled replicas of {name}", lambda: _settled(kube, namespace, name, count), timeout=90)


def _undisturbed(kube: Kube, namespace: str, name: str) -> list[dict[str, object]]:
    """The twin's state after each step, without faults."""
    states = []
    for replicas in STEPS:
        _step(kube, namespace, name, replicas)
        wait_condition(kube, namespace, name, "Ready", "True", "Available", timeout=120)
        _wait_settled(kube, namespace, name, replicas or 1)
        states.append(end_state(kube, namespace, name))
    return states


def _run_with_kills(kube: Kube, namespace: str, operator: OperatorProcess, seed: int, kills_per_step: int) -> None:
    reference = _undisturbed(kube, namespace, "steady")
    killed: list[str] = []
    for index, replicas in enumerate(STEPS):
        _step(kube, namespace, "chaos", replicas)
        # Kill points spread over the reconcile (operator start-up takes ~2 s here, a reconcile < 1 s).
        kill_and_restart(operator, kill_points(seed * 100 + index, kills_per_step, 0.05, 2.5), killed)
        wait_same_state(kube, namespace, "chaos", reference[index], timeout=180)
        assert_no_duplicate_workloads(kube, namespace, "chaos")
    assert len(killed) == kills_per_step * len(STEPS)
    assert operator.alive()


def test_operator_killed_during_create_and_scale_ends_like_an_undisturbed_run(
    kube: Kube, namespace: str, operator: OperatorProcess
) -> None:
    _run_with_kills(kube, namespace, operator, seed=14, kills_per_step=1)


@pytest.mark.long
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_operator_killed_often_during_create_and_scale_ends_like_an_undisturbed_run(
    kube: Kube, namespace: str, operator: OperatorProcess, seed: int
) -> None:
    _run_with_kills(kube, namespace, operator, seed=seed, kills_per_step=3)
