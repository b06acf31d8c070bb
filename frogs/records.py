"""The trial record: identity hashes, provenance, and the append-only ``results.jsonl``.

A record is appended (one ``write`` of one line, then fsync) only when its trial is complete, so a
job killed at any moment loses at most the trial in flight; a relaunch reads the ids already
written and skips them. See docs/records.md for every field.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import socket
import subprocess
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from frogs.errors import OutputError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
RESULTS_FILE = "results.jsonl"
# Where and how a job runs, and which optional artefacts it saves: none changes a trial's outcome.
_RUN_ENVIRONMENT_KEYS = (
    "progress",
    "threads",
    "device",
    "amp",
    "cache_dir",
    "save_poisons",
    "save_features",
    "feature_sample",
)
_DATA_LOCATION_KEYS = ("root", "download")


def stable_hash(payload: Any, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable payload that does not depend on key order."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def experiment_identity(settings: Any) -> dict[str, Any]:
    """The settings minus where-and-how-it-runs fields: what a job's trials *are*."""
    plain = asdict(settings)
    for key in _RUN_ENVIRONMENT_KEYS:
        plain.pop(key, None)
    for key in _DATA_LOCATION_KEYS:
        plain["dataset"].pop(key, None)
    plain.pop("trials", None)
    plain.pop("trial_offset", None)
    # Settings added later at a value that reproduces the earlier behaviour leave ids unchanged,
    # so a relaunch still finds the records written before them.
    pretrain = plain.get("model", {}).get("pretrain", {})
    if pretrain.get("classes") == "all":
        pretrain.pop("classes")
    return plain


def trial_id(identity: dict[str, Any], trial_index: int) -> str:
    """Stable id of one trial: its configuration's identity plus its index."""
    return stable_hash({"config": identity, "trial_index": trial_index})


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
        done: set[str] = set()
        if not self.path.exists():
            return done
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    done.add(json.loads(line)["trial_id"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning("skipping a malformed line in %s", self.path)
        return done

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
