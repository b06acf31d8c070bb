"""``frogs sweep-status DIR``: how far each job of a sweep has got, read from its files only.

A job folder is any folder under DIR holding ``.hydra/config.yaml`` (Hydra writes one per job;
override values with a ``/`` nest job folders, so the search is recursive). A job expects the
trials ``trial_offset .. trial_offset + trials - 1`` of its config; its ``results.jsonl`` says
which of them finished ``ok`` or ``failed``; the rest have not started (or are in flight).
Nothing here imports Hydra or torch, so it answers in a fraction of a second on a login node.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

# frogs.store.records imports no torch: status stays instant on a login node
from frogs.store.records import RESULTS_FILE, read_records

CONFIG_FILE = Path(".hydra") / "config.yaml"


@dataclass(frozen=True)
class JobStatus:
    """Trial counts of one job folder."""

    job: str
    expected: int
    ok: int
    failed: int
    not_started: int
    duplicates: int = 0
    malformed: int = 0
    error: str | None = None


def find_jobs(root: Path) -> Iterator[Path]:
    """Job folders under ``root`` (``root`` itself included), in sorted order."""
    for config in sorted(root.rglob(str(CONFIG_FILE))):
        yield config.parent.parent


def _expected_indices(job_dir: Path) -> range:
    with open(job_dir / CONFIG_FILE, encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}
    trials, offset = config.get("trials", 0), config.get("trial_offset", 0)
    if not isinstance(trials, int) or not isinstance(offset, int):
        raise ValueError(f"trials={trials!r}, trial_offset={offset!r} are not plain integers")
    return range(offset, offset + trials)


def job_status(job_dir: Path, root: Path) -> JobStatus:
    """Count the expected trials of one job that finished ok, failed, or have not started."""
    name = str(job_dir.relative_to(root)) if job_dir != root else "."
    try:
        expected = _expected_indices(job_dir)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        return JobStatus(name, 0, 0, 0, 0, error=f"unreadable {CONFIG_FILE}: {exc}")
    read = read_records(job_dir / RESULTS_FILE)  # a truncated or garbage line: counted, not fatal
    status_by_index: dict[int, str] = {}
    seen: set[str] = set()
    duplicates = 0
    for record in read.records:
        if record["trial_id"] in seen:
            duplicates += 1
            continue
        seen.add(record["trial_id"])
        index = record.get("trial_index")
        if isinstance(index, int) and index in expected:
            status_by_index.setdefault(index, str(record.get("status")))
    ok = sum(status == "ok" for status in status_by_index.values())
    failed = len(status_by_index) - ok
    not_started = len(expected) - len(status_by_index)
    return JobStatus(name, len(expected), ok, failed, not_started, duplicates, len(read.malformed))


def sweep_status(root: Path) -> list[JobStatus]:
    """One ``JobStatus`` per job folder under ``root``."""
    return [job_status(job_dir, root) for job_dir in find_jobs(root)]


def totals(rows: Sequence[JobStatus]) -> JobStatus:
    """The sum over jobs, as a row named ``total``."""
    fields = ("expected", "ok", "failed", "not_started", "duplicates", "malformed")
    return JobStatus("total", **{f: sum(getattr(row, f) for row in rows) for f in fields})


def format_table(rows: Sequence[JobStatus]) -> str:
    """A fixed-width table: one row per job, then the totals."""
    header = ("job", "trials", "ok", "failed", "not_started")
    lines = [(r.job, r.expected, r.ok, r.failed, r.not_started) for r in rows]
    total = totals(rows)
    body = [*lines, ("total", total.expected, total.ok, total.failed, total.not_started)]
    width = max(len(str(line[0])) for line in [header, *body])
    out = [f"{header[0]:<{width}}  {header[1]:>6}  {header[2]:>6}  {header[3]:>6}  {header[4]:>11}"]
    for i, (job, *counts) in enumerate(body):
        if i == len(lines):
            out.append("-" * len(out[0]))
        out.append(
            f"{job:<{width}}  {counts[0]:>6}  {counts[1]:>6}  {counts[2]:>6}  {counts[3]:>11}"
        )
    notes = [f"{r.job}: {r.error}" for r in rows if r.error]
    notes += [f"{r.job}: {r.duplicates} duplicated trial record(s)" for r in rows if r.duplicates]
    notes += [f"{r.job}: {r.malformed} unreadable line(s)" for r in rows if r.malformed]
    return "\n".join(out + notes)


def main(argv: Sequence[str] | None = None) -> int:
    """``frogs sweep-status DIR [DIR ...] [--json]``; exit 0, or 2 when a DIR has no jobs."""
    parser = argparse.ArgumentParser(
        prog="frogs sweep-status",
        description="Trials finished (ok), failed and not started, per job of a sweep.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="a sweep folder (hydra.sweep.dir)")
    parser.add_argument("--json", action="store_true", help="one JSON object per job, then total")
    args = parser.parse_args(argv)
    for root in args.dirs:
        rows = sweep_status(root) if root.is_dir() else []
        if not rows:
            print(
                f"frogs: error: no job folders (with {CONFIG_FILE}) under {root}", file=sys.stderr
            )
            return 2
        if args.json:
            for row in [*rows, totals(rows)]:
                print(json.dumps({"sweep": str(root), **asdict(row)}))
        else:
            if len(args.dirs) > 1:
                print(f"== {root}")
            print(format_table(rows))
    return 0
