"""Resumable, verified copies of a source's files into the destination, and the completion marker."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .progress import FetchProgress
from .sources import FetchError, Source, SourceFile

MARKER_NAME = ".tessera-fetch-complete.json"
PARTIAL_SUFFIX = ".tessera-partial"
CHUNK = 4 * 1024 * 1024


def read_marker(dest: Path) -> dict[str, Any] | None:
    """The completion marker, if present and readable."""
    try:
        data = json.loads((dest / MARKER_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def marker_matches(dest: Path, source: str, revision: str | None) -> bool:
    """True when a previous fetch of the same source and revision completed and its files are still there."""
    marker = read_marker(dest)
    if marker is None or marker.get("source") != source or marker.get("revision") != revision:
        return False
    files = marker.get("files")
    if not isinstance(files, dict):
        return False
    for relpath, size in files.items():
        path = dest / relpath
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def write_marker(dest: Path, source: str, revision: str | None, files: Sequence[SourceFile]) -> None:
    """Record completion (atomically: written aside, then renamed)."""
    body = {
        "source": source,
        "revision": revision,
        "files": {f.relpath: f.size for f in files},
        "totalBytes": sum(f.size for f in files),
        "completedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = dest / (MARKER_NAME + ".tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True))
    tmp.replace(dest / MARKER_NAME)


def _safe_target(dest: Path, relpath: str) -> Path:
    target = (dest / relpath).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise FetchError(f"refusing to write {relpath!r} outside the destination")
    return target


def fetch_file(source: Source, item: SourceFile, dest: Path, progress: FetchProgress) -> None:
    """Copy one file, resuming a partial copy, then verify its size (and MD5 when known) and move it in place."""
    final = _safe_target(dest, item.relpath)
    if final.is_file() and final.stat().st_size == item.size:
        progress.advance(item.size)  # completed (and verified) by an earlier run
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    offset = partial.stat().st_size if partial.exists() else 0
    if offset > item.size:
        offset = 0
        partial.unlink()
    digest = hashlib.md5(usedforsecurity=False) if item.md5 else None
    if offset:
        progress.note(f"resuming {item.relpath} at {offset} of {item.size} bytes")
        if digest is not None:
            with partial.open("rb") as existing:
                for block in iter(lambda: existing.read(CHUNK), b""):
                    digest.update(block)
        progress.advance(offset)
    if offset < item.size:
        with source.open_at(item.relpath, offset) as remote, partial.open("ab") as out:
            while True:
                block = remote.read(CHUNK)
                if not block:
                    break
                out.write(block)
                if digest is not None:
                    digest.update(block)
                progress.advance(len(block))
    elif not partial.exists():
        partial.touch()  # an empty file
    size = partial.stat().st_size
    if size != item.size:
        raise FetchError(f"{item.relpath}: expected {item.size} bytes, got {size} (the partial copy is kept)")
    if digest is not None and digest.hexdigest() != item.md5:
        partial.unlink()
        raise FetchError(f"{item.relpath}: MD5 mismatch (expected {item.md5}, got {digest.hexdigest()})")
    partial.replace(final)


def fetch_files(
    source: Source, dest: Path, uri: str, revision: str | None, *, tty: bool | None = None
) -> list[SourceFile]:
    """Fetch every file of `source` into `dest` and write the marker; returns the files."""
    files = source.list_files()
    dest.mkdir(parents=True, exist_ok=True)
    with FetchProgress(sum(f.size for f in files), len(files), tty=tty) as progress:
        for item in files:
            fetch_file(source, item, dest, progress)
    write_marker(dest, uri, revision, files)
    return files
