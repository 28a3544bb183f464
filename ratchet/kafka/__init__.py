"""Kafka plumbing: explicit topic creation and the audit-event sink."""
