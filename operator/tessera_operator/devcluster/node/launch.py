"""From a container spec to a host command line: the image table, `$(VAR)` expansion, path rewriting."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera_operator.devcluster.node.podenv import ConfigError, expand
from tessera_operator.devcluster.node.volumes import PathRewriter
from tessera_operator.devcluster.paths import venv_bin_dir
from tessera_operator.devcluster.profile import Profile

Json = dict[str, Any]


class ImageNotMappedError(RuntimeError):
    """The container's image has no entry in the profile's image table."""


@dataclass(frozen=True)
class Launch:
    """Everything needed to start (and probe) one container as a process."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    ports: dict[str, int]
    rewriter: PathRewriter

    def host_argv(self, command: list[str]) -> list[str]:
        """A command given in container terms (exec probes, hooks) as a host command line."""
        return resolve_argv([self.rewriter(expand(part, self.env)) for part in command], self.env)


def resolve_executable(name: str, env: Mapping[str, str]) -> str:
    """Bare names resolve in this Python environment's bin/ first, then on the container's PATH."""
    if os.sep in name:
        return name
    local = venv_bin_dir() / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name, path=env.get("PATH"))
    return found or name


def resolve_argv(argv: list[str], env: Mapping[str, str]) -> list[str]:
    if not argv:
        raise ConfigError("the container has no command: set `command` or map the image to an entrypoint")
    return [resolve_executable(argv[0], env), *argv[1:]]


def container_argv(container: Json, profile: Profile) -> list[str]:
    """ENTRYPOINT/CMD semantics: `command` replaces the image's entrypoint (and drops its args)."""
    mapping = profile.image_mapping(str(container.get("image", "")))
    if mapping is None:
        known = ", ".join(m.image for m in profile.images) or "none"
        raise ImageNotMappedError(
            f"image {container.get('image')!r} has no local command in the cluster profile (mapped images: {known})"
        )
    command = container.get("command")
    args = container.get("args")
    if command:
        return [*command, *(args or [])]
    return [*mapping.entrypoint, *(args if args is not None else mapping.args)]


def build_launch(
    container: Json,
    profile: Profile,
    env: dict[str, str],
    rewriter: PathRewriter,
    pod_dir: Path,
    host_env: dict[str, str],
) -> Launch:
    """Resolve the container's command line, working directory and env with container paths rewritten.

    `host_env` (already in host terms, e.g. TESSERA_MOUNT_MAP) is added after the rewriting.
    """
    env = {key: rewriter(value) for key, value in env.items()} | host_env
    argv = [rewriter(expand(part, env)) for part in container_argv(container, profile)]
    working_dir = container.get("workingDir")
    if working_dir:
        rewritten = rewriter(working_dir)
        # A working dir outside every mount lives in the pod's own root folder.
        cwd = Path(rewritten) if rewritten != working_dir else pod_dir / "rootfs" / working_dir.lstrip("/")
    else:
        cwd = pod_dir / "work"
    cwd.mkdir(parents=True, exist_ok=True)
    ports = {p["name"]: int(p["containerPort"]) for p in container.get("ports", []) or [] if p.get("name")}
    return Launch(resolve_argv(argv, env), env, cwd, ports, rewriter)
