"""Parsing the apiserver's request counters, as the cluster tests and the scale benchmark read them."""

from __future__ import annotations

from tessera_operator.k8s.apiserver_metrics import request_samples, request_totals

PAGE = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",group="tessera.dev",resource="models",scope="resource",subresource="",verb="POST",version="v1alpha1"} 3
apiserver_request_total{code="200",component="apiserver",group="tessera.dev",resource="models",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 7
apiserver_request_total{code="409",component="apiserver",group="tessera.dev",resource="models",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 2
apiserver_request_total{code="200",component="apiserver",group="apps",resource="deployments",scope="resource",subresource="",verb="APPLY",version="v1"} 1.5e+01
apiserver_request_total{code="200",component="apiserver",group="apps",resource="deployments",scope="namespace",subresource="",verb="LIST",version="v1"} 40
apiserver_request_duration_seconds_count{resource="models",verb="POST"} 99
"""


def test_samples_carry_their_labels_and_values_and_skip_other_metrics() -> None:
    samples = list(request_samples(PAGE))
    assert len(samples) == 5
    assert samples[3][0]["verb"] == "APPLY" and samples[3][1] == 15.0


def test_totals_sum_writes_per_resource_and_subresource() -> None:
    assert request_totals(PAGE, {"models", "deployments"}) == {
        "models": 3.0, "models/status": 9.0, "deployments": 15.0,
    }
    assert request_totals(PAGE, {"deployments"}, {"LIST"}) == {"deployments": 40.0}
    assert request_totals(PAGE, {"pods"}) == {}
