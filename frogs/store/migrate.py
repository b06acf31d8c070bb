"""``frogs migrate-ids``: rewrite the trial and job ids of records written under an earlier rule.

Before 2026-12-07 a trial id hashed *every* identifying setting (``legacy_identity``, kept here
verbatim as the rule those records were made with); since then it hashes the settings that
differ from the defaults (``frogs.store.identity``). A relaunch finds its finished trials by id,
so records of the old rule must be migrated, or the relaunch would run them again.

For each job folder the settings come from Hydra's ``.hydra/config.yaml`` beside its
``results.jsonl`` (every job frogs ran has one) or, for folders without it (the study records
committed under ``results/``), from composing the folder's name, which is the job's
``override_dirname``, with ``--config-dir`` and ``--config-name`` (or, with ``--studies FILE``,
the config name a JSON file gives the study folder above the job: ``results/studies.json``).
Every record's id must then be the old rule's id of its trial (it is rewritten) or already the
new one (left alone): anything else means the settings are not the ones the records were made
with, and nothing is written. A rewrite changes only the ``trial_id`` and ``job_id`` values of
each line, byte for byte otherwise, and replaces the file atomically.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from frogs.errors import ConfigError, FrogsError, OutputError
from frogs.store.atomic import atomic_write
from frogs.store.identity import (
    NOT_IDENTITY_KEYS,
    drop_key,
    experiment_identity,
    stable_hash,
    trial_id,
)
from frogs.store.records import RESULTS_FILE

HYDRA_CONFIG = Path(".hydra") / "config.yaml"
#: model knobs the legacy rule left out at these values (``ModelSettings.ADDED_KNOBS`` then)
_LEGACY_ADDED_MODEL_KNOBS = dict.fromkeys(("arch", "builder", "feature_node", "in_channels"))
#: those knobs' options since they have schemas of their own
_TAPPED_MODEL_KNOBS = {
    "arch": ("torchvision",),
    "builder": ("module",),
    "feature_node": ("torchvision", "module"),
    "in_channels": ("module",),
}
_LEGACY_ADDED_ATTACK_KNOBS = {"pool": None, "target_noise": 0.05, "base_selection": "random"}
#: dataset knobs every dataset's settings had then, at these defaults (dataset=synthetic's own
#: since 2026-12-07, SyntheticDatasetSettings)
_LEGACY_DATASET_KNOBS = {
    "num_classes": 4,
    "channels": 3,
    "synthetic_train_per_class": 64,
    "synthetic_test_per_class": 32,
}


def legacy_identity(settings: Any) -> dict[str, Any]:
    """The identity of the earlier rule: every setting but ``NOT_IDENTITY_KEYS``, ``trials`` and
    ``trial_offset``, less the knobs added later at their defaults (listed by hand then), with the
    dataset knobs that every dataset had then."""
    plain = asdict(settings)
    for key in (*NOT_IDENTITY_KEYS, "trials", "trial_offset"):
        drop_key(plain, key)
    for knob, default in _LEGACY_DATASET_KNOBS.items():
        plain["dataset"].setdefault(knob, default)
    model = plain.get("model", {})
    for knob, default in _LEGACY_ADDED_MODEL_KNOBS.items():
        if knob in model and model[knob] == default:
            model.pop(knob)
    pretrain = model.get("pretrain", {})
    if pretrain.get("classes") == "all":
        pretrain.pop("classes")
    if plain.get("setups", "") is None:
        plain.pop("setups")
    if plain.get("defense") == {"name": "none"}:
        plain.pop("defense")
    attack = plain.get("attack", {})
    for knob, default in _LEGACY_ADDED_ATTACK_KNOBS.items():
        if knob in attack and attack[knob] == default:
            attack.pop(knob)
    return plain


@dataclass(frozen=True)
class Migrated:
    """What ``migrate_job`` did to one ``results.jsonl``."""

    path: Path
    rewritten: int
    already_current: int


def job_settings(job_dir: Path, config_dir: Path | None, config_name: str | None) -> Any:
    """The settings a job folder's records were made with: its ``.hydra/config.yaml``, else its
    folder name composed as overrides of ``config_name`` in ``config_dir``."""
    from omegaconf import OmegaConf

    from frogs.config.compose import compose_settings, register_schemas, to_settings

    saved = job_dir / HYDRA_CONFIG
    if saved.is_file():
        register_schemas()
        return to_settings(_current_schema(OmegaConf.load(saved)))
    if config_name is None:
        raise ConfigError(
            f"{job_dir} has no {HYDRA_CONFIG}; expected --config-name (and --config-dir) naming "
            "the sweep config whose overrides the folder name holds"
        )
    # the folder name is Hydra's override_dirname: comma-separated overrides (a list value such
    # as dataset.task_classes=[bird,dog,cat] keeps its own commas)
    overrides = re.split(r",(?![^\[]*\])", job_dir.name)
    where = {"config_dir": config_dir.resolve()} if config_dir else {}
    return compose_settings(overrides, config_name=config_name, **where)


def _current_schema(config: Any) -> Any:
    """A job config saved before the dataset and model options had schemas of their own, less the
    knobs their schema no longer has where they sat at the defaults every option had then (any
    other value is left, and today's schema then names it as a key it lacks)."""
    dataset, model = config.get("dataset", {}), config.get("model", {})
    if dataset.get("name") != "synthetic":
        for knob, default in _LEGACY_DATASET_KNOBS.items():
            if knob in dataset and dataset[knob] == default:
                del dataset[knob]
    for knob, owners in _TAPPED_MODEL_KNOBS.items():
        if knob in model and model.get("name") not in owners and model[knob] is None:
            del model[knob]
    return config


def migrate_job(results: Path, settings: Any, *, write: bool = True) -> Migrated:
    """Rewrite the legacy ids of one ``results.jsonl`` made with ``settings`` (see the module);
    ``write=False`` only checks and counts."""
    old_identity, new_identity = legacy_identity(settings), experiment_identity(settings)
    old_job, new_job = stable_hash(old_identity), stable_hash(new_identity)
    lines = results.read_text(encoding="utf-8").split("\n")
    rewritten = current = 0
    out = []
    for lineno, line in enumerate(lines, start=1):
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            record = None  # a malformed line stays as it was: the reader skips it
        if not isinstance(record, dict) or "trial_id" not in record:
            out.append(line)
            continue
        index = record.get("trial_index")
        new_id = trial_id(new_identity, index)
        if record["trial_id"] == new_id:
            current += 1
            out.append(line)
            continue
        if record["trial_id"] != trial_id(old_identity, index):
            raise OutputError(
                f"{results}:{lineno}: trial_id {record['trial_id']} is neither the earlier rule's "
                f"nor today's id of trial {index} under these settings; expected the settings the "
                "records were made with (its .hydra/config.yaml, or the sweep's --config-name)"
            )
        line = _replace_once(line, "trial_id", record["trial_id"], new_id, results, lineno)
        if record.get("job_id") == old_job:
            line = _replace_once(line, "job_id", old_job, new_job, results, lineno)
        out.append(line)
        rewritten += 1
    if rewritten and write:
        atomic_write(results, "\n".join(out))
    return Migrated(results, rewritten, current)


def _replace_once(line: str, key: str, old: str, new: str, path: Path, lineno: int) -> str:
    token = f'"{key}": "{old}"'
    if line.count(token) != 1:
        raise OutputError(f"{path}:{lineno}: cannot find {key} {old} once in the line")
    return line.replace(token, f'"{key}": "{new}"')


def main(argv: Sequence[str] | None = None) -> int:
    """``frogs migrate-ids DIR... [--config-dir D --config-name N]``: migrate every job folder
    (a folder with ``results.jsonl``) under each DIR; print one line per file."""
    parser = argparse.ArgumentParser(prog="frogs migrate-ids", description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep or job folders")
    parser.add_argument("--config-dir", type=Path, default=None, help="e.g. sweeps")
    parser.add_argument("--config-name", default=None, help="e.g. e2e_poison_count")
    parser.add_argument(
        "--studies", type=Path, default=None, help="JSON: study folder -> sweep config name"
    )
    args = parser.parse_args(argv)
    studies = json.loads(args.studies.read_text()) if args.studies else {}
    files = sorted({p for d in args.dirs for p in [*d.rglob(RESULTS_FILE)]})
    if not files:
        print(f"frogs migrate-ids: error: no {RESULTS_FILE} under {args.dirs}", file=sys.stderr)
        return 2
    try:
        # every file is checked before any is written
        plans = [
            (
                f,
                job_settings(
                    f.parent, args.config_dir, studies.get(f.parent.parent.name, args.config_name)
                ),
            )
            for f in files
        ]
        for results, settings in plans:
            migrate_job(results, settings, write=False)
        for results, settings in plans:
            done = migrate_job(results, settings)
            print(f"{results}: {done.rewritten} rewritten, {done.already_current} already current")
    except FrogsError as exc:
        print(f"frogs migrate-ids: error: {exc}", file=sys.stderr)
        return 2
    except (HydraException, OmegaConfBaseException) as exc:  # a config today's schema refuses
        from frogs.config.compose import error_line

        print(f"frogs migrate-ids: error: {error_line(exc)}", file=sys.stderr)
        return 2
    return 0
