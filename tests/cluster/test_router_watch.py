"""The router learns Models and their endpoints from the real API by watch, and marks demand (issue 9).

A Model with a hand-written status (through the status subresource) stands in for the operator.
Endpoints come from a real pod on the local node (a fake OpenAI server on its loopback pod IP,
watched as a pod, since the EndpointSlice API refuses loopback addresses) and from an EndpointSlice
made by hand (watched, never sent traffic).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
import yaml
from cluster_helpers import POD_IP_ENV, container, local_pod_spec, pod_manifest, wait_until
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tessera_runtime.router.core import Router, RouterSettings
from tessera_runtime.router.hold import HoldSettings
from tessera_runtime.router.kube_source import KubeSource
from tessera_runtime.router.testing import serve_router

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "tessera.dev", "v1alpha1", "models"


@pytest.fixture(scope="module")
def model_crd(kube_api: k8s.ApiClient) -> None:
    """The Model CRD, applied and Established."""
    ext = k8s.ApiextensionsV1Api(kube_api)
    crd = yaml.safe_load((REPO / "crds" / "tessera.dev_models.yaml").read_text())
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as error:
        if error.status != 409:
            raise

    def established() -> bool:
        status = ext.read_custom_resource_definition(crd["metadata"]["name"]).status
        conditions = (status.conditions if status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_until("Model CRD Established", established, timeout=30)


def _slice(name: str, model: str, version: str, conditions: dict[str, bool]) -> dict[str, Any]:
    # The EndpointSlice API refuses loopback addresses, so this one holds a documentation address
    # (TEST-NET-1) that no request is ever sent to.
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {
            "tessera.dev/model": model, "tessera.dev/version": version,
            "kubernetes.io/service-name": f"{model}-{version}",
            "endpointslice.kubernetes.io/managed-by": "tessera-tests",
        }},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["192.0.2.10"], "conditions": conditions}],
    }


def _create_model(custom: k8s.CustomObjectsApi, namespace: str, name: str, version: str) -> None:
    """A Model, and the status the operator would write (through the status subresource)."""
    model: dict[str, Any] = yaml.safe_load((REPO / "examples" / "smollm2-cpu.yaml").read_text())
    model["metadata"] = {"name": name}
    model["spec"]["aliases"] = [f"{name}-alias"]
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, model)
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name,
        {"status": {"traffic": [{"version": version, "weight": 100}], "stable": {"version": version}}},
        _content_type="application/merge-patch+json",
    )


def _serving_pod(name: str, model: str, version: str) -> dict[str, Any]:
    """A pod on the local node running the fake OpenAI server on its (loopback) pod IP."""
    server = container(
        "server",
        ["python", "-m", "tessera_runtime.router.testing", "--host", "$(POD_IP)", "--port", "8000", "--name", name],
        env=[POD_IP_ENV],
        ports=[{"containerPort": 8000, "name": "http"}],
        readinessProbe={"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 1},
    )
    labels = {"tessera.dev/model": model, "tessera.dev/version": version}
    return dict(pod_manifest(name, local_pod_spec([server], terminationGracePeriodSeconds=5), labels=labels))


def test_router_follows_models_and_serving_pods_by_watch(model_crd: None, kube_api: k8s.ApiClient,
                                                         namespace: str) -> None:
    custom, core = k8s.CustomObjectsApi(kube_api), k8s.CoreV1Api(kube_api)
    version = "aaa1111111"
    _create_model(custom, namespace, "smol", version)

    async def scenario() -> None:
        router = Router(RouterSettings(hold=HoldSettings(timeout=120, demand_interval=5)))
        source = KubeSource(router.table, router.keys, kube_api, namespace=namespace, endpoints_from="pods")
        router.marker.mark = source.mark_demand
        router.synced.append(source.synced)
        source.start()
        try:
            await asyncio.wait_for(source.synced.wait(), 30)
            route = router.table.lookup("smol-alias")
            assert route is not None and route.spec.served_name == "smollm2-135m-instruct"
            assert route.spec.traffic == ((version, 100),)
            async with serve_router(router) as url, aiohttp.ClientSession() as session:
                body = json.dumps({"model": "smollm2-135m-instruct", "prompt": "hi"}).encode()
                held = asyncio.create_task(session.post(url + "/v1/completions", data=body))

                def demand_marked() -> bool:
                    obj: Any = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "smol")
                    return "tessera.dev/demand-at" in (obj["metadata"].get("annotations") or {})

                await asyncio.to_thread(wait_until, "the demand annotation", demand_marked, 20)
                assert not held.done()
                # "Scale from zero": a serving pod starts; once Ready, the watch delivers it and the request goes.
                await asyncio.to_thread(core.create_namespaced_pod, namespace,
                                        cast(Any, _serving_pod("smol-pod", "smol", version)))
                response = await asyncio.wait_for(held, 100)
                assert response.status == 200 and response.headers["X-Upstream"] == "smol-pod"
                response.release()
                # Graceful deletion: the pod is terminating, so it gets no new requests.
                await asyncio.to_thread(core.delete_namespaced_pod, "smol-pod", namespace)
                await asyncio.to_thread(wait_until, "the pod's termination",
                                        lambda: not route.accepting(version, 0.0), 30)
            await asyncio.to_thread(custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, "smol")
            await asyncio.to_thread(wait_until, "the Model's removal",
                                    lambda: router.table.lookup("smol-alias") is None, 20)
        finally:
            source.stop()

    asyncio.run(scenario())


def test_router_reads_endpoint_slices_by_watch(model_crd: None, kube_api: k8s.ApiClient, namespace: str) -> None:
    custom, discovery = k8s.CustomObjectsApi(kube_api), k8s.DiscoveryV1Api(kube_api)
    version = "bbb2222222"
    _create_model(custom, namespace, "sliced", version)

    async def scenario() -> None:
        router = Router()
        source = KubeSource(router.table, router.keys, kube_api, namespace=namespace)
        source.start()
        try:
            await asyncio.wait_for(source.synced.wait(), 30)
            route = router.table.lookup("sliced-alias")
            assert route is not None and not route.has_capacity(0.0)
            await asyncio.to_thread(discovery.create_namespaced_endpoint_slice, namespace,
                                    cast(Any, _slice("sliced-x", "sliced", version, {"ready": True})))
            await asyncio.to_thread(wait_until, "the slice's endpoint", lambda: route.has_capacity(0.0), 20)
            assert [e.url for e in route.accepting(version, 0.0)] == ["http://192.0.2.10:8000"]
            await asyncio.to_thread(discovery.replace_namespaced_endpoint_slice, "sliced-x", namespace,
                                    cast(Any, _slice("sliced-x", "sliced", version,
                                                     {"ready": False, "serving": True, "terminating": True})))
            await asyncio.to_thread(wait_until, "the terminating condition", lambda: not route.has_capacity(0.0), 20)
            assert route.endpoints[version]["http://192.0.2.10:8000"].terminating
            await asyncio.to_thread(discovery.delete_namespaced_endpoint_slice, "sliced-x", namespace)
            await asyncio.to_thread(wait_until, "the slice's removal", lambda: not route.endpoints, 20)
        finally:
            source.stop()

    asyncio.run(scenario())
