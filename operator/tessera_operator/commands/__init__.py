"""Command groups of the `tessera` CLI; each module exposes `register(app)`."""
