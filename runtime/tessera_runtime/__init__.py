"""Tessera's runtime: the model server, the vLLM launcher, the router and the evaluation runner."""

__version__ = "0.1.0"
