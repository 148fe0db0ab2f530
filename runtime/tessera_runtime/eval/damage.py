"""Copies of the test model in another form, faithful or deterministically damaged, for tests of the
evaluation gate.

A candidate must be a real model that a real server loads: here SmolLM2's weights, de-quantized from the
packaged GGUF and saved as a safetensors folder, either as they are (the same model in another form) or
with Gaussian noise as large as each weight matrix's own spread added to every matrix (fixed seed).
torch and transformers are imported only when a copy is made.
"""

from __future__ import annotations

from pathlib import Path


def make_damaged_copy(destination: Path, seed: int = 0, scale: float = 1.0) -> Path:
    """Write SmolLM2 with noise of `scale` times each matrix's own standard deviation added to every
    weight matrix to `destination` (a safetensors folder with its tokenizer); returns it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tessera_runtime.engines import smollm2_path

    gguf = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: copy its weights into a plain one.
    plain = AutoModelForCausalLM.from_config(loaded.config)  # type: ignore[no-untyped-call]
    plain.load_state_dict(loaded.state_dict())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in plain.parameters():
            if parameter.dim() >= 2:
                noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                parameter.add_(noise * parameter.std() * scale)
    plain.save_pretrained(destination)
    tokenizer.save_pretrained(destination)
    return destination


def make_faithful_copy(destination: Path) -> Path:
    """SmolLM2's weights unchanged, as float32 safetensors instead of the packaged Q4_1 GGUF."""
    return make_damaged_copy(destination, scale=0.0)
