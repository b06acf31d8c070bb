"""Shared fixtures: synthetic trial records (docs/records.md) with known outcomes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis import load as load_module
from frogs.attacks.bullseye_polytope import BullseyePolytopeSettings
from frogs.attacks.convex_polytope import ConvexPolytopeSettings
from frogs.attacks.feature_collision import FeatureCollisionSettings
from frogs.config.settings import setting_columns
from frogs.defenses.activation_clustering import ActivationClusteringSettings
from frogs.defenses.deep_knn import DeepKnnSettings
from frogs.defenses.spectral_signatures import SpectralSignaturesSettings

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def poison_fields(
    l2: float = 1.5, linf: float = 10 / 255, psnr: float | None = 32.0, ssim: float = 0.95
) -> dict[str, float | None]:
    """``poison_<metric>_<to>_<mean|worst>`` with the worst poison vs its base as given;
    the means and the values against the crafting start are a little less visible."""
    fields: dict[str, float | None] = {}
    for to, shrink in (("base", 1.0), ("start", 0.8)):
        worst = {
            "l2": l2 * shrink,
            "linf": linf * shrink,
            "linf255": linf * 255 * shrink,
            "psnr": None if psnr is None else psnr + 5 * (1 - shrink),
            "ssim": min(1.0, ssim + (1 - shrink) / 20),
        }
        mean = {
            **{metric: 0.9 * worst[metric] for metric in ("l2", "linf", "linf255")},
            "psnr": None if psnr is None else worst["psnr"] + 0.5,
            "ssim": min(1.0, worst["ssim"] + 0.005),
        }
        for metric, value in worst.items():
            fields[f"poison_{metric}_{to}_mean"] = mean[metric]
            fields[f"poison_{metric}_{to}_worst"] = value
    return fields


def make_v2_record(index: int = 0, **overrides: Any) -> dict[str, Any]:
    """One complete ``ok`` schema-2 record (hand-named setting columns, no defense);
    ``overrides`` replace or add fields."""
    record: dict[str, Any] = {
        "schema": 2,
        "trial_id": f"t{index:06d}",
        "job_id": "job0",
        "trial_index": index,
        "status": "ok",
        "error": None,
        "scenario": "end_to_end",
        "dataset": "cifar10",
        "model": "alexnet_cifar",
        "attack": "feature_collision",
        "victim": "end_to_end",
        "target_selection": "random",
        "recipe": "algorithm1",
        "num_poisons": 50,
        "opacity": 0.3,
        "beta0": 0.25,
        "iters": 1000,
        "step": "sign",
        "lr": 0.5 / 255,
        "stop_distance_setting": None,
        "constraint": "linf",
        "eps": 8 / 255,
        "eps_255": 8.0,
        "quantize": True,
        "multi_base": True,
        "optimize": True,
        "lr_decay": False,
        "retrain_epochs": 10,
        "retrain_lr": 1.85e-5,
        "seed": 0,
        "pretrain_epochs": 24,
        "pretrain_schedule": "exponential",
        "target_class": "bird",
        "base_class": "dog",
        "target_label": 2,
        "base_label": 5,
        "task_classes": list(CLASSES),
        "clean_model_source": "pretrained",
        "clean_model_sha256": "f" * 64,
        "clean_model_weights": "alexnet_cifar-cpu.pt",
        "clean_train_acc": 0.99,
        "clean_test_acc": 0.80,
        "stop_distance": None,
        "victim_train_size": 20000,
        "test_duplicates_removed": 3,
        "target_index": 100 + index,
        "base_indices": [1, 2, 3],
        "outlier_rank": None,
        "beta": 0.25,
        "success": True,
        "target_pred": "dog",
        "target_base_prob": 0.8,
        "target_true_prob": 0.1,
        "target_base_prob_clean": 0.05,
        "target_true_prob_clean": 0.9,
        "control_success": False,
        "control_target_pred": "bird",
        "control_target_base_prob": 0.06,
        "clean_acc_before": 0.80,
        "clean_acc_control": 0.795,
        "clean_acc_after": 0.79,
        "accuracy_set_size": 9996,
        "angular_deviation_deg": 5.0,
        "angular_deviation_per_epoch": [1.0, 2.0, 3.0],
        "control_drift_deg": 1.5,
        "feat_dist_before": 30.0,
        "feat_dist_after": 3.0,
        "feat_dist_after_max": 4.0,
        **poison_fields(),
        "craft_iters_run": 1000,
        "poisons_path": None,
        "features_path": None,
        "craft_s": 1.0,
        "retrain_s": 2.0,
        "eval_s": 0.5,
        "frogs_version": "0.1.0",
        "git_sha": "abc1234",
        "torch_version": "2.14.1",
        "device": "cpu",
        "host": "node1",
        "slurm_job_id": None,
        "finished_at": f"2026-01-01T00:{index // 60 % 60:02d}:{index % 60:02d}Z",
    }
    record.update(overrides)
    return record


#: Schema-2 setting columns that schema 3 names ``attack.*`` / ``victim.*`` (analysis.load).
LEGACY_NAMES = (
    "recipe",
    "num_poisons",
    "opacity",
    "beta0",
    "iters",
    "step",
    "lr",
    "stop_distance_setting",
    "quantize",
    "multi_base",
    "optimize",
    "lr_decay",
    "retrain_epochs",
    "retrain_lr",
)


def _settings_fields(group: str, settings: Any, **values: Any) -> dict[str, Any]:
    """The ``GROUP.<field>`` columns frogs writes for ``settings`` with ``values`` changed (from
    the option's own dataclass, so a new knob reaches these fixtures without a hand-kept list),
    without the ``GROUP.`` prefix."""
    columns = setting_columns(group, replace(settings, **values))
    return {name.split(".", 1)[1]: value for name, value in columns.items()}


#: The settings columns (``attack.<field>``) of each attack's schema-3 record.
ATTACK_FIELDS: dict[str, dict[str, Any]] = {
    "feature_collision": _settings_fields(
        "attack", FeatureCollisionSettings(), num_poisons=50, opacity=0.3
    ),
    **{
        name: _settings_fields(
            "attack", settings, ensemble=["alexnet_cifar", "resnet18"], dropout=0.3
        )
        for name, settings in (
            ("convex_polytope", ConvexPolytopeSettings()),
            ("bullseye_polytope", BullseyePolytopeSettings()),
        )
    },
}
#: The settings columns (``defense.<field>``) of each defense's schema-3 record, resolved as a
#: job records them (``expected_poisons`` as the attack's count).
DEFENSE_FIELDS: dict[str, dict[str, Any]] = {
    "none": {},
    "deep_knn": _settings_fields("defense", DeepKnnSettings(), k=50, expected_poisons=50),
    "spectral_signatures": _settings_fields(
        "defense", SpectralSignaturesSettings(), removal_rate=0.15, expected_poisons=50
    ),
    "activation_clustering": _settings_fields("defense", ActivationClusteringSettings()),
}


def make_record(
    index: int = 0, attack: str = "feature_collision", defense: str = "none", **overrides: Any
) -> dict[str, Any]:
    """One complete ``ok`` schema-3 record of ``attack`` against ``defense`` (their settings
    columns from ``ATTACK_FIELDS`` / ``DEFENSE_FIELDS``); ``overrides`` replace or add fields,
    a ``__`` in a keyword standing for the dot (``attack__num_poisons=1``)."""
    record = {
        k: v
        for k, v in make_v2_record(index).items()
        if k not in LEGACY_NAMES or k in ("constraint", "eps")
    }
    record.update(
        schema=3,
        attack=attack,
        defense=defense,
        pretrain_classes="all",
        **{f"attack.{k}": v for k, v in ATTACK_FIELDS[attack].items()},
        **{"victim.epochs": 10, "victim.lr": 1.85e-5, "victim.batch_size": 128},
        **{"victim.weight_decay": 0.0},
        **{f"defense.{k}": v for k, v in DEFENSE_FIELDS[defense].items()},
        poisons_removed=0,
        clean_removed=0,
        poison_recall=0.0,
        clean_kept=20000,
        defend_s=0.0,
    )
    if attack != "feature_collision":
        record["beta"] = None
    record.update({k.replace("__", "."): v for k, v in overrides.items()})
    return record


def e2e_record(
    index: int,
    *,
    success: bool,
    poisons: int = 50,
    opacity: float = 0.3,
    epochs: int = 2,
    iters: int = 1500,
    pair: tuple[str, str] = ("bird", "dog"),
    **extra: Any,
) -> dict[str, Any]:
    """An end-to-end record of the authors' recipe on ``pair`` (target, base; replication claims
    5-8), with the overlap, 8-bit, reuse and stage-time fields."""
    distance = 20.0 + index % 7  # poison-target distance, below the target's nearest image at 24
    return make_record(
        index,
        trial_id=f"e{index:05d}-{poisons}-{opacity}-{epochs}-{iters}",
        target_index=1000 + index % 20,  # each job of 20 attacks the same 20 targets
        target_class=pair[0],
        base_class=pair[1],
        success=success,
        attack__recipe="authors_e2e",
        attack__num_poisons=poisons,
        attack__opacity=opacity,
        attack__iters=iters,
        attack__pool=50,
        attack__constraint="l2",
        attack__eps=None,
        victim__epochs=epochs,
        clean_train_acc=1.0,
        clean_test_acc=0.6917,
        clean_model_source="checkpoint",
        clean_model_sha256="a1fb7f768285e81a",
        feat_dist_before=30.0 + index % 5,
        feat_dist_after=distance,
        feat_dist_after_min=distance - 5,
        feat_dist_after_unclipped=distance - 0.25,
        target_nn_train_dist=24.0,
        train_nn_dist_min=4.8,
        train_nn_dist_median=20.0,
        poisons_overlap_fraction=1.0 if distance < 24 else 0.0,
        poisons_reused=poisons != 50,
        craft_s=100.0,
        retrain_s=10.0,
        eval_s=1.0,
        **extra,
    )


def transfer_record(
    index: int,
    *,
    success: bool,
    eps_255: float = 8.0,
    pair: tuple[str, str] = ("bird", "dog"),
    classes: int = 2,
    crafted: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """A one-shot transfer-analog record on CIFAR-10 (replication claims 1-4); ``crafted=False``
    is the noise floor's clean base."""
    target, base = pair
    return make_record(
        index,
        trial_id=f"t{index:05d}-{eps_255}-{classes}",
        scenario="transfer",
        victim="transfer",
        dataset="cifar10",
        target_class=target,
        base_class=base,
        task_classes=[target, base, "cat"][:classes],
        pretrain_classes="without_task",
        attack__num_poisons=1,
        attack__optimize=crafted,
        constraint="linf",
        eps=eps_255 / 255,
        eps_255=eps_255,
        success=success,
        angular_deviation_deg=20.0 + index % 3,
        angular_deviation_per_epoch=[15.0, 19.0, 20.0 + index % 3],
        clean_train_acc=0.966,
        clean_test_acc=0.787,
        feat_dist_before=30.0,
        feat_dist_after=12.0,
        image_values=3072,
        **extra,
    )


