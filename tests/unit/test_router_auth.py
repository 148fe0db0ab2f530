"""API keys: 401 without a valid key, 403 for a Model the key may not use, 429 over its rate; never leaked."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

import aiohttp
import pytest

from tessera_runtime.router.core import RouterSettings
from tessera_runtime.router.proxy import ProxySettings
from tessera_runtime.router.run import FRONT_ENDS, FrontEnd
from tessera_runtime.router.testing import FakeUpstream, router_from_routes, serve_router

TEAM_KEY = "sk-team-3c1f9b7e"
ADMIN_KEY = "sk-admin-77a0d2c4"


@pytest.fixture(params=FRONT_ENDS)
def front_end(request: pytest.FixtureRequest) -> FrontEnd:
    """Each scenario through both HTTP front ends: the lean server and aiohttp."""
    return cast(FrontEnd, request.param)


async def _post(session: aiohttp.ClientSession, url: str, model: str,
                key: str | None) -> tuple[int, dict[str, Any], Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = json.dumps({"model": model, "prompt": "hi"}).encode()
    async with session.post(url + "/v1/completions", data=body, headers=headers) as response:
        return response.status, await response.json(), response.headers


def test_api_keys_gate_models_and_rates_and_never_leak(caplog: pytest.LogCaptureFixture, front_end: FrontEnd) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        pod = FakeUpstream("pod")
        await pod.start()
        router = router_from_routes(
            {
                "models": [
                    {"name": "llama", "versions": [{"version": "v1", "endpoints": [pod.url]}]},
                    {"name": "mistral", "aliases": ["mistral-7b"],
                     "versions": [{"version": "v1", "endpoints": [pod.url]}]},
                ],
                "apiKeys": [
                    {"name": "team", "key": TEAM_KEY, "models": ["llama"], "rateLimit": "3/m"},
                    {"name": "admin", "key": ADMIN_KEY},
                ],
            },
            RouterSettings(api_keys=True, proxy=ProxySettings(strip_authorization=True)),
        )
        async with serve_router(router, server=front_end) as url, aiohttp.ClientSession() as session:
            status, body, _ = await _post(session, url, "llama", None)
            assert status == 401 and body["error"]["code"] == "missing_api_key"
            status, body, _ = await _post(session, url, "llama", "sk-wrong")
            assert status == 401 and body["error"]["type"] == "authentication_error"
            status, body, _ = await _post(session, url, "mistral-7b", TEAM_KEY)
            assert status == 403 and body["error"]["code"] == "model_not_allowed"
            # The 403 above did not spend the rate: three requests pass, the fourth is over 3/m.
            for _ in range(3):
                status, _, _ = await _post(session, url, "llama", TEAM_KEY)
                assert status == 200
            assert "Authorization" not in pod.last_headers  # the router's key stays at the router
            status, body, headers = await _post(session, url, "llama", TEAM_KEY)
            assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
            assert 1 <= int(headers["Retry-After"]) <= 20
            status, _, _ = await _post(session, url, "mistral", ADMIN_KEY)
            assert status == 200
            # Listing shows what the key may use, and needs a key too.
            listing = await session.get(url + "/v1/models", headers={"Authorization": f"Bearer {TEAM_KEY}"})
            assert [m["id"] for m in (await listing.json())["data"]] == ["llama"]
            assert (await session.get(url + "/v1/models")).status == 401
            metrics = await (await session.get(url + "/metrics")).text()
        for secret in (TEAM_KEY, ADMIN_KEY, "sk-wrong"):
            assert secret not in metrics
            assert secret not in caplog.text
        for cause in ("unauthorized", "forbidden", "rate_limited"):
            assert f'cause="{cause}"' in metrics
        await pod.stop()

    asyncio.run(scenario())
