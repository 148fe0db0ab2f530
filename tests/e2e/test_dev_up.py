"""`tessera dev up` end to end: one command brings up the cluster, the chart and SmolLM2; a real
answer comes back through the router with the `openai` client; `tessera dev down` leaves no process.

Needs the control-plane binaries and helm (`make cluster-binaries`); takes minutes (model load).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera_operator.devcluster.binaries import find_binaries
from tessera_operator.devstack.state import processes_of

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def tessera(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run the `tessera` CLI from this checkout, as a user would."""
    code = "from tessera_operator.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A stack with a unique name in a temporary folder; always brought down afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    directory = tmp_path / name
    try:
        yield name, directory
    finally:
        tessera("dev", "down", "--name", name, "--dir", str(directory), timeout=180)


def test_dev_up_serves_smollm2_through_the_router_and_down_leaves_nothing(stack: tuple[str, Path]) -> None:
    name, directory = stack
    up = tessera("dev", "up", "--name", name, "--dir", str(directory), "--timeout", "900", timeout=960)
    assert up.returncode == 0, f"dev up failed:\n{up.stdout}\n{up.stderr}"
    assert "first token" in up.stderr and "get models" in up.stdout

    status = tessera("dev", "status", "--name", name, "--dir", str(directory), "--output", "json", timeout=60)
    assert status.returncode == 0, status.stderr
    payload = json.loads(status.stdout)
    assert payload["routerUrl"].startswith("http://127.")
    assert Path(payload["kubeconfig"]).is_file()
    assert {"name": "smollm2", "namespace": "default", "ready": True} in payload["models"]

    from openai import OpenAI

    state = json.loads((directory / "devstack.json").read_text())
    client = OpenAI(base_url=f"{payload['routerUrl']}/v1", api_key="unused", timeout=120)
    reply = client.chat.completions.create(
        model=state["servedModel"],
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        temperature=0,
    )
    answer = reply.choices[0].message.content or ""
    assert "paris" in answer.lower(), answer

    kubectl = subprocess.run(
        [str(find_binaries().kubectl), "--kubeconfig", payload["kubeconfig"], "get", "models"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = kubectl.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "READY"], kubectl.stdout
    assert any(line.split()[:2] == ["smollm2", "True"] for line in lines[1:]), kubectl.stdout

    assert processes_of(directory), "the stack should be running before down"
    down = tessera("dev", "down", "--name", name, "--dir", str(directory), timeout=180)
    assert down.returncode == 0, f"dev down failed:\n{down.stdout}\n{down.stderr}"
    assert processes_of(directory) == {}
    after = tessera("dev", "status", "--name", name, "--dir", str(directory), "--output", "json", timeout=60)
    assert json.loads(after.stdout)["routerUrl"] is None
