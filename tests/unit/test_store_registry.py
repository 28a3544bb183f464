"""One of each in the store floor: the script registry, the client factory, the failure translation."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from redis.asyncio import Redis

from models.errors import UnavailableError
from ratchet.config.settings import Settings
from ratchet.sandbox.servers import free_port
from ratchet.store.keys import Keys
from ratchet.store.redis import connect, connect_from_settings
from ratchet.store.scripts import SCRIPTS, script_source, scripts_for
from ratchet.store.verdicts import VerdictStore


def test_registry_names_every_script_in_the_package() -> None:
    on_disk = sorted(
        p.name.removesuffix(".lua") for p in resources.files("lua").iterdir()
        if p.name.endswith(".lua")
    )
    assert sorted(SCRIPTS) == on_disk


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_has_a_header_block(name: str) -> None:
    """Header: purpose, KEYS and ARGV named, Output described (bullmq style)."""
    source = script_source(name)
    header = source.split("]]", 1)[0] if source.startswith("--[[") else source[:4000]
    assert "KEYS[" in header, f"{name}.lua: its header names no KEYS"
    assert "ARGV" in header, f"{name}.lua: its header names no ARGV"
    assert re.search(r"(?i)output|returns", header), f"{name}.lua: its header says no output"


def test_unknown_script_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="no Lua script named 'nope'"):
        script_source("nope")


def test_each_script_is_registered_once_per_client() -> None:
    client = Redis()
    first = scripts_for(client)
    assert scripts_for(client) is first
    assert first["observe"] is scripts_for(client)["observe"]
    assert scripts_for(Redis()) is not first


async def test_a_down_redis_is_one_error_type() -> None:
    """Stores raise UnavailableError (never a redis-py exception) when nothing listens."""
    client = connect(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    store = VerdictStore(client, Keys("t"))
    try:
        with pytest.raises(UnavailableError, match="Redis is unavailable"):
            await store.get("prj", "evt")
    finally:
        await client.aclose()


def test_factory_needs_a_url() -> None:
    with pytest.raises(UnavailableError, match="RATCHET_REDIS_URL is not set"):
        connect_from_settings(Settings(redis_url=None))
