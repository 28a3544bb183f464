"""The ``ratchet`` command: :func:`ratchet.cli.main.main` builds one parser from one module per
command family (``python -m ratchet`` runs it too).

Nothing is imported here, so ``python -m ratchet.cli.<module>`` runs a module without importing
it twice.
"""
