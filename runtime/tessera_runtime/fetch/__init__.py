"""Materialise a Model's weights into a local directory: file://, pvc://, hf://, s3://, gs://.

Used by the pod's init container (`tessera-runtime fetch`). Partial downloads resume; sizes (and MD5
where the store knows it) are verified; a marker records completion so a restarted pod skips the work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .download import MARKER_NAME, fetch_files, marker_matches, read_marker, write_marker
from .hf import fetch_hf
from .sources import FetchError, GcsSource, LocalSource, S3Source, Source, SourceFile, local_path, parse_uri

log = logging.getLogger("tessera_runtime.fetch")

__all__ = ["MARKER_NAME", "FetchError", "FetchResult", "fetch"]


@dataclass(frozen=True)
class FetchResult:
    """What a fetch did."""

    files: int
    total_bytes: int
    skipped: bool


def _forget_previous(dest: Path) -> None:
    """A marker from another source or revision: remove its files so none is mistaken for a new one."""
    marker = read_marker(dest)
    if marker is None:
        return
    files = marker.get("files")
    if isinstance(files, dict):
        for relpath in files:
            target = dest / relpath
            if target.resolve().is_relative_to(dest.resolve()):
                target.unlink(missing_ok=True)
    (dest / MARKER_NAME).unlink(missing_ok=True)


def fetch(
    source: str,
    dest: Path,
    *,
    revision: str | None = None,
    credentials_file: Path | None = None,
    pvc_root: str | None = None,
    tty: bool | None = None,
) -> FetchResult:
    """Fetch `source` into `dest`, or do nothing when a matching completion marker is there."""
    uri = parse_uri(source)
    if revision is not None and uri.scheme != "hf":
        raise FetchError(f"--revision applies to hf:// sources only, not {uri.scheme}://")
    if marker_matches(dest, source, revision):
        marker = read_marker(dest) or {}
        files = marker.get("files", {})
        log.info("already complete (marker %s): nothing to do", dest / MARKER_NAME)
        return FetchResult(len(files), sum(files.values()), skipped=True)
    if dest.exists():
        _forget_previous(dest)
    dest.mkdir(parents=True, exist_ok=True)
    found: list[SourceFile]
    if uri.scheme == "hf":
        found = fetch_hf(uri, dest, revision, credentials_file)
        write_marker(dest, source, revision, found)
    else:
        backend: Source
        if uri.scheme in ("file", "pvc", "pkg"):
            backend = LocalSource(local_path(uri, pvc_root))
        elif uri.scheme == "s3":
            backend = S3Source(uri, credentials_file)
        else:
            backend = GcsSource(uri, credentials_file)
        found = fetch_files(backend, dest, source, revision, tty=tty)
    return FetchResult(len(found), sum(f.size for f in found), skipped=False)
