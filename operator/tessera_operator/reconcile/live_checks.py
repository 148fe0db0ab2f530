"""The canary's live evidence: scrape the candidate's and the stable version's ready pods (their own
/metrics, vLLM names, with the autoscaler's scraper) and turn the counters into figures since the step began.

Per reconcile during a canary step: scrape; if status.rollout.liveBaseline belongs to the current step
(same step index and stepStarted), the machine gets the differences since it; otherwise this scrape is
the step's baseline, stored in status.rollout (written once per step, so status writes stay on change).
The router's metrics are per Model, not per version, so they cannot tell candidate from stable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tessera_operator.api.v1alpha1 import RolloutStatus
from tessera_operator.api.v1alpha1.model import LiveBaseline
from tessera_operator.rollout import LiveObservation, PodCounters, baseline, observe_live

from .scrape import PodMetrics, scrape_pods

Json = dict[str, Any]
SCRAPE_TIMEOUT_S = 2.0
Scraper = Callable[[dict[str, str]], dict[str, PodMetrics | None]]


def _ready_addresses(pods: list[Json]) -> dict[str, str]:
    found = {}
    for pod in pods:
        status = pod.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if ready and status.get("podIP") and not pod.get("metadata", {}).get("deletionTimestamp"):
            found[str(pod["metadata"]["name"])] = str(status["podIP"])
    return found


def default_scraper(addresses: dict[str, str]) -> dict[str, PodMetrics | None]:
    """Scrape pods' /metrics in parallel (the autoscaler's scraper)."""
    return scrape_pods(addresses, SCRAPE_TIMEOUT_S)


def scrape_versions(pods: dict[str, list[Json]], versions: tuple[str, ...], scraper: Scraper) -> dict[str, PodCounters]:
    """Counters of every ready pod of `versions` that answered (pod name -> counters)."""
    owner = {name: version for version in versions for name in _ready_addresses(pods.get(version, []))}
    addresses = {name: ip for version in versions for name, ip in _ready_addresses(pods.get(version, [])).items()}
    counters = {}
    for name, metrics in scraper(addresses).items():
        if metrics is not None:
            counters[name] = PodCounters(owner[name], metrics.finished, metrics.errors, metrics.ttft_buckets,
                                         metrics.ttft_count)  # fmt: skip
    return counters


@dataclass(frozen=True)
class LiveEvidence:
    """This reconcile's live figures (None: no baseline for this step yet, or no pod answered)."""

    observation: LiveObservation | None
    counters: dict[str, PodCounters]


def live_evidence(
    rollout: RolloutStatus | None, candidate: str | None, stable: str | None, pods: dict[str, list[Json]],
    scraper: Scraper,
) -> LiveEvidence:
    """Scrape during a canary step and compare with the step's baseline when there is one."""
    if rollout is None or rollout.phase != "Canary" or candidate is None or stable is None:
        return LiveEvidence(None, {})
    counters = scrape_versions(pods, (candidate, stable), scraper)
    recorded = rollout.live_baseline
    if not counters or recorded is None or not belongs(recorded, rollout):
        return LiveEvidence(None, counters)
    return LiveEvidence(observe_live(counters, recorded, candidate, stable), counters)


def belongs(recorded: LiveBaseline, rollout: RolloutStatus) -> bool:
    """Whether a baseline was taken for the rollout's current canary step."""
    return recorded.step == rollout.step and recorded.step_started == rollout.step_started


def with_baseline(
    rollout: RolloutStatus, candidate: str | None, stable: str | None, pods: dict[str, list[Json]],
    evidence: LiveEvidence, scraper: Scraper,
) -> RolloutStatus:
    """The rollout status to write: a canary step without its baseline gets one (scraped now, or this
    reconcile's scrape when the step did not change); outside the canary the baseline goes."""
    if rollout.phase != "Canary" or candidate is None or stable is None:
        return rollout if rollout.live_baseline is None else rollout.model_copy(update={"live_baseline": None})
    if rollout.live_baseline is not None and belongs(rollout.live_baseline, rollout):
        return rollout
    counters = evidence.counters or scrape_versions(pods, (candidate, stable), scraper)
    if not counters:
        return rollout.model_copy(update={"live_baseline": None})
    return rollout.model_copy(update={"live_baseline": baseline(rollout.step, rollout.step_started, counters)})
