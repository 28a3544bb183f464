"""The ``ratchet`` command: :func:`main` builds one parser from one module per command family."""

from ratchet.cli.main import main

__all__ = ["main"]
