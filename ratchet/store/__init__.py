"""Redis adapters: key names, the script registry, the client factory, and one store per concept.

Everything that talks to Redis lives here; the floors above call these stores, never a Redis client.
"""
