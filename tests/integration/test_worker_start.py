"""A worker's start and stop when a server is gone.

Started against a Redis that does not answer, a worker (and a gateway: the same check) says so
at start (which URL, what went wrong, the password left out) and keeps running — events wait and
are retried — instead of saying "ready" and nothing more until the first event fails. Stopped
after its broker died, it exits within its own deadline instead of Faust's 60 s."""

from __future__ import annotations

import logging
import signal
import time
import uuid

import pytest

from ratchet.sandbox.process import FAST_GROUP_ENV, ChildProcess, worker_env
from ratchet.sandbox.servers import free_port
from ratchet.store.redis import connect, log_reachability


def _start(redis_url: str, kafka_bootstrap: str) -> ChildProcess:
    tag = uuid.uuid4().hex[:8]
    env = worker_env(
        {**worker_env(), **FAST_GROUP_ENV}, redis_url=redis_url, kafka_bootstrap=kafka_bootstrap,
        worker_id=f"start-{tag}", topic_ingest=f"ingest-{tag}", topic_verdicts=f"verdicts-{tag}",
        topic_feedback=f"feedback-{tag}", worker_web_port=0, log_format="text",
    )
    return ChildProcess(env, name="worker", argv=("-m", "ratchet", "worker")).start()


def _wait_for(proc: ChildProcess, text: str, timeout_s: float = 90.0) -> str:
    deadline = time.monotonic() + timeout_s
    while text not in (log := proc.log()):
        assert proc.running, f"the worker exited:\n{log[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} in:\n{log[-3000:]}"
        time.sleep(0.2)
    return log


def test_a_worker_whose_redis_does_not_answer_says_so_at_start_and_keeps_running(
    redis_url: str, kafka_bootstrap: str,
) -> None:
    dead = f"redis://ops:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    proc = _start(dead, kafka_bootstrap)
    try:
        log = _wait_for(proc, "check RATCHET_REDIS_URL")
        line = next(x for x in log.splitlines() if "does not answer" in x)
        assert "WARNING" in line
        assert f"Redis at {dead.replace('ops:hunter2@', '…@')} does not answer" in line
        assert "ConnectionError" in line
        assert "hunter2" not in log
        time.sleep(1.0)
        assert proc.running, "the start-up check must not stop the worker"
    finally:
        proc.stop()
    assert not proc.running

    proc = _start(redis_url, kafka_bootstrap)  # the fixture's Redis answers
    try:
        log = _wait_for(proc, " answers")
        assert "does not answer" not in log
    finally:
        proc.stop()


async def test_the_start_up_check_names_the_url_without_its_password(
    redis_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.start")
    dead = f"redis://ops:hunter2@127.0.0.1:{free_port()}/0"
    client = connect(dead)
    try:
        with caplog.at_level(logging.INFO, logger="test.start"):
            assert not await log_reachability(client, dead, log, timeout_s=2.0)
    finally:
        await client.aclose()
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        f"Redis at redis://…@127.0.0.1:{dead.rsplit(':', 1)[1]} does not answer (")
    assert "hunter2" not in record.getMessage()
    caplog.clear()
    client = connect(redis_url)
    try:
        with caplog.at_level(logging.INFO, logger="test.start"):
            assert await log_reachability(client, redis_url, log)
    finally:
        await client.aclose()
    assert [r.getMessage() for r in caplog.records] == [f"Redis at {redis_url} answers"]


def test_a_worker_whose_broker_is_gone_still_stops_within_its_shutdown_timeout(
    redis_url: str,
) -> None:
    """Faust waits 60 s on its consumer when the brokers are gone; the worker's own deadline
    (RATCHET_WORKER_SHUTDOWN_TIMEOUT_S) ends the stop sooner, with its own exit code."""
    from ratchet.cli.worker import EXIT_STOP_TIMEOUT
    from ratchet.sandbox.servers import TansuServer

    with TansuServer() as broker:  # its own broker: this test kills it
        tag = uuid.uuid4().hex[:8]
        env = worker_env(
            {**worker_env(), **FAST_GROUP_ENV}, redis_url=redis_url,
            kafka_bootstrap=broker.bootstrap, worker_id=f"stop-{tag}", worker_web_port=0,
            log_format="text", worker_shutdown_timeout_s=3,
        )
        proc = ChildProcess(env, name="worker", argv=("-m", "ratchet", "worker")).start()
        try:
            _wait_for(proc, " answers")  # started: the start-up Redis check has run
            broker.kill()
            assert proc.proc is not None
            started = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            code = proc.proc.wait(timeout=45)
            took = time.monotonic() - started
            log = proc.log()
        finally:
            proc.stop()
    assert code == EXIT_STOP_TIMEOUT, log[-3000:]
    assert 2.5 <= took < 20, took
    assert "worker stop did not finish within 3 s" in log
