"""The trial record: identity hashes, provenance, and the append-only ``results.jsonl``.

A record is appended (one ``write`` of one line, then fsync) only when its trial is complete, so a
job killed at any moment loses at most the trial in flight; a relaunch reads the ids already
written and skips them. ``read_records`` is the one reader of the file (resume, sweep status,
analysis, tests). See docs/records.md for every field.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from frogs.errors import OutputError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
RESULTS_FILE = "results.jsonl"
#: The top-level columns of a record (schema 3) that say what its trial was asked to do, besides
#: the ``attack.*``, ``victim.*`` and ``defense.*`` settings columns: what analysis groups success
#: rates by, in this order. The budget radius is grouped by ``eps_255`` (the same radius as ``eps``,
#: in /255 units); ``stop_distance`` is the job's resolved threshold, not a setting, ``victim``
#: repeats ``scenario`` and ``seed`` tells replicates apart, so they are not parameters.
PARAMETER_COLUMNS = (
    "scenario",
    "dataset",
    "model",
    "attack",
    "defense",
    "target_class",
    "base_class",
    "target_selection",
    "constraint",
    "eps_255",
    "pretrain_epochs",
    "pretrain_schedule",
    "pretrain_classes",
)


@functools.cache
def git_sha() -> str:
    """The commit frogs runs from (``$FROGS_GIT_SHA`` wins), or ``unknown``."""
    if os.environ.get("FROGS_GIT_SHA"):
        return os.environ["FROGS_GIT_SHA"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(device: str) -> dict[str, Any]:
    import torch

    from frogs import __version__

    return {
        "frogs_version": __version__,
        "git_sha": git_sha(),
        "torch_version": torch.__version__,
        "device": device,
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RecordLines:
    """The lines of one ``results.jsonl`` that may hold a record, split without parsing JSON.

    A record line is one JSON object, so a non-blank line that does not start with ``{`` and end
    with ``}`` (a write cut short, garbage) is malformed; this cheap check keeps the common damage
    away from a bulk JSON parser (analysis' pyarrow path). Blank lines are ignored.
    """

    path: Path
    lines: tuple[bytes, ...] = ()  # stripped, each ``{...}``
    linenos: tuple[int, ...] = ()  # the 1-based line number of each
    malformed: tuple[int, ...] = ()  # the line numbers of the other non-blank lines
    truncated: bool = False  # the file does not end with a newline: its last write was cut short


@dataclass(frozen=True)
class RecordsRead:
    """The well-formed records of one ``results.jsonl``, in file order, and what was skipped.

    A well-formed record is a JSON object with a ``trial_id``; ``malformed`` lists the line numbers
    of every other non-blank line. ``truncated``: the last line lacks its newline, a write cut
    short (``RecordWriter`` drops such a line before appending); it is read as a record only if
    it is one whole JSON object.
    """

    path: Path
    records: tuple[dict[str, Any], ...] = ()
    malformed: tuple[int, ...] = ()
    truncated: bool = False


def split_record_lines(path: str | os.PathLike) -> RecordLines:
    """The candidate record lines of ``path`` (none when it does not exist)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return RecordLines(path)
    lines, linenos, malformed = [], [], []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if line[:1] == b"{" and line[-1:] == b"}":
            lines.append(line)
            linenos.append(lineno)
        else:
            malformed.append(lineno)
    truncated = bool(data) and not data.endswith(b"\n")
    return RecordLines(path, tuple(lines), tuple(linenos), tuple(malformed), truncated)


def parse_record_lines(split: RecordLines) -> RecordsRead:
    """Parse the lines ``split_record_lines`` kept; a line that is no JSON object with a
    ``trial_id`` joins the malformed ones. Logs nothing (``read_records`` does)."""
    records, malformed = [], list(split.malformed)
    for line, lineno in zip(split.lines, split.linenos, strict=True):
        try:
            record = json.loads(line)
        except ValueError:  # invalid JSON or UTF-8
            record = None
        if isinstance(record, dict) and record.get("trial_id") is not None:
            records.append(record)
        else:
            malformed.append(lineno)
    return RecordsRead(split.path, tuple(records), tuple(sorted(malformed)), split.truncated)


def warn_malformed(path: str | os.PathLike, linenos: Sequence[int]) -> None:
    """Log, once per file, which lines of ``path`` were skipped."""
    if not linenos:
        return
    more = ", ..." if len(linenos) > 5 else ""
    shown = ", ".join(map(str, linenos[:5]))
    log.warning("%s: skipped %d malformed line(s) (line %s%s)", path, len(linenos), shown, more)


def read_records(path: str | os.PathLike) -> RecordsRead:
    """The one reader of ``results.jsonl`` (resume, ``frogs sweep-status``, analysis, tests).

    Tolerant: a truncated last line, garbage and lines that are no record are skipped and counted,
    with one warning per file; a missing file reads as empty.
    """
    read = parse_record_lines(split_record_lines(path))
    warn_malformed(read.path, read.malformed)
    return read


class RecordWriter:
    """Appends complete records to one ``results.jsonl`` and knows which trials are done."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._drop_partial_last_line()
        except OSError as exc:
            raise OutputError(f"cannot write records to {self.path}: {_reason(exc)}") from exc

    def _drop_partial_last_line(self) -> None:
        """A line without its newline is a write cut short by a kill: remove it, keep the rest."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return
            handle.seek(0)
            content = handle.read()
            keep = content.rfind(b"\n") + 1
            handle.truncate(keep)
            log.warning(
                "removed a partial last line (%d bytes) from %s", len(content) - keep, self.path
            )

    def finished_ids(self) -> set[str]:
        """Ids of trials already recorded here (ok or failed)."""
        return {record["trial_id"] for record in read_records(self.path).records}

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line (one system call unless the disk fills), then fsync it.

        On any error the file is cut back to where it was, so it only ever holds whole records.
        """
        line = (json.dumps(record, default=_jsonable, allow_nan=False) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write records to {self.path}: {_reason(exc)}") from exc
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                rest = memoryview(line)
                while rest:  # one call unless the disk fills: the next call then says why
                    written = os.write(fd, rest)
                    if written == 0:
                        raise OSError(f"short write: {len(line) - len(rest)} of {len(line)} bytes")
                    rest = rest[written:]
                os.fsync(fd)
            except OSError as exc:
                os.ftruncate(fd, start)  # never leave half a record behind (e.g. disk full)
                raise OutputError(
                    f"cannot append a record to {self.path}: {_reason(exc)}; "
                    "the file keeps only whole records"
                ) from exc
        finally:
            os.close(fd)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
