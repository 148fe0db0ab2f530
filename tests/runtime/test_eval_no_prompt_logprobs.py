"""A server that returns no prompt log-probabilities gets `Error`, never a verdict at chance level.

End to end with real processes: the baseline is the real SmolLM2 behind `tessera-runtime serve`; the
candidate is `python -m tessera_runtime.eval.testing --no-prompt-logprobs` (an OpenAI server that ignores
`echo`, as some engines do); `tessera evaluate` runs as a command against both over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from runtime_server import MODEL_NAME, free_port, start_server

pytestmark = [pytest.mark.model, pytest.mark.slow]

SUITE = {
    "apiVersion": "tessera.dev/v1alpha1", "kind": "EvaluationSuite", "metadata": {"name": "needs-logprobs"},
    "spec": {"tasks": [
        {"name": "facts", "kind": "multipleChoice", "data": {"builtin": "facts"}, "sampleSize": 8, "margin": 0.1},
        {"name": "prose", "kind": "perplexity", "data": {"builtin": "prose"}, "sampleSize": 3, "margin": 0.05},
    ]},
}  # fmt: skip


def wait_answering(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


def test_a_server_without_prompt_logprobs_gives_error_not_a_verdict(tmp_path: Path) -> None:
    baseline = start_server(tmp_path, "--max-batch-size", "4")
    port = free_port()
    candidate = subprocess.Popen(
        [sys.executable, "-m", "tessera_runtime.eval.testing", "--port", str(port), "--no-prompt-logprobs",
         "--name", MODEL_NAME],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    try:
        wait_answering(f"http://127.0.0.1:{port}/ready")
        baseline.wait_ready(300)
        tessera = Path(sys.executable).parent / "tessera"
        result = subprocess.run(
            [str(tessera), "evaluate", "--suite", str(suite), "--candidate", f"http://127.0.0.1:{port}/v1",
             "--baseline", f"{baseline.base_url}/v1", "--output", "json", "--resamples", "200"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    finally:
        candidate.terminate()
        candidate.wait(10)
        baseline.stop()
    assert result.returncode == 4, result.stdout + result.stderr  # 4: Error
    evaluation = json.loads(result.stdout)
    outcome = evaluation["status"]["result"]
    assert outcome["verdict"] == "Error"
    assert {task["name"]: task["verdict"] for task in outcome["tasks"]} == {"facts": "Error", "prose": "Error"}
    for task in outcome["tasks"]:
        assert "prompt log-probabilities" in task["reason"], task
    assert "prompt log-probabilities" in outcome["reason"], outcome["reason"]
    print(f"\nverdict {outcome['verdict']}: {outcome['reason']}")
