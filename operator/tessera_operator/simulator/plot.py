"""Plots of replicas over time against the load (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from tessera_operator.simulator.results import SimulationResult


def plot_timelines(
    runs: Sequence[tuple[str, SimulationResult]], path: str | Path, title: str, attribution: str = ""
) -> None:
    """One panel per run: replicas (spec and ready) as steps, the request rate shaded behind them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        len(runs), 1, figsize=(11, 1.9 * len(runs) + 1.0), sharex=True, squeeze=False
    )
    peak_replicas = max((max(result.timeline.replicas, default=0) for _, result in runs), default=1)
    for (label, result), (axis,) in zip(runs, axes, strict=True):
        timeline = result.timeline
        minutes = [moment / 60 for moment in timeline.times]
        load = axis.twinx()
        load.fill_between(minutes, timeline.request_rate, step="post", color="0.85", linewidth=0)
        load.set_ylabel("req/s", color="0.45", fontsize=8)
        load.tick_params(axis="y", colors="0.45", labelsize=7)
        axis.set_zorder(load.get_zorder() + 1)
        axis.patch.set_visible(False)
        axis.step(minutes, timeline.replicas, where="post", color="tab:blue", linewidth=1.4, label="replicas")
        axis.step(minutes, timeline.ready, where="post", color="tab:orange", linewidth=0.9, label="ready")
        axis.set_ylim(0, peak_replicas + 1)
        axis.set_ylabel("replicas", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.set_title(
            f"{label}: {result.gpu_hours:.2f} GPU-h, SLO {result.slo_attainment:.2%}, "
            f"{result.replica_changes_per_hour:.1f} changes/h",
            fontsize=9,
            loc="left",
        )
    axes[0][0].legend(loc="upper right", fontsize=7)
    axes[-1][0].set_xlabel("minutes")
    figure.suptitle(title, fontsize=10)
    if attribution:
        figure.text(0.01, 0.003, textwrap.fill(attribution, 170), fontsize=6, color="0.4")
    figure.tight_layout(rect=(0, 0.03, 1, 0.98))
    figure.savefig(path, dpi=110)
    plt.close(figure)
