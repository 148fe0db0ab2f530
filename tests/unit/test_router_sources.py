"""Where routes come from: the routes file (with reload), the Kubernetes watches (list, watch, 410), the scraper."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from tessera_runtime.router.auth import KeyStore
from tessera_runtime.router.file_source import FileSource
from tessera_runtime.router.kube_source import KubeSource, ResourceWatcher
from tessera_runtime.router.scraper import LoadScraper
from tessera_runtime.router.table import RoutingTable
from tessera_runtime.router.testing import FakeUpstream


async def _until(condition: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_routes_file_loads_and_reloads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump([{"name": "a", "versions": [{"version": "v1", "endpoints": ["http://127.0.0.1:1"]}]}]))

    async def scenario() -> None:
        table = RoutingTable()
        source = FileSource(path, table, KeyStore(), interval=0.05)
        source.start()
        assert source.synced.is_set() and table.lookup("a") is not None
        path.write_text(yaml.safe_dump({"models": [
            {"name": "b", "aliases": ["bee"], "versions": [{"version": "v1", "endpoints": ["http://127.0.0.1:2"]}]}]}))
        await _until(lambda: table.lookup("bee") is not None)
        assert table.lookup("a") is None
        path.write_text("models: [unbalanced")  # a broken edit keeps the last good routes
        await asyncio.sleep(0.2)
        assert table.lookup("bee") is not None
        await source.stop()

    asyncio.run(scenario())


class _FakeResponse:
    def __init__(self, data: bytes = b"", lines: list[dict[str, Any]] | None = None) -> None:
        self.data = data
        self.lines = lines or []

    def stream(self, amt: Any = None, decode_content: bool = False) -> Any:
        payload = b"".join(json.dumps(line).encode() + b"\n" for line in self.lines)
        # Split mid-line, as the network does.
        yield from (payload[i:i + 7] for i in range(0, len(payload), 7))

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        pass


def _model(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}, "spec": {}}


def test_watcher_lists_watches_resumes_and_relists_after_410() -> None:
    calls: list[dict[str, Any]] = []
    watcher: ResourceWatcher

    def list_function(**kwargs: Any) -> _FakeResponse:
        calls.append(kwargs)
        listing = sum(1 for c in calls if not c.get("watch"))
        if not kwargs.get("watch"):
            items = [_model("a", "5")] if listing == 1 else [_model("a", "5"), _model("b", "11"), _model("c", "19")]
            return _FakeResponse(json.dumps({"items": items, "metadata": {"resourceVersion": str(10 * listing)}}).encode())
        watches = sum(1 for c in calls if c.get("watch"))
        if watches == 1:
            return _FakeResponse(lines=[{"type": "ADDED", "object": _model("b", "11")},
                                        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}])
        if watches == 2:
            return _FakeResponse(lines=[{"type": "ERROR", "object": {"code": 410, "message": "too old"}}])
        watcher.stopping.set()
        return _FakeResponse()

    async def scenario() -> None:
        table = RoutingTable()
        source = KubeSource(table, KeyStore(), api=None)  # type: ignore[arg-type]
        lists: list[int] = []

        def on_list(items: list[dict[str, Any]]) -> None:
            lists.append(len(items))
            source._models_listed(items)

        nonlocal watcher
        watcher = ResourceWatcher("models", list_function, {"plural": "models"}, asyncio.get_running_loop(),
                                  on_list, source._model_event)
        source._watchers = [watcher]
        watcher.start()
        await _until(lambda: not watcher.is_alive() and lists == [1, 3])
        await asyncio.sleep(0.05)  # let the last delivered callbacks run
        assert source.synced.is_set()
        assert sorted(name for _, name in table.models) == ["a", "b", "c"]

    asyncio.run(scenario())
    watch_versions = [c["resource_version"] for c in calls if c.get("watch")]
    assert watch_versions == ["10", "12", "20"]  # resumed from the bookmark, then from the fresh list
    assert all(c["allow_watch_bookmarks"] for c in calls if c.get("watch"))


def test_kube_events_update_models_endpoints_and_keys() -> None:
    async def scenario() -> None:
        table = RoutingTable()
        keys = KeyStore(enabled=True)
        source = KubeSource(table, keys, api=None)  # type: ignore[arg-type]
        model = {"metadata": {"name": "llama", "namespace": "ns"}, "spec": {"servedModelName": "llama-3"},
                 "status": {"traffic": [{"version": "aaa", "weight": 100}], "stable": {"version": "aaa"}}}
        source._models_listed([model])
        endpoint_slice: dict[str, Any] = {
            "metadata": {"name": "llama-aaa-1", "namespace": "ns",
                         "labels": {"tessera.dev/model": "llama", "tessera.dev/version": "aaa"}},
            "ports": [{"name": "http", "port": 8000}],
            "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": True}}],
        }
        source._endpoints_listed([])
        route = table.lookup("llama-3")
        assert route is not None and not route.has_capacity(0.0)
        source._endpoints_event("ADDED", endpoint_slice)
        assert [e.url for e in route.accepting("aaa", 0.0)] == ["http://10.1.0.1:8000"]
        endpoint_slice["endpoints"][0]["conditions"] = {"ready": False, "serving": True, "terminating": True}
        source._endpoints_event("MODIFIED", endpoint_slice)
        assert route.accepting("aaa", 0.0) == [] and "http://10.1.0.1:8000" in route.endpoints["aaa"]
        source._endpoints_event("DELETED", endpoint_slice)
        assert route.endpoints == {}
        secret = {"metadata": {"name": "team", "namespace": "ns"},
                  "data": {"key": base64.b64encode(b"sk-1").decode()}}
        source._secrets_listed([])
        source._secret_event("ADDED", secret)
        assert len(keys) == 1
        source._secret_event("DELETED", secret)
        assert len(keys) == 0
        source._model_event("DELETED", model)
        assert table.lookup("llama-3") is None

    asyncio.run(scenario())


def test_demand_mark_is_a_merge_patch_of_the_annotation(monkeypatch: pytest.MonkeyPatch) -> None:
    patches: list[tuple[Any, ...]] = []

    class FakeCustomObjects:
        def __init__(self, api: Any) -> None:
            pass

        def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> None:
            patches.append((*args, kwargs["_content_type"]))

    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", FakeCustomObjects)
    source = KubeSource(RoutingTable(), KeyStore(), api=None)  # type: ignore[arg-type]
    asyncio.run(source.mark_demand(("team", "llama")))
    [(group, version, namespace, plural, name, body, content_type)] = patches
    assert (group, version, namespace, plural, name) == ("tessera.dev", "v1alpha1", "team", "models", "llama")
    assert content_type == "application/merge-patch+json"
    assert list(body) == ["metadata"] and list(body["metadata"]["annotations"]) == ["tessera.dev/demand-at"]
    assert body["metadata"]["annotations"]["tessera.dev/demand-at"].endswith("Z")


def test_scraper_reads_pod_load_into_endpoints() -> None:
    async def scenario() -> None:
        import aiohttp

        from tessera_runtime.router.table import EndpointState, ModelSpec

        pod = FakeUpstream("pod", waiting=4, kv_cache_usage=0.93)
        await pod.start()
        table = RoutingTable()
        table.upsert_model(ModelSpec("ns", "m", "m"))
        table.set_group(("ns", "m"), "s", "v1", [EndpointState(pod.url), EndpointState("http://127.0.0.1:1")])
        async with aiohttp.ClientSession() as session:
            await LoadScraper(table, session, timeout=0.5).scrape_all()
        endpoint = table.models[("ns", "m")].endpoints["v1"][pod.url]
        assert (endpoint.waiting, endpoint.kv_cache_usage) == (4.0, 0.93)
        assert table.models[("ns", "m")].endpoints["v1"]["http://127.0.0.1:1"].waiting == 0.0
        await pod.stop()

    asyncio.run(scenario())
