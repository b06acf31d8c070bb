"""Find every ``results.jsonl`` under some directories and load the trial records.

The records (docs/records.md) are the whole contract between frogs and analysis: one JSON
object per line, appended when a trial ends. A job killed mid-write may leave a truncated
last line, and a trial may be recorded twice (a relaunch after a failure), so loading
skips and counts malformed lines and keeps one record per ``trial_id``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from frogs.store.records import RESULTS_FILE, parse_record_lines, split_record_lines, warn_malformed

logger = logging.getLogger(__name__)

RESULTS_NAME = RESULTS_FILE
REQUIRED_FIELDS = ("trial_id", "status")
BOOLEAN_COLUMNS = ("success", "control_success")
#: Last record schema with hand-named setting columns; loading upgrades such records.
LEGACY_SCHEMA = 2
#: History, frozen: each setting column of a schema <= 2 record and its schema-3 name. Schema 3
#: derives its setting columns from frogs' settings dataclasses (``attack.<field>``,
#: ``victim.<field>``, ``defense.<field>``; docs/records.md), so this map only upgrades the
#: records written before it and never grows. Sources in ``LEGACY_KEPT`` are schema-3 columns
#: too (the resolved budget stays top-level) and are copied, the others moved.
LEGACY_COLUMNS: Mapping[str, str] = MappingProxyType(
    {
        "recipe": "attack.recipe",
        "num_poisons": "attack.num_poisons",
        "opacity": "attack.opacity",
        "beta0": "attack.beta0",
        "iters": "attack.iters",
        "step": "attack.step",
        "lr": "attack.lr",
        "stop_distance_setting": "attack.stop_distance",
        "constraint": "attack.constraint",
        "eps": "attack.eps",
        "quantize": "attack.quantize",
        "multi_base": "attack.multi_base",
        "optimize": "attack.optimize",
        "lr_decay": "attack.lr_decay",
        "retrain_epochs": "victim.epochs",
        "retrain_lr": "victim.lr",
    }
)
LEGACY_KEPT = ("constraint", "eps")
#: The defense of a record that names none (every schema <= 2 record): nothing was filtered.
NO_DEFENSE = "none"
#: Defense outcomes an ok trial without a defense gets where its record lacks them.
UNDEFENDED_OUTCOMES = (("poisons_removed", 0), ("clean_removed", 0), ("poison_recall", 0.0))


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


def _parse_files(files: list[Path]) -> tuple[pd.DataFrame, int]:
    """One frame of every record in ``files`` (with ``job_dir``) and the malformed count.

    The lines come from frogs' one reader of ``results.jsonl`` (``frogs.store.records``): its cheap
    split first, for pyarrow's bulk parser; where pyarrow refuses them, its line-by-line parse.
    """
    splits = [split_record_lines(path) for path in files]
    lines = [line for split in splits for line in split.lines]
    frame = _parse_arrow(lines) if lines else None
    if frame is None:
        reads = [parse_record_lines(split) for split in splits]
        frame = pd.DataFrame.from_records([record for read in reads for record in read.records])
        counts = [len(read.records) for read in reads]
        skipped = [read.malformed for read in reads]
    else:
        counts = [len(split.lines) for split in splits]
        skipped = [split.malformed for split in splits]
    for path, linenos in zip(files, skipped, strict=True):
        warn_malformed(path, linenos)
    n_malformed = sum(len(linenos) for linenos in skipped)
    job_dirs = np.array([str(path.parent) for path in files], dtype=object)
    frame["job_dir"] = np.repeat(job_dirs, counts)
    usable = np.ones(len(frame), dtype=bool)
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


def _upgrade_legacy(frame: pd.DataFrame) -> pd.DataFrame:
    """Give schema <= 2 rows the schema-3 column names (``LEGACY_COLUMNS``), and every row a
    ``defense`` (``none`` where missing) with ``UNDEFENDED_OUTCOMES`` on its ok undefended
    trials, so that old and new records load into one frame with one set of columns."""
    if "schema" in frame:
        schema = pd.to_numeric(frame["schema"], errors="coerce")
        legacy = (schema.isna() | (schema <= LEGACY_SCHEMA)).to_numpy()
    else:
        legacy = np.ones(len(frame), dtype=bool)
    for old, new in LEGACY_COLUMNS.items():
        if old not in frame:
            continue
        values = frame[old] if old in LEGACY_KEPT else frame.pop(old)
        if new in frame:
            frame[new] = frame[new].mask(legacy & frame[new].isna().to_numpy(), values)
        else:
            frame[new] = values if legacy.all() else values.where(legacy)
        if old not in LEGACY_KEPT and not legacy.all() and values[~legacy].notna().any():
            frame[old] = values  # a newer record has a column of that name: keep it
    defense = frame["defense"] if "defense" in frame else pd.Series(None, index=frame.index)
    frame["defense"] = defense.astype(object).where(defense.notna(), NO_DEFENSE)
    undefended = (frame["defense"] == NO_DEFENSE).to_numpy() & (frame["status"] == "ok").to_numpy()
    for name, value in UNDEFENDED_OUTCOMES:
        if name in frame:
            known = pd.to_numeric(frame[name], errors="coerce")
        else:
            known = pd.Series(np.nan, index=frame.index)
        frame[name] = known.mask(undefended & known.isna().to_numpy(), value)
    return frame


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Give the same dtypes whichever parser ran: nullable booleans, UTC ``finished_at``;
    ``eps_255`` (= 255 ``eps``) to older records that only have ``eps``; and schema <= 2
    records the schema-3 columns (``_upgrade_legacy``)."""
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
    return _upgrade_legacy(frame)


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
