"""What names a trial, a job and a cache entry: a hash of the settings that differ from defaults.

Dora's rule (facebookresearch/dora): a run is identified by how its settings differ from the
defaults, not by all of them, so a knob added later at a default that keeps the earlier behaviour
changes no trial id and no cache key, with no line of code per knob. Each settings node is
compared with the defaults of its own dataclass (an ``attack=`` option with its option's
defaults); a node's ``name`` is always kept, since two options at their defaults must differ.
Files named by a path are identified by their content: a checkpoint by its SHA-256 (pinned or
read), a setups file by its bytes' SHA-256, so the same file reached by another path keeps its ids.

The other side of the rule: changing a default's *value* changes what every run that relied on
it computes without changing its id. ``tests/test_identity.py`` keeps a snapshot of every default
and fails when one moves; such a change ships a migration of the records
(``frogs.store.migrate``).

Nothing here imports torch at module level: ``frogs sweep-status`` stays instant.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

#: The settings that do not identify a trial (dotted keys): where and how a job runs, and which
#: optional artefacts it saves; none changes a trial's outcome. The one list of them: trial ids
#: leave them out (``experiment_identity``), and so do a sweep's job folder names
#: (``job_folder_excluded_keys``, which conf/config.yaml reads as ``${frogs_excluded_keys:}``).
NOT_IDENTITY_KEYS = (
    "device",
    "amp",
    "threads",
    "progress",
    "cache_dir",
    "save_poisons",
    "poison_format",
    "save_features",
    "feature_sample",
    "dataset.root",
    "dataset.download",
)
#: Job knobs a trial id leaves out although they are not in ``NOT_IDENTITY_KEYS``: ``trials``
#: only extends a job, and a trial id hashes its own index instead of ``trial_offset``.
_PER_TRIAL_KEYS = ("trials", "trial_offset")


def job_folder_excluded_keys() -> list[str]:
    """The keys Hydra leaves out of a job folder's name (``override_dirname.exclude_keys``).

    ``NOT_IDENTITY_KEYS`` plus ``trials``: raising ``trials`` extends a job, so a relaunch with
    more finds its folder and records. ``trial_offset`` is not among them: jobs at different offsets
    attack different targets and need different folders (it is out of the identity only because
    a trial id hashes the trial index itself).
    """
    return [*NOT_IDENTITY_KEYS, "trials"]


def _jsonable(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else str(value)


def stable_hash(payload: Any, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable payload that does not depend on key order."""
    text = json.dumps(payload, sort_keys=True, default=_jsonable, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()


def tensor_fingerprint(tensor: Any) -> str:
    """Hex SHA-256 of a tensor's shape, dtype and bytes (a float sum would miss a permutation)."""
    import torch

    flat = tensor.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.sha256(f"{tuple(tensor.shape)}:{tensor.dtype}".encode())
    digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def settings_difference(settings: Any) -> dict[str, Any]:
    """A settings dataclass as what differs from its own class's defaults: a nested dataclass
    of its default's type as its own difference (absent when nothing differs), of another type
    (another option) whole as its difference from its own defaults. A node's ``name``, where it
    has one, is always kept: two options at their defaults must not look alike."""
    reference = type(settings)()
    differs: dict[str, Any] = {}
    for knob in fields(settings):
        value, default = getattr(settings, knob.name), getattr(reference, knob.name)
        if is_dataclass(value):
            node = settings_difference(value)
            if type(value) is not type(default) or node != settings_difference(default):
                differs[knob.name] = node
        elif value != default:
            differs[knob.name] = value
    if any(knob.name == "name" for knob in fields(settings)):
        differs["name"] = settings.name
    return differs


def drop_key(plain: dict[str, Any], dotted: str) -> None:
    """Remove the dotted key ``dotted`` from a nested dict, if it is there."""
    *parents, name = dotted.split(".")
    node = plain
    for parent in parents:
        node = node.get(parent, {})
    node.pop(name, None)


def _content_named(identity: dict[str, Any], settings: Any) -> None:
    """Files named by path stand in the identity by their content's SHA-256 where it can be had."""
    model = identity.get("model", {})
    checkpoint = getattr(settings.model, "checkpoint", None)
    if checkpoint:
        pinned = settings.model.checkpoint_sha256
        path = Path(checkpoint).expanduser()
        if pinned or path.is_file():
            model.pop("checkpoint", None)
            model["checkpoint_sha256"] = pinned or file_sha256(path)
    setups = getattr(settings, "setups", None)
    if setups and Path(setups).expanduser().is_file():
        identity["setups"] = {"sha256": file_sha256(setups)}


def experiment_identity(settings: Any) -> dict[str, Any]:
    """What a job's trials *are*: its settings' difference from the defaults, less
    ``NOT_IDENTITY_KEYS``, ``trials`` and ``trial_offset``, with files named by their content."""
    identity = settings_difference(settings)
    identity.pop("name", None)
    for key in (*NOT_IDENTITY_KEYS, *_PER_TRIAL_KEYS):
        drop_key(identity, key)
    _content_named(identity, settings)
    return identity


def trial_id(identity: dict[str, Any], trial_index: int) -> str:
    """Stable id of one trial: its configuration's identity plus its index."""
    return stable_hash({"config": identity, "trial_index": trial_index})


def cache_key(**parts: Any) -> str:
    """The key of a cache entry made from ``parts``: settings dataclasses enter as their
    difference from their defaults, tensors as their fingerprint, the rest as they are."""
    return stable_hash({name: _key_part(value) for name, value in parts.items()})


def _key_part(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return settings_difference(value)
    if hasattr(value, "detach") and hasattr(value, "dtype"):
        return tensor_fingerprint(value)
    if isinstance(value, list | tuple):
        return [_key_part(item) for item in value]
    if isinstance(value, dict):
        return {key: _key_part(item) for key, item in value.items()}
    return value
