"""Model engines. `transformers`: the CPU engine with continuous batching (torch is imported lazily)."""

from .loader import LoadedModel, load_model, smollm2_path

__all__ = ["LoadedModel", "load_model", "smollm2_path"]
