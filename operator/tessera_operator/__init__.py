"""Tessera's operator: the API types, the planner, the pure builders and the Kubernetes edges."""

__version__ = "0.1.0"