#: Schema-2 fields that a schema-1 record does not have.
SCHEMA2_ONLY = (
    "recipe",
    "step",
    "eps_255",
    "quantize",
    "stop_distance_setting",
    "pretrain_epochs",
    "pretrain_schedule",
    "clean_model_source",
    "clean_model_sha256",
    "clean_model_weights",
    "clean_train_acc",
    "clean_test_acc",
    "victim_train_size",
    "test_duplicates_removed",
    "control_success",
    "control_target_pred",
    "control_target_base_prob",
    "clean_acc_control",
    "accuracy_set_size",
    "control_drift_deg",
    "feat_dist_after_max",
    *poison_fields(),
)


def make_old_record(index: int = 0, **overrides: Any) -> dict[str, Any]:
    """One ``ok`` schema-1 record (docs/records.md before the budget and perceptibility
    fields): ``stop_distance`` a setting, ``eps`` only for linf, ``input_dist_*``."""
    record = {k: v for k, v in make_v2_record(index).items() if k not in SCHEMA2_ONLY}
    record.update(
        schema=1,
        lr=0.01,
        stop_distance=None,
        constraint="l2",
        eps=None,
        input_dist_l2=2.0,
        input_dist_linf=0.1,
    )
    record.update(overrides)
    return record


def failed(record: dict[str, Any], error: str = "RuntimeError: boom") -> dict[str, Any]:
    """``record`` turned into a failed one: outcome fields null."""
    nulls = [
        "success",
        "target_pred",
        "target_base_prob",
        "target_base_prob_clean",
        "target_true_prob_clean",
        "target_true_prob",
        "control_success",
        "control_target_pred",
        "control_target_base_prob",
        "clean_acc_before",
        "clean_acc_control",
        "clean_acc_after",
        "accuracy_set_size",
        "angular_deviation_deg",
        "angular_deviation_per_epoch",
        "control_drift_deg",
        "feat_dist_before",
        "feat_dist_after",
        "feat_dist_after_max",
        *poison_fields(),
    ]
    if record.get("schema", 1) >= 3:
        nulls += ["poisons_removed", "clean_removed", "poison_recall", "clean_kept"]
    return {**record, "status": "failed", "error": error, **dict.fromkeys(nulls)}


