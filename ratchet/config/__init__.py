"""Configuration: the one settings object (``RATCHET_*`` environment variables) and its generated reference."""
