"""The official `openai` client against the router, streaming on and off, and its error mapping."""

from __future__ import annotations

import asyncio
from typing import cast

import openai
import pytest

from tessera_runtime.router.run import FRONT_ENDS, FrontEnd
from tessera_runtime.router.testing import FakeUpstream, router_from_routes, serve_router


@pytest.fixture(params=FRONT_ENDS)
def front_end(request: pytest.FixtureRequest) -> FrontEnd:
    """Each scenario through both HTTP front ends: the lean server and aiohttp."""
    return cast(FrontEnd, request.param)


def test_openai_client_through_the_router(front_end: FrontEnd) -> None:
    async def scenario() -> None:
        pod = FakeUpstream("pod", chunks=5)
        await pod.start()
        router = router_from_routes([{"name": "llama", "servedModelName": "llama-3", "aliases": ["l3"],
                                      "versions": [{"version": "v1", "endpoints": [pod.url]}]}])
        async with serve_router(router, server=front_end) as url:
            client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            chat = await client.chat.completions.create(
                model="l3", messages=[{"role": "user", "content": "hello"}])
            assert chat.choices[0].message.content == "hello from pod"
            completion = await client.completions.create(model="llama-3", prompt="hello")
            assert completion.choices[0].text == "hello from pod"

            stream = await client.chat.completions.create(
                model="llama-3", messages=[{"role": "user", "content": "hello"}], stream=True)
            pieces = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
            assert pieces == [f"t{i} " for i in range(5)]
            text_stream = await client.completions.create(model="l3", prompt="hello", stream=True)
            assert "".join([c.choices[0].text async for c in text_stream]) == "t0 t1 t2 t3 t4 "

            models = await client.models.list()
            assert sorted(m.id for m in models.data) == ["l3", "llama-3"]
            with pytest.raises(openai.NotFoundError) as missing:
                await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
            assert missing.value.code == "model_not_found"
            await client.close()
        await pod.stop()

    asyncio.run(scenario())
