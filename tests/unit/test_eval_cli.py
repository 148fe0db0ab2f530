"""`tessera evaluate` (exit status by verdict), `tessera eval report`, and the ModelEvaluation writer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tessera_operator.cli import app
from tessera_runtime.eval import cluster
from tessera_runtime.eval.report import load_evaluation_file
from tessera_runtime.eval.testing import FakeModel, FakeServer, builtin_answers

SUITE = {
    "apiVersion": "tessera.dev/v1alpha1", "kind": "EvaluationSuite", "metadata": {"name": "cli"},
    "spec": {"tasks": [{"name": "facts", "kind": "multipleChoice", "data": {"builtin": "facts"}, "sampleSize": 60, "margin": 0.1}]},
}  # fmt: skip


@contextmanager
def serving(model: FakeModel) -> Iterator[str]:
    """A fake server on its own event loop in a thread, for code that runs its own asyncio.run."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    url: list[str] = []

    async def main() -> None:
        async with FakeServer(model) as server:
            url.append(server.url)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield url[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def run_cli(tmp_path: Path, candidate: FakeModel, *extra: str) -> tuple[int, str]:
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    with serving(candidate) as cand, serving(FakeModel(answers=builtin_answers())) as base:
        result = CliRunner().invoke(
            app, ["evaluate", "--suite", str(suite), "--candidate", cand, "--baseline", base, *extra]
        )
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("candidate", "code"),
    [
        (FakeModel(answers=builtin_answers()), 0),
        (FakeModel(answers=builtin_answers(), skill=0.1), 1),
        (FakeModel(answers=builtin_answers(), prompt_logprobs=False), 4),
    ],
    ids=["pass", "fail", "error"],
)
def test_exit_status_follows_the_verdict(tmp_path: Path, candidate: FakeModel, code: int) -> None:
    exit_code, output = run_cli(tmp_path, candidate, "--resamples", "300")
    assert exit_code == code, output
    assert {0: "Pass", 1: "Fail", 4: "Error"}[code] in output


def test_json_output_file_and_report(tmp_path: Path) -> None:
    out, png = tmp_path / "result.yaml", tmp_path / "result.png"
    exit_code, output = run_cli(
        tmp_path, FakeModel(answers=builtin_answers(), skill=0.1), "-o", "json", "--out", str(out),
        "--resamples", "300", "--model", "chat",
    )  # fmt: skip
    assert exit_code == 1
    assert '"verdict": "Fail"' in output and '"dataDigest": "sha256:' in output
    evaluation = load_evaluation_file(out)
    assert evaluation.spec.model == "chat"
    report = CliRunner().invoke(app, ["eval", "report", "--file", str(out), "--png", str(png)])
    assert report.exit_code == 0, report.output
    assert "facts" in report.output and "Fail" in report.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_needs_a_name_or_a_file() -> None:
    result = CliRunner().invoke(app, ["eval", "report"])
    assert result.exit_code == 2


class StubObjects:
    """CustomObjectsApi stand-in: one stored ModelEvaluation."""

    def __init__(self, existing: dict[str, Any] | None = None) -> None:
        self.existing = existing
        self.status_writes: list[dict[str, Any]] = []

    def create_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        body: dict[str, Any] = args[-1]
        if self.existing is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        assert "status" not in body  # the apiserver would drop it: status goes through the subresource
        self.existing = body | {"metadata": body["metadata"] | {"resourceVersion": "1"}}
        return self.existing

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        assert self.existing is not None
        return self.existing

    def replace_namespaced_custom_object_status(self, *args: Any) -> dict[str, Any]:
        body: dict[str, Any] = args[-1]
        self.status_writes.append(body)
        self.existing = body
        return body


def test_the_writer_creates_then_sets_status_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "result.yaml"
    run_cli(tmp_path, FakeModel(answers=builtin_answers()), "--out", str(out), "--resamples", "300")
    evaluation = load_evaluation_file(out)
    evaluation.metadata = {"name": "chat-v2-1"}
    stub = StubObjects()
    monkeypatch.setattr(cluster, "_objects", lambda api: stub)
    written = cluster.write_evaluation(None, evaluation, "team")
    assert written.status and written.status.result and written.status.result.verdict == "Pass"
    assert len(stub.status_writes) == 1
    # A second writer (a retried Job) finds the result and does not touch it.
    again = cluster.write_evaluation(None, evaluation, "team")
    assert len(stub.status_writes) == 1 and again == written
