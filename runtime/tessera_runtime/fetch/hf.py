"""hf:// sources: a Hugging Face Hub snapshot (huggingface_hub), honouring HF_HUB_OFFLINE and a token file."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .sources import FetchError, ParsedUri, SourceFile

log = logging.getLogger("tessera_runtime.fetch")


def read_token(credentials_file: Path | None) -> str | None:
    """The token from a mounted Secret file (whitespace stripped); never logged."""
    if credentials_file is None:
        return None
    token = credentials_file.read_text().strip()
    return token or None


def offline() -> bool:
    """True when HF_HUB_OFFLINE asks for no network access."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cache_dir() -> str | None:
    """The Hub cache as the environment says now (huggingface_hub reads it only once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def fetch_hf(
    uri: ParsedUri, dest: Path, revision: str | None, credentials_file: Path | None
) -> list[SourceFile]:
    """Download (or, offline, copy from the local cache) the repository snapshot into `dest`.

    huggingface_hub resumes interrupted downloads and checks file sizes and hashes itself.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo_id = f"{uri.netloc}/{uri.path}".strip("/")
    token = read_token(credentials_file)
    log.info(
        "fetching hf://%s at %s%s%s",
        repo_id,
        revision or "main",
        " (offline: local cache only)" if offline() else "",
        " with a token" if token else "",
    )
    try:
        if offline():
            # Offline, the snapshot can only come from the local cache (a pre-populated HF_HOME); copy it out.
            cached = snapshot_download(
                repo_id=repo_id, revision=revision, token=token, local_files_only=True, cache_dir=_cache_dir()
            )
            shutil.copytree(cached, dest, dirs_exist_ok=True)
        else:
            snapshot_download(
                repo_id=repo_id, revision=revision, local_dir=str(dest), token=token, cache_dir=_cache_dir()
            )
    except LocalEntryNotFoundError as exc:
        raise FetchError(
            f"hf://{repo_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE forbids downloading it"
            if offline()
            else f"hf://{repo_id}: {type(exc).__name__}"
        ) from exc
    except HfHubHTTPError as exc:
        # The message may quote request headers; keep only the status to be sure no token leaks.
        status = exc.response.status_code if exc.response is not None else "unknown"
        raise FetchError(f"hf://{repo_id}: the Hub answered HTTP {status}") from exc
    files = []
    for path in sorted(dest.rglob("*")):
        rel = path.relative_to(dest).as_posix()
        if path.is_file() and not rel.startswith(".cache/") and not rel.startswith(".tessera"):
            files.append(SourceFile(rel, path.stat().st_size))
    if not files:
        raise FetchError(f"hf://{repo_id} produced no files")
    return files
