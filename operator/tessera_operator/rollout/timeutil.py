"""Times and durations as the API writes them (RFC 3339, Kubernetes-style durations)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as 90s, 10m, 1h30m or 500ms."""
    parts = _PART.findall(text)
    if not parts or "".join(value + unit for value, unit in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(value) * _SECONDS[unit] for value, unit in parts)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z suffix, to the second (what Kubernetes writes)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """A time written by format_time (or any RFC 3339 time), None for None or garbage."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds_since(text: str | None, now: datetime) -> float:
    """Seconds from a stored time to now (0 when the time is missing)."""
    then = parse_time(text)
    return 0.0 if then is None else (now - then).total_seconds()