def trials(successes: int, n: int, start: int = 0, **params: Any) -> list[dict[str, Any]]:
    """``n`` ok schema-3 records with ``params`` (as ``make_record``), exactly the first
    ``successes`` of them successful."""
    return [make_record(start + i, success=i < successes, **params) for i in range(n)]


def synthetic_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` varied records (a 2-scenario x 4-count x 2-opacity sweep) with ~3 % failed."""
    rng = np.random.default_rng(seed)
    counts = rng.choice([1, 10, 25, 50], n)
    opacities = rng.choice([0.2, 0.3], n)
    scenarios = rng.choice(["transfer", "end_to_end"], n)
    success = rng.random(n) < counts / 60 + opacities
    fail = rng.random(n) < 0.03
    out = []
    for i in range(n):
        record = make_record(
            i,
            job_id=f"job{i // 100}",
            scenario=str(scenarios[i]),
            victim=str(scenarios[i]),
            attack__num_poisons=int(counts[i]),
            attack__opacity=float(opacities[i]),
            success=bool(success[i]),
            target_true_prob_clean=float(rng.random()),
            angular_deviation_per_epoch=rng.random(10).round(4).tolist(),
            **poison_fields(psnr=float(28 + 8 * rng.random()), ssim=float(0.8 + rng.random() / 5)),
        )
        out.append(failed(record) if fail[i] else record)
    return out


def write_jsonl(path: Path, records: Iterable[dict[str, Any]], tail: str = "") -> Path:
    """Write ``records`` one per line to ``path`` (created with parents), then ``tail``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
        handle.write(tail)
    return path


@pytest.fixture
def record() -> Callable[..., dict[str, Any]]:
    """Factory for one schema-3 record: ``record(index, attack=, defense=, **overrides)``."""
    return make_record


@pytest.fixture
def v2_record() -> Callable[..., dict[str, Any]]:
    """Factory for one schema-2 record: ``v2_record(index, **overrides)``."""
    return make_v2_record


@pytest.fixture
def old_record() -> Callable[..., dict[str, Any]]:
    """Factory for one schema-1 record: ``old_record(index, **overrides)``."""
    return make_old_record


@pytest.fixture
def make_trials() -> Callable[..., list[dict[str, Any]]]:
    """Factory for a block of records with a known number of successes."""
    return trials


@pytest.fixture
def make_failed() -> Callable[..., dict[str, Any]]:
    """Turn a record into a failed one."""
    return failed


@pytest.fixture
def synthetic() -> Callable[..., list[dict[str, Any]]]:
    """Factory for a large varied sweep of records."""
    return synthetic_records


@pytest.fixture
def write_job(tmp_path: Path) -> Callable[..., Path]:
    """Write records as ``tmp_path/<job>/results.jsonl``; returns the job directory."""

    def write(records: Iterable[dict[str, Any]], job: str = "job0", tail: str = "") -> Path:
        return write_jsonl(tmp_path / job / "results.jsonl", records, tail).parent

    return write


@pytest.fixture
def frame_of(write_job) -> Callable[[Iterable[dict[str, Any]]], Any]:
    """``frame_of(records)``: the records written as one job and loaded back as the analysis
    frame (``analysis.load.load_records``)."""

    def load(records: Iterable[dict[str, Any]]):
        return load_module.load_records(write_job(records).parent).frame

    return load


def save_trial_tensors(job_dir: Path, index: int, channels: int = 3, seed: int = 0) -> dict:
    """Write ``poisons/trial_<i>.pt`` and ``features/trial_<i>.pt`` (docs/records.md) under
    ``job_dir``; return the record fields that point at them."""
    import torch

    g = torch.Generator().manual_seed(seed + index)
    n, d, k = 3, 8, 4
    target = torch.rand(channels, 8, 8, generator=g)
    bases = torch.rand(n, channels, 8, 8, generator=g)
    watermarked = 0.7 * bases + 0.3 * target
    poisons = {
        "target": target,
        "bases": bases,
        "watermarked": watermarked,
        "poisons": (watermarked + 0.01).clamp(0, 1),
        "target_label": torch.tensor(0),
        "base_label": torch.tensor(1),
    }

    def state() -> dict:
        return {
            "target": torch.randn(d, generator=g),
            "poisons": torch.randn(n, d, generator=g) + 2,
            "target_class": torch.randn(20, d, generator=g) - 2,
            "base_class": torch.randn(20, d, generator=g) + 2,
            "head_weight": torch.randn(k, d, generator=g),
            "head_bias": torch.randn(k, generator=g),
        }

    features = {
        "clean": state(),
        "poisoned": state(),
        "target_task_index": torch.tensor(0),
        "base_task_index": torch.tensor(1),
    }
    fields = {
        "poisons_path": f"poisons/trial_{index}.pt",
        "features_path": f"features/trial_{index}.pt",
    }
    for key, data in (("poisons_path", poisons), ("features_path", features)):
        path = job_dir / fields[key]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(data, path)
    return fields


@pytest.fixture
def write_records() -> Callable[..., Path]:
    """``write_records(path, records, tail="")``: write a results.jsonl anywhere."""
    return write_jsonl


@pytest.fixture
def save_tensors() -> Callable[..., dict]:
    """``save_tensors(job_dir, index, channels=3)``: saved poisons and features of a trial."""
    return save_trial_tensors


@pytest.fixture
def tensor_job(tmp_path: Path) -> Path:
    """A job directory whose two ok records point at saved poisons and features."""
    job = tmp_path / "tensors"
    records = [make_record(i, **save_trial_tensors(job, i)) for i in range(2)]
    write_jsonl(job / "results.jsonl", records)
    return job


@pytest.fixture(params=["arrow", "python"])
def parser(request, monkeypatch) -> str:
    """Run a test with the pyarrow bulk parser and with the pure-Python fallback."""
    if request.param == "python":
        monkeypatch.setattr(load_module, "_parse_arrow", lambda lines: None)
    else:
        pytest.importorskip("pyarrow")
    return request.param
