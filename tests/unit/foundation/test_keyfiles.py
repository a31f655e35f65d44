"""Key files: the first writer wins and nobody sees half a file."""

from __future__ import annotations

import stat
from pathlib import Path

from immunreg.keyfiles import replace_file, write_once


def test_the_first_key_written_stays(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "data.key"
    write_once(path, b"first")
    write_once(path, b"second")
    assert path.read_bytes() == b"first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["data.key"]


def test_a_public_key_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "public.pem"
    replace_file(path, b"old")
    replace_file(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["public.pem"]
