"""Tessera's Kubernetes API types. `v1alpha1` is the single source of every schema."""
