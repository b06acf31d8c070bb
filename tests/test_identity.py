"""Identity by difference (``frogs.store.identity``) and the migration of earlier ids
(``frogs.store.migrate``): a knob added at its default moves no id or cache key, a default that
moves is caught, a file is named by its content, and records of the earlier rule are migrated so
that a relaunch runs nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from frogs.attacks.feature_collision import FeatureCollisionSettings
from frogs.config.compose import compose_settings, option_registries
from frogs.config.settings import JobSettings, ModelSettings
from frogs.models.architectures import ModelSpec, build_model
from frogs.models.pretrain import clean_model_key
from frogs.store.identity import (
    NOT_IDENTITY_KEYS,
    cache_key,
    experiment_identity,
    settings_difference,
    stable_hash,
    tensor_fingerprint,
    trial_id,
)
from frogs.store.migrate import legacy_identity, migrate_job
from tests.conftest import whole_records

SNAPSHOT = Path(__file__).parent / "data" / "settings_defaults.json"


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def current_defaults() -> dict:
    """Every built-in schema's defaults, as dotted keys (``job.*`` and ``GROUP=OPTION.*``)."""
    tree = {"job": asdict(JobSettings())}
    for group, registry in option_registries().items():
        for name, schema in sorted(registry.schemas().items()):
            if schema.__module__.startswith("frogs."):  # plugins a test registered are not ours
                tree[f"{group}={name}"] = asdict(schema())
    return flat(json.loads(json.dumps(tree, default=str)))


def test_no_default_moved_without_a_migration():
    """Ids are measured against the defaults, so a default whose value changes would change what
    every run relying on it computes under the same id. Moving one means: ship a migration of the
    records (frogs.store.migrate), then update tests/data/settings_defaults.json."""
    snapshot, now = json.loads(SNAPSHOT.read_text()), current_defaults()
    moved = {k: (v, now[k]) for k, v in snapshot.items() if k in now and now[k] != v}
    assert not moved, f"defaults moved (snapshot, now): {moved}"
    gone = sorted(set(snapshot) - set(now))
    assert not gone, f"knobs removed: {gone}; migrate records that set them, update the snapshot"
    new = sorted(set(now) - set(snapshot))
    assert not new, (
        f"new knobs {new}: add them with their defaults to {SNAPSHOT.name} (ids are now measured "
        "against those values)"
    )


@dataclass(frozen=True)
class FeatureCollisionPlus(FeatureCollisionSettings):
    """The feature-collision settings with a knob added later."""

    added_knob: float = 0.5


def test_a_knob_added_at_its_default_moves_no_trial_id(synthetic_settings):
    before = experiment_identity(synthetic_settings)
    extended = replace(
        synthetic_settings, attack=FeatureCollisionPlus(**asdict(synthetic_settings.attack))
    )
    assert experiment_identity(extended) == before
    moved = replace(extended, attack=replace(extended.attack, added_knob=0.7))
    assert trial_id(experiment_identity(moved), 0) != trial_id(before, 0)
    # the same through the cache keys' helper
    assert cache_key(attack=extended.attack) == cache_key(attack=synthetic_settings.attack)
    assert cache_key(attack=moved.attack) != cache_key(attack=synthetic_settings.attack)


@dataclass(frozen=True)
class ModelSettingsPlus(ModelSettings):
    added_knob: str | None = None


def test_a_model_knob_added_at_its_default_keeps_the_clean_model_key():
    data = SimpleNamespace(
        name="tiny",
        class_names=("a", "b"),
        train_x=torch.zeros(4, 3, 8, 8),
        test_x=torch.zeros(2, 3, 8, 8),
    )
    spec = ModelSpec(3, 32, 2, (0.5,), (0.25,))
    plain = ModelSettings(name="alexnet_cifar")
    model = build_model(spec, plain)
    key = clean_model_key(data, plain, model)
    assert clean_model_key(data, ModelSettingsPlus(name="alexnet_cifar"), model) == key
    assert (
        clean_model_key(data, ModelSettingsPlus(name="alexnet_cifar", added_knob="x"), model) != key
    )
    # where its weights come from is not what the model is
    assert clean_model_key(data, replace(plain, on_missing_weights="pretrain"), model) == key
    assert (
        clean_model_key(data, replace(plain, pretrain=replace(plain.pretrain, lr=0.1)), model)
        != key
    )


def test_where_and_how_a_job_runs_is_not_its_identity(synthetic_settings):
    identity = experiment_identity(synthetic_settings)
    other = replace(
        synthetic_settings,
        device="cuda",
        amp=False,
        threads=3,
        progress=not synthetic_settings.progress,
        cache_dir="/elsewhere",
        save_poisons=True,
        poison_format="benchmark",
        save_features=True,
        feature_sample=7,
        trials=9,
        trial_offset=4,
        dataset=replace(synthetic_settings.dataset, root="/data/else", download=False),
    )
    assert len(NOT_IDENTITY_KEYS) == 11  # each one set to another value above
    assert experiment_identity(other) == identity


def test_two_options_at_their_defaults_differ_by_name(synthetic_settings):
    registries = option_registries()
    polytope = registries["attack"].settings_class("convex_polytope")(num_poisons=2)
    collision = FeatureCollisionSettings(num_poisons=2)
    assert settings_difference(polytope)["name"] != settings_difference(collision)["name"]
    a = experiment_identity(replace(synthetic_settings, attack=polytope))
    b = experiment_identity(replace(synthetic_settings, attack=collision))
    assert a != b


