"""``ratchet record``'s output file without a broker (attack run 9, R9): written beside the
output and renamed over it only on success; a failure names where the events read before it
are, or leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.errors import ConfigError, UnavailableError
from ratchet.cli.record import _failed, _temporary_beside, parse_since


def test_the_temporary_file_is_new_private_and_beside_the_output(tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    out.write_text("earlier\n")
    temp, f = _temporary_beside(str(out))
    with f:
        f.write(b"x\n")
    assert Path(temp).parent == tmp_path and Path(temp).stat().st_mode & 0o777 == 0o600
    assert out.read_text() == "earlier\n"

    err = UnavailableError("reading topic 'ingest' failed (x)")
    _failed(temp, str(out), 1, err)
    assert Path(temp).exists() and f"are in {temp}" in str(err) and "unchanged" in str(err)
    err = UnavailableError("cannot read topic 'ingest'")
    _failed(temp, str(out), 0, err)
    assert not Path(temp).exists() and "nothing written" in str(err)


def test_links_and_non_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("t")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(ConfigError, match="is a symbolic link"):
        _temporary_beside(str(tmp_path / "link"))
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="is a symbolic link"):
        _temporary_beside(str(tmp_path / "dangling"))
    with pytest.raises(ConfigError, match="not a regular file"):
        _temporary_beside(str(tmp_path))
    with pytest.raises(ConfigError, match="cannot create a file"):
        _temporary_beside(str(tmp_path / "no-such-dir" / "rec.jsonl"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "link", "target"]


@pytest.mark.parametrize("raw", ["99999999999d", "9" * 400 + "d", "0001-01-01T00:00:00Z"])
def test_since_before_1970_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="before 1970"):
        parse_since(raw, 1_800_000_000.0)
