"""`tessera simulate` end to end on a small synthetic trace."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tessera_operator.cli import app


def test_simulate_prints_the_figures_as_json_and_writes_a_plot(tmp_path: Path) -> None:
    plot = tmp_path / "replicas.png"
    result = CliRunner().invoke(
        app,
        ["simulate", "--trace", "synthetic:bursty-chat:2", "--policy", "static", "--target", "2",
         "--output", "json", "--plot", str(plot)],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout[result.stdout.index("{") :])
    assert document["policy"] == "static" and document["setting"]["value"] == 2
    for key in ("gpuHours", "sloAttainment", "ttftP50Seconds", "ttftP95Seconds", "ttftP99Seconds",
                "replicaChangesPerHour", "rejectedRequests"):
        assert key in document
    assert document["replicaChangesPerHour"] == 0
    assert plot.stat().st_size > 10_000


def test_simulate_refuses_an_unknown_policy_and_a_missing_trace(tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["simulate", "--trace", "synthetic:bursty-chat", "--policy", "magic"])
    assert unknown.exit_code == 2
    missing = runner.invoke(app, ["simulate", "--trace", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2
