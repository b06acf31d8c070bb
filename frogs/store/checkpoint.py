"""Clean-model files: written by ``frogs pretrain``, reused with ``model.checkpoint=PATH``.

A checkpoint is ``PATH`` (``torch.save`` of ``{"state_dict": ..., "meta": json}``) plus
``PATH.sha256.json`` beside it (the file's SHA-256 and the same metadata). Both are written
atomically; loading refuses a file whose bytes do not match its checksum (or a pinned one), so a
cluster, a test suite or a colleague can share one clean model instead of pretraining again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from frogs.errors import ConfigError
from frogs.store.atomic import atomic_write

SIDECAR_SUFFIX = ".sha256.json"


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the checksum and metadata of checkpoint ``path`` live."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def save_checkpoint(
    path: str | os.PathLike, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]
) -> str:
    """Write the clean model and its metadata atomically; return the file's SHA-256."""
    path = Path(path).expanduser()
    buffer = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in state_dict.items()}
    torch.save({"state_dict": state, "meta": json.dumps(meta, sort_keys=True)}, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    atomic_write(path, payload)
    sidecar = {"sha256": digest, "meta": meta}
    atomic_write(sidecar_path(path), json.dumps(sidecar, indent=1, sort_keys=True))
    return digest


def _recorded_sha256(sidecar: Path, path: Path) -> str:
    """The checksum a sidecar records; an unreadable sidecar is one clear line."""
    try:
        recorded = json.loads(sidecar.read_text())["sha256"]
    except (ValueError, KeyError, TypeError):
        recorded = None
    if not isinstance(recorded, str):
        raise ConfigError(
            f"model.checkpoint={str(path)!r} has an unreadable checksum file {sidecar.name}; "
            "expected the JSON written by `frogs pretrain`"
        )
    return recorded


def load_checkpoint(
    path: str | os.PathLike, expected_sha256: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """The state dict, metadata and SHA-256 of a checkpoint, after verifying its checksum."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.checkpoint={str(path)!r} is not allowed: no such file")
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise ConfigError(
            f"model.checkpoint={str(path)!r} has no checksum file {sidecar.name} beside it; "
            "expected a file written by `frogs pretrain`"
        )
    payload = path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    recorded = _recorded_sha256(sidecar, path)
    for expected, source in (
        (recorded, sidecar.name),
        (expected_sha256, "model.checkpoint_sha256"),
    ):
        if expected is not None and digest != expected:
            raise ConfigError(
                f"model.checkpoint={str(path)!r} has SHA-256 {digest[:16]}..., but {source} "
                f"expects {expected[:16]}...; the file is corrupt or not the one configured"
            )
    content = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    return content["state_dict"], json.loads(content["meta"]), digest
