"""One real Ratchet (gateway + worker child processes on the suite's Redis and Tansu) shared by
the Python and TypeScript SDK tests, with a fast-locking engine and a second, tiny rate-limit
tier for the retry tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ratchet.sandbox.stack import Credentials, local_stack

#: ``tiny``: 30 events a minute, so a test can run into 429 and its Retry-After.
TIERS = "sdk:6000:300,tiny:30:20"


@pytest.fixture(scope="session")
def sdk_stack(redis_url: str, kafka_bootstrap: str) -> Iterator[Credentials]:
    with local_stack(redis_url, kafka_bootstrap, tiers=TIERS, max_wait_ms=5000) as creds:
        yield creds
