"""Run the Argo CD Lua health checks with a real Lua interpreter, and a kstatus-style reader.

Argo CD evaluates a health script with the live object in the global `obj` and reads the table it
returns. `run_lua_health` does the same with Debian's `lua5.1` / `lua5.4`: the object becomes a Lua
table literal, the script is loaded with `loadfile` and called, and its `status` and `message` are
printed. `kstatus` follows the rules of sigs.k8s.io/cli-utils' kstatus (what Flux's health checks
use) for custom resources: deletion, then observedGeneration, then the Reconciling/Stalled and
Ready conditions, else Current.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HEALTH_DIR = ROOT / "charts" / "tessera" / "argocd"
INTERPRETERS = ("lua5.1", "lua5.4")
INSTALL_HINT = "run hack/ensure-system-packages.sh (Debian packages lua5.1 and lua5.4)"


class LuaMissingError(RuntimeError):
    """No Lua interpreter of the wanted version is installed."""


def lua_interpreter(name: str) -> str:
    """Path of one Lua interpreter, or LuaMissingError saying how to install it."""
    found = shutil.which(name)
    if found is None:
        raise LuaMissingError(f"{name} is not installed: {INSTALL_HINT}")
    return found


def _lua_string(text: str) -> str:
    escaped = []
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif code < 32 or code == 127:
            escaped.append(f"\\{code:03d}")
        elif code > 127:  # Lua strings are bytes: write UTF-8 as decimal escapes (5.1 has no \u{})
            escaped.extend(f"\\{byte:03d}" for byte in char.encode())
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def to_lua(value: Any) -> str:
    """A Lua expression for a JSON value (objects -> tables with string keys, lists -> sequences)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(item) for item in value) + "}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"[{_lua_string(str(k))}] = {to_lua(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Lua form for {type(value).__name__}")


HARNESS = """\
obj = {obj}
local script = assert(loadfile({path}))
local hs = script()
assert(type(hs) == "table", "the health script must return a table")
io.write(tostring(hs.status), "\\n", tostring(hs.message), "\\n")
"""


@dataclass(frozen=True)
class Health:
    """What a health check said."""

    status: str
    message: str


def run_lua_health(script: Path, obj: Mapping[str, Any], interpreter: str = "lua5.4") -> Health:
    """Evaluate an Argo CD health script on one object, as Argo CD does."""
    program = HARNESS.format(obj=to_lua(obj), path=_lua_string(str(script)))
    result = subprocess.run(
        [lua_interpreter(interpreter), "-"], input=program, capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{interpreter} failed on {script.name}: {result.stderr.strip()}")
    status, _, message = result.stdout.partition("\n")
    return Health(status, message.rstrip("\n"))


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = obj.get("status") or {}
    return list(status.get("conditions") or [])


def kstatus(obj: Mapping[str, Any]) -> Health:
    """kstatus' result for a custom resource: Current, InProgress, Failed or Terminating."""
    metadata = obj.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return Health("Terminating", "Resource scheduled for deletion")
    generation = metadata.get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration", generation)
    if generation is not None and observed != generation:
        return Health("InProgress", f"generation is {generation}, but latest observed generation is {observed}")
    conditions = _conditions(obj)
    for condition in conditions:
        if condition.get("type") == "Reconciling" and condition.get("status") == "True":
            return Health("InProgress", str(condition.get("message", "")))
        if condition.get("type") == "Stalled" and condition.get("status") == "True":
            return Health("Failed", str(condition.get("message", "")))
    for condition in conditions:
        if condition.get("type") == "Ready":
            # A Ready condition computed from an older generation is not about the current spec.
            stale = condition.get("observedGeneration") is not None and generation is not None \
                and condition["observedGeneration"] != generation
            if condition.get("status") == "True" and not stale:
                return Health("Current", str(condition.get("message", "")))
            return Health("InProgress", str(condition.get("message", "")))
    return Health("Current", "Resource is current")
