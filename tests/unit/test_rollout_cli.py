"""The pure parts of `tessera rollout`: the annotation patch, who asks, and the status summary."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tessera_operator.cli import app
from tessera_operator.commands.rollout import (
    ROLLOUT_ACTION,
    ROLLOUT_REQUESTED_BY,
    action_patch,
    current_user,
    render_summary,
    rollout_summary,
)

MODEL = {
    "metadata": {"name": "chat", "namespace": "team", "annotations": {ROLLOUT_ACTION: "retry"}},
    "spec": {"rollout": {"evaluationSuites": ["smoke"], "canarySteps": [{"weight": 10}, {"weight": 50}]}},
    "status": {
        "stable": {"version": "aaaaaaaaaa"},
        "candidate": {"version": "bbbbbbbbbb"},
        "traffic": [{"version": "aaaaaaaaaa", "weight": 90}, {"version": "bbbbbbbbbb", "weight": 10}],
        "rollout": {"phase": "Canary", "step": 0, "evaluation": "chat-bbbbbbbbbb-1-abc", "attempts": 1},
        "rejectedCandidates": [{"version": "cccccccccc", "reason": "evaluation Fail", "time": "2026-01-01T00:00:00Z"}],
    },
}


def test_action_patch_sets_both_annotations() -> None:
    patch = action_patch("promote", "alice")
    assert patch == {"metadata": {"annotations": {ROLLOUT_ACTION: "promote", ROLLOUT_REQUESTED_BY: "alice"}}}


def test_action_patch_rejects_unknown_actions() -> None:
    with pytest.raises(ValueError, match="unknown rollout action"):
        action_patch("rollback", "alice")


def test_current_user_prefers_the_kubeconfig_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "bob")
    assert current_user("kind-admin") == "kind-admin"
    assert current_user(None) == "bob"


def test_summary_reads_phase_weights_candidate_and_rejections() -> None:
    summary = rollout_summary(MODEL)
    assert summary["phase"] == "Canary"
    assert summary["steps"] == 2
    assert summary["traffic"] == {"aaaaaaaaaa": 90, "bbbbbbbbbb": 10}
    assert summary["candidate"] == "bbbbbbbbbb"
    assert summary["evaluation"] == "chat-bbbbbbbbbb-1-abc"
    assert summary["pendingAction"] == "retry"
    assert [r["version"] for r in summary["rejectedCandidates"]] == ["cccccccccc"]


def test_summary_of_an_ungated_model() -> None:
    summary = rollout_summary({"metadata": {"name": "m", "namespace": "n"}, "spec": {}, "status": {}})
    assert summary["phase"] == "NotGated"
    assert summary["rejectedCandidates"] == []


def test_render_shows_step_verdict_and_rejected_table() -> None:
    summary = rollout_summary(MODEL)
    summary["verdict"] = "Pass"
    buffer = io.StringIO()
    render_summary(summary, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "1 of 2" in text
    assert "chat-bbbbbbbbbb-1-abc (Pass)" in text
    assert "aaaaaaaaaa=90%" in text
    assert "cccccccccc" in text and "evaluation Fail" in text


def test_rollout_group_is_registered() -> None:
    result = CliRunner().invoke(app, ["rollout", "--help"])
    assert result.exit_code == 0
    for command in ("status", "promote", "abort", "retry"):
        assert command in result.output
