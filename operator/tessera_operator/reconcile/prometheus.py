"""The pods' signals from Prometheus instead of their /metrics (when TESSERA_PROMETHEUS_URL is set).

Prometheus must scrape the serving pods with the usual `namespace` and `pod` target labels (the
kubernetes-pods job of most installs, or a PodMonitor). Histogram means come from `rate()` over a minute.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tessera_operator.autoscaling import PodSample

from .scrape import KV_CACHE, RUNNING, TPOT_NAMES, TTFT, WAITING, fetch_text

Fetch = Callable[[str, float], str | None]


def queries(namespace: str) -> dict[str, str]:
    """One PromQL query per signal, each summed by pod."""
    where = f'{{namespace="{namespace}"}}'

    def mean(histogram: str) -> str:
        return (f"sum by (pod) (rate({histogram}_sum{where}[1m])) / "
                f"sum by (pod) (rate({histogram}_count{where}[1m]))")

    return {
        "running": f"sum by (pod) ({RUNNING}{where})",
        "waiting": f"sum by (pod) ({WAITING}{where})",
        "kv": f"sum by (pod) ({KV_CACHE}{where})",
        "ttft": mean(TTFT),
        "tpot": mean(TPOT_NAMES[0]),
    }


def parse_vector(text: str | None) -> dict[str, float]:
    """A Prometheus instant-query answer as pod -> value (NaN, e.g. 0/0, and errors are left out)."""
    if not text:
        return {}
    try:
        answer = json.loads(text)
        result = answer["data"]["result"] if answer.get("status") == "success" else []
        values = {str(item["metric"].get("pod", "")): float(item["value"][1]) for item in result}
    except (ValueError, KeyError, TypeError, IndexError):
        return {}
    return {pod: value for pod, value in values.items() if pod and value == value}


def pod_samples(
    base_url: str, namespace: str, pods: list[str], timeout: float, fetch: Fetch = fetch_text
) -> tuple[PodSample, ...]:
    """Samples of the given (ready) pods, from five parallel instant queries."""
    if not pods:
        return ()
    wanted = queries(namespace)

    def run(query: str) -> dict[str, float]:
        url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        return parse_vector(fetch(url, timeout))

    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        found = dict(zip(wanted, pool.map(run, wanted.values()), strict=True))
    return tuple(
        PodSample(
            ready=True,
            name=pod,
            running=found["running"].get(pod, 0.0),
            waiting=found["waiting"].get(pod, 0.0),
            kv_cache_usage=min(1.0, max(0.0, found["kv"].get(pod, 0.0))),
            ttft_seconds=found["ttft"].get(pod),
            tpot_seconds=found["tpot"].get(pod),
        )
        for pod in pods
    )
