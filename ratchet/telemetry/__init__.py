"""Telemetry: Prometheus metrics shared by the worker, the engine and the stores."""
