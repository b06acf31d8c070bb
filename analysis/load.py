"""Find every ``results.jsonl`` under some directories and load the trial records.

The records (docs/records.md) are the whole contract between frogs and analysis: one JSON
object per line, appended when a trial ends. A job killed mid-write may leave a truncated
last line, and a trial may be recorded twice (a relaunch after a failure), so loading
skips and counts malformed lines and keeps one record per ``trial_id``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"
REQUIRED_FIELDS = ("trial_id", "status")
BOOLEAN_COLUMNS = ("success", "control_success")


class NoRecordsError(Exception):
    """No readable trial record under the given paths (the message is one line)."""


@dataclass(frozen=True, eq=False)
class LoadResult:
    """The loaded records and how many lines were read, failed or skipped.

    ``frame`` holds one row per trial (deduplicated by ``trial_id``) plus ``job_dir``;
    ``n_read`` counts the well-formed records read (before deduplication),
    ``n_duplicates`` the records dropped as duplicates, ``n_failed`` the trials whose
    kept record has ``status == "failed"`` and ``n_malformed`` the lines skipped.
    """

    frame: pd.DataFrame
    files: tuple[Path, ...]
    n_read: int
    n_failed: int
    n_malformed: int
    n_duplicates: int = 0

    @property
    def n_trials(self) -> int:
        """Distinct trials loaded."""
        return len(self.frame)

    @property
    def n_ok(self) -> int:
        """Trials whose kept record is ``ok``."""
        return int((self.frame["status"] == "ok").sum())

    def summary(self) -> str:
        """One line saying what was read, failed and skipped."""
        return (
            f"read {self.n_read} records from {len(self.files)} file(s): "
            f"{self.n_trials} trials ({self.n_ok} ok, {self.n_failed} failed), "
            f"{self.n_duplicates} duplicate(s) dropped, "
            f"{self.n_malformed} malformed line(s) skipped"
        )


def find_results(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every ``results.jsonl`` below ``paths`` (a path may also name such a file).

    Hidden directories (``.hydra``, ``.git``, ...) are not searched. Raises
    ``NoRecordsError`` naming a path that does not exist.
    """
    found: dict[Path, None] = {}
    for raw in paths:
        root = Path(raw)
        if root.is_file():
            found[root.resolve()] = None
            continue
        if not root.is_dir():
            raise NoRecordsError(f"no such file or directory: {root}")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if RESULTS_NAME in filenames:
                found[Path(dirpath, RESULTS_NAME).resolve()] = None
    return list(found)


def _split_lines(path: Path) -> tuple[list[bytes], int]:
    """The candidate record lines of one file and the number of malformed ones.

    A record line is one JSON object, so a line that does not start with ``{`` and end
    with ``}`` (a truncated last line, garbage) is malformed; this cheap check keeps the
    common damage out of the fast bulk parser. Blank lines are ignored.
    """
    lines: list[bytes] = []
    malformed: list[int] = []
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if line[:1] == b"{" and line[-1:] == b"}":
            lines.append(line)
        else:
            malformed.append(lineno)
    if malformed:
        _warn_malformed(path, malformed)
    return lines, len(malformed)


def _warn_malformed(path: Path | str, linenos: list[int]) -> None:
    """Log which lines of ``path`` were skipped."""
    more = ", ..." if len(linenos) > 5 else ""
    shown = ", ".join(map(str, linenos[:5]))
    logger.warning("%s: skipped %d malformed line(s) (line %s%s)", path, len(linenos), shown, more)


def _parse_arrow(lines: list[bytes]) -> pd.DataFrame | None:
    """Parse all record lines at once with pyarrow's multithreaded JSON reader.

    Returns None when pyarrow is missing or refuses the input (a line that is not valid
    JSON, a field whose type changes between records); the caller then parses in Python.
    """
    try:
        import pyarrow as pa
        import pyarrow.json as pa_json
    except ImportError:
        return None
    try:
        table = pa_json.read_json(pa.BufferReader(b"\n".join(lines) + b"\n"))
    except (pa.ArrowException, ValueError) as exc:
        logger.debug("pyarrow could not parse the records (%s); parsing line by line", exc)
        return None
    if table.num_rows != len(lines):
        return None
    frame = table.to_pandas()
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            frame[name] = [None if v is None else v.tolist() for v in frame[name].to_numpy()]
    return frame


def _parse_python(lines: list[bytes], origins: list[Path]) -> pd.DataFrame:
    """Parse the record lines one by one; lines that are not JSON objects get ``_bad``."""
    loads = json.loads
    records: list[dict] = []
    bad: dict[Path, int] = {}
    for line, path in zip(lines, origins, strict=True):
        try:
            record = loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            bad[path] = bad.get(path, 0) + 1
            record = {"_bad": True}
        records.append(record)
    for path, count in bad.items():
        logger.warning("%s: skipped %d line(s) that are not valid JSON objects", path, count)
    return pd.DataFrame.from_records(records)


