"""``ratchet baselines list``: the columns stay in line whatever the chain labels' lengths (a
``…!critical`` chain of a long agent id overflowed the fixed 48-character chain column)."""

from __future__ import annotations

from models.baselines import Baseline
from models.nodes import ChainId
from ratchet.cli.baselines import list_table


def _b(mode: str, runs: int) -> Baseline:
    return Baseline("c", "t", mode, runs, runs * 9, 12, False, True, 0.01, 0, ())


def test_columns_line_up_for_long_critical_chains() -> None:
    rows: list[tuple[ChainId, Baseline | None]] = [
        (ChainId("prj_0123456789abcdef", "support-agent-with-a-long-id-01", "payments",
                 critical=True), _b("locked", 140)),
        (ChainId("p", "a", "crm"), _b("shadow", 3)),
        (ChainId("prj_0123456789abcdef", "x", "gone"), None),
    ]
    lines = list_table(rows)
    header, long, short, gone = lines
    assert long.startswith("prj_0123456789abcdef/support-agent-with-a-long-id-01/payments!critical ")
    # the mode column starts at the same place on every line
    at = header.index("mode")
    assert long[at:].startswith("locked ") and short[at:].startswith("shadow ")
    assert gone[at:] == "(expired or reset)"
    # and the numbers end where their headers end
    for name, value in (("runs", "140"), ("events", "1260")):
        end = header.index(name) + len(name)
        assert long[end - len(value):end] == value
    assert header.endswith("  flags") and long.endswith("  eligible")