def test_a_checkpoint_is_named_by_its_content_not_its_path(synthetic_settings, tmp_path):
    first, second, other = tmp_path / "a.pt", tmp_path / "copy" / "b.pt", tmp_path / "c.pt"
    second.parent.mkdir()
    first.write_bytes(b"weights")
    shutil.copy(first, second)
    other.write_bytes(b"other weights")

    def identity(path, pinned=None):
        model = replace(synthetic_settings.model, checkpoint=str(path), checkpoint_sha256=pinned)
        return experiment_identity(replace(synthetic_settings, model=model))

    assert identity(first) == identity(second) != identity(other)
    pinned = "ab" * 32
    assert identity(first, pinned) == identity(tmp_path / "missing.pt", pinned)
    assert "checkpoint" not in identity(first)["model"]


def test_a_tensor_fingerprint_sees_what_a_sum_misses():
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    permuted = x.flip(0)
    assert float(x.sum()) == float(permuted.sum())
    assert tensor_fingerprint(x) != tensor_fingerprint(permuted)
    assert tensor_fingerprint(x) == tensor_fingerprint(x.clone())
    assert tensor_fingerprint(x) != tensor_fingerprint(x.reshape(4, 3))
    assert tensor_fingerprint(x.bfloat16()) != tensor_fingerprint(x)


# --- the migration of records written under the earlier rule ---------------------------------

SYNTHETIC = ["dataset=synthetic", "debug=smoke", "dataset.train_per_class=null", "trials=2"]


def frogs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "frogs", *args], capture_output=True, text=True, timeout=300
    )


def to_legacy_ids(results: Path, settings) -> None:
    """Rewrite a fresh job's ids as the earlier rule made them (records of an older frogs)."""
    old, new = legacy_identity(settings), experiment_identity(settings)
    text = results.read_text()
    for index in (0, 1):
        text = text.replace(trial_id(new, index), trial_id(old, index))
    results.write_text(text.replace(stable_hash(new), stable_hash(old)))


def test_migrated_records_are_found_by_a_relaunch(tmp_path, cache):
    """A real job's records turned into the earlier rule's: a relaunch would redo them; after
    ``frogs migrate-ids`` it runs nothing, and only the ids changed, byte for byte."""
    run_dir = tmp_path / "run"
    args = [f"hydra.run.dir={run_dir}", f"cache_dir={cache}", *SYNTHETIC]
    first = frogs(*args)
    assert first.returncode == 0, first.stderr
    results = run_dir / "results.jsonl"
    current = results.read_text()
    settings = compose_settings([*SYNTHETIC, f"cache_dir={cache}"])
    to_legacy_ids(results, settings)
    legacy = results.read_text()
    assert legacy != current  # the two rules give other ids
    assert migrate_job(results, settings, write=False).rewritten == 2
    assert results.read_text() == legacy  # a check writes nothing

    # as configs were saved before the model options had schemas of their own
    saved = run_dir / ".hydra" / "config.yaml"
    old = OmegaConf.load(saved)
    for knob in ("arch", "builder", "feature_node", "in_channels"):
        old.model[knob] = None
    OmegaConf.save(old, saved)

    migrated = frogs("migrate-ids", str(run_dir))
    assert migrated.returncode == 0, migrated.stderr
    assert "2 rewritten, 0 already current" in migrated.stdout
    assert results.read_text() == current
    again = frogs("migrate-ids", str(run_dir))
    assert "0 rewritten, 2 already current" in again.stdout

    relaunch = frogs(*args)
    assert relaunch.returncode == 0, relaunch.stderr
    assert "no new trials" in relaunch.stdout
    assert len(whole_records(results)) == 2


def test_records_of_other_settings_are_refused_and_nothing_is_written(tmp_path):
    job = tmp_path / "attack.opacity=0.3"
    job.mkdir()
    results = job / "results.jsonl"
    results.write_text(json.dumps({"trial_id": "0123456789abcdef", "trial_index": 0}) + "\n")
    before = results.read_text()
    failed = frogs("migrate-ids", str(tmp_path), "--config-name", "config")
    assert failed.returncode == 2
    assert "neither the earlier rule's nor today's id of trial 0" in failed.stderr
    assert results.read_text() == before


def test_a_folder_without_hydra_config_or_config_name_is_one_clear_line(tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "results.jsonl").write_text("")
    failed = frogs("migrate-ids", str(tmp_path))
    assert failed.returncode == 2
    assert "has no .hydra/config.yaml; expected --config-name" in failed.stderr


@pytest.mark.parametrize("field", ["trial_id", "job_id"])
def test_the_record_writer_spells_the_ids_as_the_migration_finds_them(field, tmp_path):
    from frogs.store.records import RecordWriter

    RecordWriter(tmp_path / "r.jsonl").append({"trial_id": "a", "job_id": "b"})
    assert f'"{field}": "' in (tmp_path / "r.jsonl").read_text()


def test_a_saved_config_todays_schema_cannot_express_is_one_clear_line(tmp_path):
    job = tmp_path / "job"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("dataset: {name: cifar10, num_classes: 7}\n")
    (job / "results.jsonl").write_text("")
    failed = frogs("migrate-ids", str(tmp_path))
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "Key 'num_classes' not in 'DatasetSettings'" in failed.stderr
