"""Subcommands of `tessera-runtime`; each module exposes `register(app)`."""
