"""`tessera-runtime router` on the local control plane (issue 9), in front of small fast upstreams.

The Models carry the routing status the operator would write (traffic weights, stable/candidate);
their serving pods run on the local node (real processes on loopback pod IPs) and run the router's
fake OpenAI server, which names itself in `X-Upstream`. The router is the real command, watching the
test's namespace with pods as endpoints (EndpointSlices refuse loopback addresses).
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cluster_helpers import wait_until
from kubernetes import client as k8s
from operator_helpers import tessera_crds_fixture  # noqa: F401 (registers the fixture)
from router_cluster_helpers import create_model, create_pods, fake_pod, get_model, metric, router_process

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(name="router_url")
def router_fixture(kubeconfig_path: Path, namespace: str, tmp_path: Path, tessera_crds: None) -> Iterator[str]:
    """The router with a small hold queue (2 per Model) and a short Retry-After."""
    with router_process(kubeconfig_path, namespace, tmp_path / "router.log",
                        "--scrape-interval", "0", "--hold-queue", "2", "--hold-timeout", "120", "--retry-after", "3") as url:
        yield url


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> tuple[int, str, Any, dict[str, str]]:
    """(status, X-Upstream, JSON body, headers) of one completion request through the router."""
    async with session.post(url + "/v1/completions", data=json.dumps(body), headers={**HEADERS, **(headers or {})}
                            ) as response:
        payload = await response.json(content_type=None)
        return response.status, response.headers.get("X-Upstream", ""), payload, dict(response.headers)


async def upstreams(url: str, model: str, count: int, concurrency: int = 8,
                    headers: dict[str, str] | None = None) -> collections.Counter[str]:
    """Which pods answered `count` requests for `model` (every one must succeed)."""
    seen: collections.Counter[str] = collections.Counter()
    queue = iter(range(count))
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for _ in queue:
                status, upstream, payload, _ = await post(session, url, {"model": model, "prompt": "hi"}, headers)
                assert status == 200, payload
                seen[upstream] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return seen


def assert_openai_error(status: int, payload: Any, expected_status: int, code: str | None = None) -> None:
    assert status == expected_status, payload
    error = payload["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code, error


def test_routes_by_model_name_across_two_replicas_and_refuses_bad_requests(
        kube_api: k8s.ApiClient, namespace: str, router_url: str) -> None:
    create_model(kube_api, namespace, "alpha", "alpha-llm", [("a111111111", 100)], aliases=["alpha-alias"])
    create_model(kube_api, namespace, "beta", "beta-llm", [("b222222222", 100)])
    create_pods(kube_api, namespace, [fake_pod("alpha-0", "alpha", "a111111111"),
                                      fake_pod("alpha-1", "alpha", "a111111111"),
                                      fake_pod("beta-0", "beta", "b222222222")])

    async def scenario() -> None:
        # Until the router has seen both replicas (the watch delivers them a moment after Ready).
        for _ in range(50):
            if len(await upstreams(router_url, "alpha-llm", 4, concurrency=2)) == 2:
                break
            await asyncio.sleep(0.2)
        alpha = await upstreams(router_url, "alpha-llm", 40) + await upstreams(router_url, "alpha-alias", 20)
        assert set(alpha) == {"alpha-0", "alpha-1"} and min(alpha.values()) >= 10, alpha
        assert await upstreams(router_url, "beta-llm", 20) == {"beta-0": 20}
        async with aiohttp.ClientSession() as session:
            async with session.get(router_url + "/v1/models") as response:
                names = sorted(m["id"] for m in (await response.json())["data"])
            assert names == ["alpha-alias", "alpha-llm", "beta-llm"]
            status, _, payload, _ = await post(session, router_url, {"model": "gamma-llm", "prompt": "x"})
            assert_openai_error(status, payload, 404, "model_not_found")
            for body in (b'{"model": "alpha-llm", ', b"[]", b'{"prompt": "no model"}'):
                async with session.post(router_url + "/v1/chat/completions", data=body, headers=HEADERS) as response:
                    assert_openai_error(response.status, await response.json(content_type=None), 400)

    asyncio.run(scenario())


def test_canary_split_follows_status_weights_over_a_thousand_requests(
        kube_api: k8s.ApiClient, namespace: str, router_url: str) -> None:
    stable, candidate = "c111111111", "c222222222"
    create_model(kube_api, namespace, "canary", "canary-llm", [(stable, 90), (candidate, 10)], candidate=candidate)
    create_pods(kube_api, namespace, [fake_pod("stable-0", "canary", stable), fake_pod("candidate-0", "canary", candidate)])

    async def scenario() -> None:
        for _ in range(50):  # until the router has seen both versions' pods
            if len(await upstreams(router_url, "canary-llm", 10, concurrency=1)) == 2:
                break
            await asyncio.sleep(0.2)
        seen = await upstreams(router_url, "canary-llm", 1000)
        share = seen["candidate-0"] / 1000
        print(f"\ncanary split over 1000 requests: stable {seen['stable-0']}, candidate {seen['candidate-0']} "
              f"({share:.1%} to the candidate, weight 10%)")
        assert sum(seen.values()) == 1000
        assert abs(share - 0.10) <= 0.03, seen
        # Evaluation traffic pins a version by role or by hash.
        assert await upstreams(router_url, "canary-llm", 20, headers={"X-Tessera-Version": "candidate"}) \
            == {"candidate-0": 20}
        assert await upstreams(router_url, "canary-llm", 20, headers={"X-Tessera-Version": stable}) \
            == {"stable-0": 20}

    asyncio.run(scenario())


def test_held_requests_go_through_once_a_pod_is_ready_and_a_full_queue_gets_429(
        kube_api: k8s.ApiClient, namespace: str, router_url: str) -> None:
    version = "d111111111"
    create_model(kube_api, namespace, "cold", "cold-llm", [(version, 100)])
    labels = {"model": "cold", "namespace": namespace}

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            # The router learns the Model by watch a moment after it is created; before that, 404.
            for _ in range(100):
                async with session.get(router_url + "/v1/models") as response:
                    if "cold-llm" in [m["id"] for m in (await response.json())["data"]]:
                        break
                await asyncio.sleep(0.2)
            held = [asyncio.ensure_future(post(session, router_url, {"model": "cold-llm", "prompt": "hi"}))
                    for _ in range(2)]
            await asyncio.to_thread(wait_until, "two held requests",
                                    lambda: metric(router_url, "tessera_router_held_requests", labels) == 2, 30)
            status, _, payload, headers = await post(session, router_url, {"model": "cold-llm", "prompt": "hi"})
            assert_openai_error(status, payload, 429, "hold_queue_full")
            assert headers["Retry-After"] == "3"
            # The router told the operator at once (an annotation on the Model, not a write per request).
            # (The patch is sent in the background: wait for it, do not race it.)
            def demand_marked() -> bool:
                annotations = get_model(kube_api, namespace, "cold")["metadata"].get("annotations") or {}
                return bool(annotations.get("tessera.dev/demand-at"))

            await asyncio.to_thread(wait_until, "the demand annotation", demand_marked, 20)
            assert not any(task.done() for task in held)
            # "Scale from zero": a pod starts; once it is Ready, the held requests go through (no 503).
            await asyncio.to_thread(create_pods, kube_api, namespace, [fake_pod("cold-0", "cold", version)])
            for status, upstream, payload, _ in await asyncio.wait_for(asyncio.gather(*held), 60):
                assert status == 200 and upstream == "cold-0", payload
        assert metric(router_url, "tessera_router_held_requests", labels) == 0

    asyncio.run(scenario())


def test_a_stream_survives_another_pods_removal_and_its_own_pods_graceful_termination(
        kube_api: k8s.ApiClient, namespace: str, router_url: str) -> None:
    version = "e111111111"
    create_model(kube_api, namespace, "streamy", "streamy-llm", [(version, 100)])
    create_pods(kube_api, namespace, [fake_pod(f"stream-{i}", "streamy", version, grace=30) for i in range(2)])
    core = k8s.CoreV1Api(kube_api)
    chunks = 40  # a 0.2 s pause between chunks: an 8 s stream

    async def scenario() -> None:
        body = {"model": "streamy-llm", "prompt": "hi", "stream": True, "fake_chunks": chunks, "fake_delay": 0.2}
        async with aiohttp.ClientSession() as session, \
                session.post(router_url + "/v1/completions", json=body) as response:
            assert response.status == 200
            own = response.headers["X-Upstream"]
            other = "stream-1" if own == "stream-0" else "stream-0"
            events = [await response.content.readline()]
            # Scale-down of the other pod, then graceful termination of the stream's own pod.
            await asyncio.to_thread(core.delete_namespaced_pod, other, namespace)
            await asyncio.to_thread(core.delete_namespaced_pod, own, namespace)
            async for line in response.content:
                events.append(line)
        data = [e.strip()[len(b"data: "):] for e in events if e.startswith(b"data: ")]
        assert data[-1] == b"[DONE]", data[-3:]
        texts = [json.loads(d)["choices"][0]["text"] for d in data[:-1]]
        assert texts == [f"t{i} " for i in range(chunks)]

    asyncio.run(scenario())
    wait_until("both pods to be gone", lambda: not core.list_namespaced_pod(namespace).items, timeout=60)
