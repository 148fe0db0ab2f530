"""The apiserver's own request counters (`apiserver_request_total` on its /metrics), parsed.

Tests and the scale benchmark read them to count what the operator asked of the apiserver: writes per
resource (no write when nothing changed), lists and gets (the cost of a reconcile).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

#: The verbs that change state, as the apiserver labels them.
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})

_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def request_samples(metrics_text: str) -> Iterator[tuple[dict[str, str], float]]:
    """Each `apiserver_request_total` sample of a /metrics page: its labels and its value."""
    for line in metrics_text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            yield dict(_LABEL.findall(match.group("labels"))), float(match.group("value"))


def request_totals(
    metrics_text: str, resources: Iterable[str], verbs: Iterable[str] = WRITE_VERBS
) -> dict[str, float]:
    """Requests with one of `verbs` per resource[/subresource], for the given resources."""
    wanted_resources, wanted_verbs = set(resources), set(verbs)
    counts: dict[str, float] = {}
    for labels, value in request_samples(metrics_text):
        if labels.get("verb") not in wanted_verbs or labels.get("resource") not in wanted_resources:
            continue
        key = labels["resource"] + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        counts[key] = counts.get(key, 0.0) + value
    return counts
