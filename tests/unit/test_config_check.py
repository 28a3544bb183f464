"""Configuration that refuses mistakes: unknown names and wrong types name the key, with the
closest known name; ``ratchet config check`` lists every problem and exits 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.errors import ConfigError, ValidationError
from models.guardrails.policy import parse_policy_toml
from models.params import engine_problems, load_params
from ratchet.config.settings import Settings, variable_problems

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[engin]\nfloor_bits = 8.0\n", "[engin] is not a known table (did you mean 'engine'?)"),
        ("floor_bits = 8.0\n", "floor_bits is outside any table; engine parameters go under [engine]"),
        ("[engine]\nflor_bits = 8.0\n",
         "engine.flor_bits is not a known engine parameter (did you mean 'floor_bits'?)"),
        ('[engine]\nfloor_bits = "8"\n', "engine.floor_bits must be a number, got '8'"),
        ("[engine]\nwindow = 2.5\n", "engine.window must be an integer, got 2.5"),
        ("[engine]\nprotect = 1\n", "engine.protect must be true or false, got 1"),
        ("[engine]\nsoft_action = 1\n", "engine.soft_action must be a string, got 1"),
        ("engine = 3\n", "[engine] must be a table"),
    ],
)
def test_engine_config_mistakes_are_errors_naming_the_key(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_params(toml)
    assert message in str(caught.value)
    # config check's list of every problem says the same of a file with one problem
    [problem] = engine_problems(toml)
    assert problem == str(caught.value)


#: An engine config with six problems: a table, a name, a type, three values.
SIX_WRONG = ("[engin]\nx = 1\n[engine]\nflor_bits = 8\nwindow = 2.5\ndecay_rate = 3\n"
             "epsilon = 7\nwindow_stat = \"bogus\"\nfloor_bits = 9.0\n")


def test_engine_problems_lists_every_wrong_key_and_never_a_right_one() -> None:
    problems = engine_problems(SIX_WRONG)
    named = [p.split()[0] for p in problems]
    assert named[:3] == ["[engin]", "engine.flor_bits", "engine.window"]  # in file order
    # then the values, in the order the engine checks them
    assert sorted(named[3:]) == ["engine.decay_rate", "engine.epsilon", "engine.window_stat"]
    assert not any("floor_bits " in p for p in problems)
    # a rule across two keys is reported with the file's values, once, and blames no other key
    [across] = engine_problems("[engine]\nwindow = 80\nwindow_large = 40\nfloor_bits = 9.0\n")
    assert across == "engine.window_large (40) must be >= engine.window (80): set both"
    assert engine_problems("[engine]\nwindow = 80\nwindow_large = 90\n") == []


def test_config_check_lists_every_problem_of_the_engine_config(tmp_path: Path) -> None:
    engine = tmp_path / "engine.toml"
    engine.write_text(SIX_WRONG)
    done = _ratchet({}, "config", "check", "--engine", str(engine))
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: engine config {engine}: {p}" for p in engine_problems(SIX_WRONG)]
    assert "6 problem(s)" in done.stderr


def test_a_correct_engine_config_still_loads() -> None:
    params = load_params("[engine]\nfloor_bits = 8\nwindow = 12\nwindow_stat = \"std\"\n")
    assert (params.floor_bits, params.window, params.window_stat) == (8.0, 12, "std")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[guardrail.velocity]\nenabled = true\n", "did you mean 'guardrails'?"),
        ("[guardrails.velocty]\nenabled = true\n", "did you mean 'velocity'?"),
        ("[guardrails.velocity]\nenabeld = true\n", "did you mean 'enabled'?"),
        ('[guardrails.velocity]\nenabled = "yes"\n', "must be true or false, got 'yes'"),
    ],
)
def test_policy_mistakes_are_errors_naming_the_key(toml: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("?", r"\?").replace(".", r"\.")):
        parse_policy_toml(toml)


def test_unknown_ratchet_variables_are_refused_with_the_closest_name() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RATCHET_REDIS_ULR": "redis://localhost:6379/0"})
    assert "RATCHET_REDIS_ULR is not a Ratchet setting (did you mean 'RATCHET_REDIS_URL'?)" in str(
        caught.value)
    # the test suite's and the scripts' own variables are not settings, and not errors
    s = Settings.from_env({"RATCHET_TEST_REDIS_URL": "x", "RATCHET_VENV": ".venv",
                           "OTHER_VAR": "1", "RATCHET_GATEWAY_PORT": "9000"})
    assert s.gateway_port == 9000
    problems = variable_problems({"RATCHET_GATEWAY_PORT": "abc", "RATCHET_XYZZY": "1"})
    assert problems == [
        "RATCHET_XYZZY is not a Ratchet setting; fix or unset it",
        "RATCHET_GATEWAY_PORT='abc' is not a valid int; fix or unset it",
    ]


def _ratchet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    return subprocess.run([sys.executable, "-m", "ratchet", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


def test_config_check_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    engine = tmp_path / "engine.toml"
    engine.write_text("[engin]\nfloor_bits = 8.0\n")
    policy = tmp_path / "policy.toml"
    policy.write_text("[guardrails.velocty]\nenabled = true\n")
    done = _ratchet({"RATCHET_REDIS_ULR": "redis://x", "RATCHET_LOG_FORMAT": "xml",
                     "RATCHET_DEFAULT_TIER": "gold"},
                    "config", "check", "--engine", str(engine), "--policy", str(policy),
                    "--policy", str(tmp_path / "missing.toml"))
    assert done.returncode == 1, done
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4, done.stderr
    assert "did you mean 'RATCHET_REDIS_URL'?" in errors[0]
    assert "[engin] is not a known table (did you mean 'engine'?)" in errors[1]
    assert "did you mean 'velocity'?" in errors[2]
    assert "missing.toml" in errors[3]
    assert "4 problem(s)" in done.stderr

    # with the environment fixed, the settings-dependent checks run and report too
    done = _ratchet({"RATCHET_LOG_FORMAT": "xml", "RATCHET_DEFAULT_TIER": "gold"},
                    "config", "check")
    assert done.returncode == 1
    assert "RATCHET_LOG_FORMAT='xml' is not one of auto, json, text" in done.stderr
    assert "RATCHET_DEFAULT_TIER='gold' is not one of the tiers" in done.stderr


def test_config_check_refuses_an_action_for_a_detector_that_is_not_enabled(
        tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[guardrails.pii.detector_actions]\nemail = "reject"\n')
    done = _ratchet({}, "config", "check", "--policy", str(policy))
    assert done.returncode == 1, done
    assert "guardrails.pii.detector_actions.email" in done.stderr
    assert "the email detector is not enabled" in done.stderr


def test_config_check_passes_a_good_setup(tmp_path: Path) -> None:
    engine = tmp_path / "engine.toml"
    engine.write_text("[engine]\nfloor_bits = 10.0\n")
    done = _ratchet({"RATCHET_ENGINE_CONFIG": str(engine), "RATCHET_LOG_FORMAT": "json"},
                    "config", "check", "--policy", str(ROOT / "docs" / "policy.example.toml"))
    assert done.returncode == 0, done.stderr
    assert "engine config" in done.stdout and "1 parameter(s) set: floor_bits" in done.stdout
    assert "policy.example.toml: ok" in done.stdout


def test_a_process_with_a_misspelt_variable_refuses_to_start() -> None:
    done = _ratchet({"RATCHET_REDIS_ULR": "redis://x"}, "worker")
    assert done.returncode == 2
    assert "RATCHET_REDIS_ULR is not a Ratchet setting (did you mean 'RATCHET_REDIS_URL'?)" in (
        done.stderr)


def test_a_worker_with_a_broken_engine_config_refuses_to_start(tmp_path: Path) -> None:
    engine = tmp_path / "engine.toml"
    engine.write_text("floor_bits = 8.0\n")  # no [engine] header
    done = _ratchet({"RATCHET_ENGINE_CONFIG": str(engine), "RATCHET_REDIS_URL": "redis://x:1/0",
                     "RATCHET_KAFKA_BOOTSTRAP": "x:1"}, "worker")
    assert done.returncode == 2, done
    assert "floor_bits is outside any table; engine parameters go under [engine]" in done.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RATCHET_REDIS_URL", "nonsense", "it must start with redis://"),
        ("RATCHET_REDIS_URL", "http://h:6379/0", "it must start with redis://"),
        ("RATCHET_REDIS_URL", "redis://h:port/0", "is not a Redis URL (Port could not be cast"),
        ("RATCHET_REDIS_URL", "unix://", "names no socket path"),
        ("RATCHET_RATELIMIT_REDIS_URL", "localhost:6379", "it must start with redis://"),
        ("RATCHET_KAFKA_BOOTSTRAP", "kafka://k:9092", "has a scheme or path"),
        ("RATCHET_KAFKA_BOOTSTRAP", "k:9092,k2:", "'k2:' is not host:port"),
        ("RATCHET_KAFKA_BOOTSTRAP", "k:70000", "'k:70000' is not host:port"),
        ("RATCHET_KAFKA_BOOTSTRAP", ":9092", "':9092' is not host:port"),
    ],
)
def test_service_addresses_that_cannot_connect_are_refused_when_read(
    name: str, value: str, message: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    assert str(caught.value).startswith(f"{name}=")
    assert message in str(caught.value)
    assert variable_problems({name: value}) == [str(caught.value)]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATCHET_REDIS_URL", "redis://127.0.0.1:6379/0"),
        ("RATCHET_REDIS_URL", "rediss://user:pw@redis.example:6380"),
        ("RATCHET_REDIS_URL", "redis://redis"),
        ("RATCHET_REDIS_URL", "redis://"),  # localhost:6379 to redis-py
        ("RATCHET_REDIS_URL", "unix:///run/redis.sock?db=1"),
        ("RATCHET_KAFKA_BOOTSTRAP", "kafka-0:9092, kafka-1:9092"),
        ("RATCHET_KAFKA_BOOTSTRAP", "localhost"),  # port 9092, as Kafka clients read it
        ("RATCHET_KAFKA_BOOTSTRAP", "[::1]:9092,[fd00::2]"),
        ("RATCHET_KAFKA_BOOTSTRAP", ""),  # unset
    ],
)
def test_service_addresses_clients_accept_are_kept(name: str, value: str) -> None:
    s = Settings.from_env({name: value})
    assert getattr(s, name.removeprefix("RATCHET_").lower()) == (value or None)


def test_a_refused_url_is_shown_without_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RATCHET_REDIS_URL": "redis://admin:hunter2@h:port/0"})
    assert "hunter2" not in str(caught.value) and "admin" not in str(caught.value)
    assert "'redis://…@h:port/0'" in str(caught.value)


def test_an_unreachable_redis_is_an_error_saying_where_it_was_looked_for() -> None:
    """Port 1 on loopback: nothing listens there, the connection is refused at once."""
    done = _ratchet({"RATCHET_REDIS_URL": "redis://ops:hunter2@127.0.0.1:1/0"},
                    "baselines", "list", "--project", "p1")
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "ratchet: error: Redis is unavailable (ConnectionError); retry later"
    assert lines[1].strip().startswith("Redis said: ") and "127.0.0.1:1" in lines[1]
    assert lines[2].strip() == ("RATCHET_REDIS_URL=redis://…@127.0.0.1:1/0: is that Redis "
                                "running and reachable from here?")
    assert "hunter2" not in done.stderr


def test_version_names_ratchet_and_the_client_libraries() -> None:
    from importlib.metadata import version

    done = _ratchet({}, "--version")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert "\n" not in line
    assert line.startswith(f"ratchet {version('ratchet-firewall')} (Python ")
    for dist in ("redis", "aiokafka", "faust-streaming"):
        assert f"{'redis-py' if dist == 'redis' else dist} {version(dist)}" in line


def test_the_webhook_dispatcher_without_kafka_is_one_error_line_not_a_traceback() -> None:
    """Port 1 on loopback refuses at once: nothing listens there."""
    done = _ratchet({"RATCHET_REDIS_URL": "redis://127.0.0.1:1/0",
                     "RATCHET_KAFKA_BOOTSTRAP": "127.0.0.1:1", "RATCHET_LOG_FORMAT": "text"},
                    "webhooks", "dispatch", "--metrics-port", "0")
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "ratchet: error: Kafka at 127.0.0.1:1 did not answer: KafkaConnectionError")
    assert "Redis at redis://127.0.0.1:1/0 does not answer" in done.stderr


def test_a_worker_without_kafka_is_one_error_line_not_a_traceback() -> None:
    done = _ratchet({"RATCHET_REDIS_URL": "redis://127.0.0.1:1/0",
                     "RATCHET_KAFKA_BOOTSTRAP": "127.0.0.1:1", "RATCHET_LOG_FORMAT": "text"},
                    "worker")
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "ratchet: error: Kafka at 127.0.0.1:1 did not answer: KafkaConnectionError")
