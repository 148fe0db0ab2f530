"""The package layout: two source roots that never shadow the standard library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stdlib_operator_module_is_not_shadowed_from_the_repo_root() -> None:
    # `operator/` is a source root, not a package: importing `operator` from the repo root must
    # still give the standard library's module.
    result = subprocess.run(
        [sys.executable, "-c", "from operator import add; import operator; print(add(2, 3), operator.__file__)"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    value, location = result.stdout.split()
    assert value == "5"
    assert not location.startswith(str(ROOT / "operator"))


def test_source_roots_have_no_init_file() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert not (ROOT / "runtime" / "__init__.py").exists()


def test_console_scripts_are_declared() -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"tessera", "tessera-operator", "tessera-runtime"}
