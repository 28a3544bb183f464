"""``benchmarks.detection``: no reviewer unless asked, the oracle labelled as such, seeds summed.

Small traffic through the real engine on the session's redis-server: the point is what the
benchmark reports and how it labels it, not the detection figures themselves.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from benchmarks import detection

SMALL = ["--agents", "6", "--runs", "40", "--warmup", "20", "--anomaly-rate", "0.3"]


def test_reported_and_tuning_seeds_are_disjoint() -> None:
    assert detection.REPORTED_SEEDS and detection.TUNING_SEEDS
    assert not set(detection.REPORTED_SEEDS) & set(detection.TUNING_SEEDS)


def test_default_is_no_reviewer_and_sums_the_seeds(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d.json"
    assert detection.main([*SMALL, "--seeds", "5,6", "--redis-url", redis_url,
                           "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "no reviewer" in text and "ORACLE" not in text and "custom seeds" in text
    res = orjson.loads(out.read_bytes())
    assert res["review"] == "none" and res["seeds"] == [5, 6]
    assert all(r["review"] == {"approved": 0, "rejected": 0} for r in res["replays"])
    # the summed figures are the sum of the per-seed ones
    for kind in ("fp", "tn", "tp", "fn"):
        total = res["enforced"]["all"][kind]
        assert total == sum(s["all"]["enforced"][kind] for s in res["per_seed"].values())
    assert res["runs_after_warmup"] == 2 * 6 * 20
    assert {"prio:mixed", "structured", "assistant"} <= set(res["enforced"])
    # every false run is explained once per dimension; the new-shape floor counts normal runs
    fp = res["enforced"]["all"]["fp"]
    assert sum(n for k, n in res["false_runs"].items() if k.startswith("archetype: ")) == fp
    assert sum(n for k, n in res["false_runs"].items() if " cause: " in k) == fp
    missed = res["enforced"]["all"]["fn"]
    assert sum(res["missed_runs"].values()) == missed
    floor = res["new_shape_floor"]["all"]
    assert floor["normal_runs"] == res["enforced"]["all"]["fp"] + res["enforced"]["all"]["tn"]
    assert 0 < floor["with_a_new_shape"] <= floor["normal_runs"]


def test_oracle_reviewer_is_labelled_and_acts(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.json"
    # long enough for chains to lock and pause, so there is something to review
    args = ["--agents", "6", "--runs", "120", "--warmup", "90", "--anomaly-rate", "0.3",
            "--guardrails"]
    assert detection.main([*args, "--seeds", "5", "--review", "oracle", "--redis-url",
                           redis_url, "--json", str(out)]) == 0
    assert "ORACLE reviewer (knows the true labels; not a detection figure)" in \
        capsys.readouterr().out
    res = orjson.loads(out.read_bytes())
    assert res["review"] == "oracle"
    review = res["replays"][0]["review"]
    assert review["approved"] > 0 and review["rejected"] > 0


def test_tuning_flag_uses_the_tuning_seeds() -> None:
    with pytest.raises(SystemExit):  # --seeds and --tuning exclude each other
        detection.main(["--seeds", "1", "--tuning"])
    with pytest.raises(SystemExit):
        detection.main(["--seeds", "x"])
