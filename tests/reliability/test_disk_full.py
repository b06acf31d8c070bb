"""Disk full or unwritable output: one clear error line, and ``results.jsonl`` keeps whole records.

Root ignores ``chmod``, so faults are real mounts where this machine allows them (a tiny tmpfs,
a read-only tmpfs), a file or directory where the output should be, and an injected ``os.write``
that stops part-way (what the kernel does on a full disk).
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from frogs.errors import OutputError
from frogs.experiment.run import run
from frogs.store import records as records_module
from frogs.store.records import RecordWriter
from tests.reliability.conftest import (
    TINY,
    assert_one_clear_error,
    read_records,
    run_frogs,
    tiny_settings,
)


class FullDisk:
    """``os`` for frogs.store.records, with ``free`` bytes left: a write past them stops
    part-way."""

    def __init__(self, free: int, *, raise_error: bool) -> None:
        self.free, self.raise_error = free, raise_error

    def __getattr__(self, name: str):
        return getattr(os, name)

    def write(self, fd: int, data: bytes) -> int:
        written = os.write(fd, data[: self.free]) if self.free else 0
        self.free -= written
        if written < len(data) and self.raise_error:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return written


RECORD = {"trial_id": "t", "status": "ok", "note": "x" * 200}


@pytest.mark.parametrize("raise_error", [False, True], ids=["short-write", "enospc"])
def test_full_disk_leaves_only_whole_records(tmp_path, monkeypatch, raise_error):
    writer = RecordWriter(tmp_path / "results.jsonl")
    writer.append({**RECORD, "trial_id": "a"})
    size = writer.path.stat().st_size
    monkeypatch.setattr(records_module, "os", FullDisk(size // 2, raise_error=raise_error))
    with pytest.raises(OutputError, match=r"No space left on device|short write") as caught:
        writer.append({**RECORD, "trial_id": "b"})
    assert str(writer.path) in str(caught.value)
    assert [r["trial_id"] for r in read_records(writer.path)] == ["a"]
    assert writer.finished_ids() == {"a"}


def test_job_stopped_by_a_full_disk_resumes_when_space_returns(tmp_path, cache, monkeypatch):
    settings = tiny_settings("trials=3", f"cache_dir={cache}")
    results = tmp_path / "run" / "results.jsonl"
    disk = FullDisk(5500, raise_error=True)  # one record (~3.6 kB) fits, the second does not
    monkeypatch.setattr(records_module, "os", disk)
    with pytest.raises(OutputError, match="No space left on device"):
        run(settings, tmp_path / "run")
    assert len(read_records(results)) == 1
    monkeypatch.setattr(records_module, "os", os)
    run(settings, tmp_path / "run")
    assert [r["trial_index"] for r in read_records(results)] == [0, 1, 2]


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a 16 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount_point)]
    if os.geteuid() != 0 or subprocess.run(command, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill_leaving_pages(mount_point: Path, pages: int) -> None:
    """Fill the file system but ``pages`` pages of 4 KiB."""
    filler = mount_point / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096) == 4096:
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(filler, max(0, (filler.stat().st_size // 4096 - pages) * 4096))


@pytest.mark.slow
def test_cli_on_a_really_full_disk_prints_one_line(tmp_path, cache, tmpfs):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (tmpfs / "results.jsonl").touch()
    (run_dir / "results.jsonl").symlink_to(tmpfs / "results.jsonl")  # only the records are full
    # two pages: room for one whole record (about 4.4 KB) and not for three
    fill_leaving_pages(tmpfs, 2)
    result = run_frogs(*TINY, "trials=3", f"cache_dir={cache}", f"hydra.run.dir={run_dir}")
    assert_one_clear_error(result, "No space left on device", "results.jsonl")
    assert 1 <= len(read_records(tmpfs / "results.jsonl")) < 3  # whole records only


@pytest.mark.slow
def test_cli_on_a_read_only_file_system_prints_one_line(tmp_path, cache, tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    result = run_frogs(*TINY, f"cache_dir={cache}", f"hydra.run.dir={tmpfs / 'run'}")
    assert_one_clear_error(result, "Read-only file system", str(tmpfs / "run"))


@pytest.mark.slow
@pytest.mark.parametrize("where", ["run-dir", "results.jsonl"])
def test_cli_when_the_output_path_is_taken_prints_one_line(tmp_path, cache, where):
    run_dir = tmp_path / "run"
    if where == "run-dir":
        run_dir.write_text("a file where the output directory should be\n")
    else:
        (run_dir / "results.jsonl").mkdir(parents=True)
    result = run_frogs(*TINY, f"cache_dir={cache}", f"hydra.run.dir={run_dir}")
    blocked = run_dir if where == "run-dir" else run_dir / "results.jsonl"
    assert_one_clear_error(result, str(blocked))