def _parse_files(files: list[Path]) -> tuple[pd.DataFrame, int]:
    """One frame of every record in ``files`` (with ``job_dir``) and the malformed count."""
    lines: list[bytes] = []
    job_dirs: list[str] = []
    counts: list[int] = []
    n_malformed = 0
    for path in files:
        file_lines, bad = _split_lines(path)
        lines.extend(file_lines)
        job_dirs.append(str(path.parent))
        counts.append(len(file_lines))
        n_malformed += bad
    frame = _parse_arrow(lines) if lines else None
    if frame is None:
        origins = [path for path, count in zip(files, counts, strict=True) for _ in range(count)]
        frame = _parse_python(lines, origins)
    frame["job_dir"] = np.repeat(np.array(job_dirs, dtype=object), counts)
    usable = np.ones(len(frame), dtype=bool)
    if "_bad" in frame:
        usable &= frame.pop("_bad").isna().to_numpy()
    for field in REQUIRED_FIELDS:
        present = frame[field].notna().to_numpy() if field in frame else np.zeros_like(usable)
        if not present[usable].all():
            logger.warning("skipped %d record(s) without %r", (~present & usable).sum(), field)
        usable &= present
    if not usable.all():
        n_malformed += int((~usable).sum())
        frame = frame[usable]
    return frame, n_malformed


def _deduplicate(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep one row per ``trial_id``: an ``ok`` one over a ``failed`` one, else the latest.

    "Latest" is the largest ``finished_at``, ties (or no timestamps) broken by read order.
    """
    dup = frame["trial_id"].duplicated(keep=False).to_numpy()
    if not dup.any():
        return frame
    group = frame.loc[dup]
    ok = (group["status"] == "ok").to_numpy()
    if "finished_at" in group:
        when = group["finished_at"]
        stamp = when.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        stamp = np.where(when.isna().to_numpy(), np.iinfo(np.int64).min, stamp)
    else:
        stamp = np.zeros(len(group), dtype=np.int64)
    order = np.arange(len(group))
    ranked = group.iloc[np.lexsort((order, stamp, ok))]
    keep = ranked.drop_duplicates("trial_id", keep="last").index
    kept = np.sort(np.concatenate([frame.index[~dup].to_numpy(), keep.to_numpy()]))
    return frame.loc[kept]


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Give the same dtypes whichever parser ran: nullable booleans, UTC ``finished_at``;
    and ``eps_255`` (= 255 ``eps``) to older records that only have ``eps``."""
    if "finished_at" in frame:
        frame["finished_at"] = pd.to_datetime(
            frame["finished_at"], utc=True, errors="coerce", format="ISO8601"
        )
    if "eps" in frame:  # schema 1 has the radius only in [0, 1] units: give it eps_255 too
        derived = (pd.to_numeric(frame["eps"], errors="coerce") * 255.0).round(9)
        if "eps_255" in frame:
            derived = pd.to_numeric(frame["eps_255"], errors="coerce").fillna(derived)
        frame["eps_255"] = derived
    for column in BOOLEAN_COLUMNS:
        if column in frame and frame[column].dtype != "boolean":
            values = frame[column]
            frame[column] = values.where(values.isin([True, False]), None).astype("boolean")
    return frame


def load_records(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> LoadResult:
    """Load every ``results.jsonl`` below ``paths`` into one tidy frame, one row per trial.

    Adds ``job_dir`` (the directory holding the file). Raises ``NoRecordsError`` when no
    file or no well-formed record is found.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    where = ", ".join(str(p) for p in paths)
    files = find_results(paths)
    if not files:
        raise NoRecordsError(f"no {RESULTS_NAME} found under {where}")
    frame, n_malformed = _parse_files(files)
    if frame.empty:
        raise NoRecordsError(
            f"no well-formed trial record in {len(files)} {RESULTS_NAME} file(s) under {where} "
            f"({n_malformed} malformed line(s))"
        )
    n_read = len(frame)
    frame = frame.reset_index(drop=True)
    frame["trial_id"] = frame["trial_id"].astype(str)
    frame = _normalise(frame)
    frame = _deduplicate(frame).reset_index(drop=True)
    result = LoadResult(
        frame=frame,
        files=tuple(files),
        n_read=n_read,
        n_failed=int((frame["status"] == "failed").sum()),
        n_malformed=n_malformed,
        n_duplicates=n_read - len(frame),
    )
    logger.debug(result.summary())
    return result
