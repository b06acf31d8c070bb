"""A shared on-disk cache of tensors (clean models, clean features), safe for many jobs at once.

The first job to need an entry builds it under a file lock; the others wait and reuse it. Entries
are written atomically (``frogs.store.atomic``: a temporary file renamed into place), with a SHA-256
beside them, so a reader never sees a partial file, and a truncated or garbage entry is detected,
logged and rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from filelock import FileLock

from frogs.store.atomic import atomic_write

log = logging.getLogger(__name__)

Tensors = dict[str, torch.Tensor]


def save_tensors(path: Path, tensors: Tensors) -> str:
    """Atomically ``torch.save`` a dict of tensors; return the file's SHA-256."""

    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    payload = buffer.getvalue()
    atomic_write(path, payload)
    return hashlib.sha256(payload).hexdigest()


class ArtifactCache:
    """Tensors keyed by (kind, config hash) under ``root``; built once, verified on every load."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser()

    def paths(self, kind: str, key: str) -> tuple[Path, Path, Path]:
        folder = self.root / kind
        return folder / f"{key}.pt", folder / f"{key}.json", folder / f"{key}.lock"

    def _load_verified(self, kind: str, key: str, *, locked: bool = False) -> Tensors | None:
        data_path, meta_path, _ = self.paths(kind, key)
        if not meta_path.exists():
            # Data without its checksum is a build in progress (the checksum is renamed into place
            # last) or, seen under the lock, one cut short by a kill: never use it.
            if locked and data_path.exists():
                log.warning("cache entry %s/%s has no checksum file; rebuilding it", kind, key)
            return None
        try:
            expected = json.loads(meta_path.read_text())["sha256"]
            payload = data_path.read_bytes()
            if hashlib.sha256(payload).hexdigest() != expected:
                raise ValueError("checksum mismatch")

            return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, garbage, missing half: never use it
            # Outside the lock this may be another job's rebuild in flight: report it once, locked.
            report = log.warning if locked else log.debug
            report("cache entry %s/%s is unusable (%s); rebuilding it", kind, key, exc)
            return None

    def get_or_build(
        self, kind: str, key: str, build: Callable[[], Tensors], meta: dict | None = None
    ) -> Tensors:
        """The cached tensors for (kind, key), building and storing them if absent or corrupt."""
        found = self._load_verified(kind, key)
        if found is not None:
            log.info("cache hit %s/%s", kind, key)
            return found
        data_path, meta_path, lock_path = self.paths(kind, key)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock_path)):
            found = self._load_verified(kind, key, locked=True)
            if found is not None:
                log.info("cache hit %s/%s (built by another job)", kind, key)
                return found
            log.info("cache miss %s/%s: building", kind, key)
            tensors = build()
            digest = save_tensors(data_path, tensors)
            record = {"sha256": digest, "kind": kind, "key": key, **(meta or {})}
            atomic_write(meta_path, json.dumps(record, indent=1))
            return tensors
