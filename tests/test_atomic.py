"""The one atomic writer: whole new file or the old one, the mode open() gives, no leftovers."""

from __future__ import annotations

import os
import stat

import pytest

from frogs.store.atomic import atomic_write


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_bytes_text_and_a_writer_function(tmp_path):
    assert atomic_write(tmp_path / "a" / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write(tmp_path / "t.txt", "β\n").read_text(encoding="utf-8") == "β\n"
    path = atomic_write(tmp_path / "f.bin", lambda handle: handle.write(b"xyz"))
    assert path.read_bytes() == b"xyz"
    with open(tmp_path / "plain", "w"):
        pass
    assert mode(path) == mode(tmp_path / "plain")  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "f.bin", "plain", "t.txt"]


def test_an_error_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = atomic_write(tmp_path / "out.csv", "old\n")

    def half_then_fail(handle):
        handle.write(b"new, but not all of it")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
