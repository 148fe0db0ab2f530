"""Whether a live object already carries what we would apply (so nothing is written when nothing changed).

Two checks, both needed:
* the hash of the desired object, stored as an annotation when it was applied: it changes whenever
  the desired object changes, including fields removed from it (which a subset check cannot see);
* the desired object is a subset of the live one: it catches drift (someone edited a field we own).
  The apiserver adds defaults and normalises quantities ("0.5" becomes "500m"), so values compare
  semantically and extra live fields are ignored.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from tessera_operator.desired.labels import APPLIED_HASH

Json = dict[str, Any]

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIXES = {
    None: Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def parse_quantity(text: str) -> Decimal | None:
    """A Kubernetes quantity ("500m", "2Gi") as a number, or None when the text is not one."""
    match = _QUANTITY.match(text)
    if not match:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation:
        return None


def _scalar_equal(want: Any, have: Any) -> bool:
    if want == have and type(want) is type(have):
        return True
    if isinstance(want, bool) or isinstance(have, bool):
        return False
    if isinstance(want, int | float) and isinstance(have, int | float):
        return float(want) == float(have)
    if isinstance(want, str) and isinstance(have, str):
        left, right = parse_quantity(want), parse_quantity(have)
        return left is not None and left == right
    return False


def is_subset(want: Any, have: Any) -> bool:
    """Whether `have` contains `want`: maps key by key, lists element by element (same length)."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        return all(key in have and is_subset(value, have[key]) for key, value in want.items())
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        return all(is_subset(w, h) for w, h in zip(want, have, strict=True))
    return _scalar_equal(want, have)


def desired_hash(obj: Json) -> str:
    """Hash of a desired object (its own applied-hash annotation left out)."""
    clean = copy.deepcopy(obj)
    annotations = clean.get("metadata", {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(APPLIED_HASH, None)
        if not annotations:
            del clean["metadata"]["annotations"]
    canonical = json.dumps(clean, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_applied_hash(obj: Json) -> Json:
    """A copy of the desired object with its hash recorded as an annotation."""
    stamped = copy.deepcopy(obj)
    stamped["metadata"].setdefault("annotations", {})[APPLIED_HASH] = desired_hash(obj)
    return stamped


def needs_apply(desired: Json, live: Json | None) -> bool:
    """Whether applying `desired` would change `live` (None: the object does not exist)."""
    if live is None:
        return True
    if live.get("metadata", {}).get("deletionTimestamp"):
        return False  # applying cannot stop a deletion; the object is created again once it is gone
    stamped = with_applied_hash(desired)
    live_hash = (live.get("metadata", {}).get("annotations") or {}).get(APPLIED_HASH)
    if live_hash != stamped["metadata"]["annotations"][APPLIED_HASH]:
        return True
    return not is_subset(stamped, live)
