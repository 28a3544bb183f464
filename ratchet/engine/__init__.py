"""The behavioural engine: chain scoring and modes, guardrail orchestration, offline replay."""
