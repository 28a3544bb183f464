"""Outbound webhooks: address safety, signed delivery with retries and breakers, the dispatcher."""
