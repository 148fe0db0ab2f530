"""Where the local control plane keeps its files: the cache, the clusters, the repository's hack/ dir.

Everything is computed at run time from the environment and this file's location, never from a
hard-coded machine path. `TESSERA_CACHE` overrides the cache root (default `~/.cache/tessera`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

VERSIONS_FILE = Path("hack") / "versions.env"
BUILD_SCRIPT = Path("hack") / "build-binaries.sh"


def cache_root() -> Path:
    """The root of Tessera's cache (`$TESSERA_CACHE` or `~/.cache/tessera`)."""
    override = os.environ.get("TESSERA_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "tessera"


def binaries_root() -> Path:
    """Where built binaries live, one folder per `<component>-<version>`."""
    return cache_root() / "bin"


def clusters_root() -> Path:
    """Default parent folder of named clusters."""
    return cache_root() / "clusters"


def repo_root() -> Path | None:
    """The source checkout holding hack/versions.env, found by walking up from this file or the cwd."""
    override = os.environ.get("TESSERA_REPO")
    candidates = [Path(override)] if override else []
    candidates += [Path(__file__).resolve().parent, Path.cwd().resolve()]
    for start in candidates:
        for folder in (start, *start.parents):
            if (folder / VERSIONS_FILE).is_file():
                return folder
    return None


def venv_bin_dir() -> Path:
    """The bin/ folder of the Python environment running now (where `tessera-runtime` etc. live)."""
    return Path(sys.executable).parent


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a shell-style KEY=VALUE file (comments and blank lines ignored)."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values
