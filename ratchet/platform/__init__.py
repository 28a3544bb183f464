"""Tenant platform: projects, agents and keys (credentials, provisioning, signup) and audit export."""
