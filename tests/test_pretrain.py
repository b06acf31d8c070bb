"""The clean model: trained once and cached, or loaded from a ``frogs pretrain`` checkpoint."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
from torch import nn

import frogs.models.pretrain
from frogs.config.compose import compose_settings
from frogs.config.settings import ModelSettings, updated
from frogs.data.datasets import SyntheticDatasetSettings, load_dataset
from frogs.errors import ConfigError
from frogs.models.architectures import build_model
from frogs.models.pretrain import (
    CleanModel,
    clean_model_key,
    dataset_fingerprint,
    load_clean_model,
    model_spec,
)
from frogs.models.pretrain_cli import main as pretrain_main
from frogs.store.cache import ArtifactCache
from frogs.store.checkpoint import load_checkpoint, save_checkpoint, sidecar_path

CPU = torch.device("cpu")
# `frogs pretrain` on tiny synthetic data: 4 classes x 64 images of 16x16, one epoch.
OVERRIDES = ["dataset=synthetic", "debug=smoke", "progress=false", "model.pretrain.epochs=1"]
META_KEYS = {
    "model",
    "dataset",
    "train_accuracy",
    "test_accuracy",
    "train_size",
    "pretrain_seconds",
    "architecture",
    "loaded_weights",
    "pretrain_classes",
    "frogs_version",
    "git_sha",
}


def synthetic(seed: int = 0):
    return load_dataset(
        SyntheticDatasetSettings(
            subsample_seed=seed, synthetic_train_per_class=24, synthetic_test_per_class=8
        )
    )


def tiny_settings(**pretrain) -> ModelSettings:
    changes = {"epochs": 1, "train_per_class": 16, **pretrain}
    return updated(
        ModelSettings(name="alexnet_cifar"), {f"pretrain.{k}": v for k, v in changes.items()}
    )


def no_training(*args, **kwargs):
    raise AssertionError("fit() must not be called")


def test_trained_once_then_from_the_cache(tmp_path, monkeypatch):
    data, settings, cache = synthetic(), tiny_settings(), ArtifactCache(tmp_path)
    first = load_clean_model(data, settings, cache, CPU)
    assert isinstance(first, CleanModel) and first.source == "trained"
    assert not first.model.training and first.loaded_weights is None
    assert first.pretrain_seconds is not None and first.pretrain_seconds >= 0
    indices = first.train_indices
    assert indices.dtype == torch.long and indices.device == CPU and len(indices) == 4 * 16
    assert torch.equal(indices, indices.sort().values)
    assert 0.0 <= first.train_accuracy <= 1.0 and 0.0 <= first.test_accuracy <= 1.0
    monkeypatch.setattr(frogs.models.pretrain, "fit", no_training)
    again = load_clean_model(data, settings, cache, CPU)
    assert again.source == "cache" and again.pretrain_seconds is None
    assert torch.equal(again.train_indices, indices)
    assert again.train_accuracy == pytest.approx(first.train_accuracy)
    assert again.test_accuracy == pytest.approx(first.test_accuracy)
    assert again.sha256 == first.sha256 and len(first.sha256) == 64
    for name, value in first.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], value)


def test_external_weights_only_have_no_training_images(tmp_path):
    clean = load_clean_model(synthetic(), tiny_settings(epochs=0), ArtifactCache(tmp_path), CPU)
    assert clean.train_indices is None and clean.train_accuracy is None
    assert clean.source == "trained"


@pytest.mark.parametrize(("schedule", "final_lr"), [("exponential", 1e-5), ("constant", None)])
def test_the_schedule_reaches_fit(tmp_path, monkeypatch, schedule, final_lr):
    seen = {}

    def spy(*args, **kwargs):
        seen.update(kwargs)

    monkeypatch.setattr(frogs.models.pretrain, "fit", spy)
    settings = tiny_settings(schedule=schedule, final_lr=1e-5)
    load_clean_model(synthetic(), settings, ArtifactCache(tmp_path), CPU)
    assert seen["final_lr"] == final_lr and seen["lr"] == settings.pretrain.lr


def test_cache_key_follows_loaded_weights_and_architecture():
    data, settings = synthetic(), tiny_settings()
    model = build_model(model_spec(data), settings)
    key = clean_model_key(data, settings, model)
    pinned = ModelSettings(name="alexnet_cifar", checkpoint="x.pt", checkpoint_sha256="ab")
    pinned = updated(pinned, {"pretrain": settings.pretrain})
    assert clean_model_key(data, pinned, model) == key  # where it comes from is not what it is
    model.loaded_weights = "IMAGENET1K_V1"
    assert clean_model_key(data, settings, model) != key
    model.loaded_weights = None
    assert clean_model_key(data, settings, model) == key
    model.backbone.append(nn.Identity())  # same settings, another network
    assert clean_model_key(data, settings, model) != key
    other = synthetic(seed=1)
    assert clean_model_key(other, settings, build_model(model_spec(other), settings)) != key


def test_pretraining_without_the_task_classes(tmp_path, monkeypatch):
    """The transfer analog's extractor never sees the victim's classes, and is its own entry."""
    data, cache = synthetic(), ArtifactCache(tmp_path)
    clean = load_clean_model(
        data, tiny_settings(classes="without_task"), cache, CPU, task_classes=(0, 1)
    )
    assert clean.source == "trained" and clean.classes == (2, 3)
    assert sorted(set(data.train_y[clean.train_indices].tolist())) == [2, 3]
    assert len(clean.train_indices) == 2 * 16
    every = load_clean_model(data, tiny_settings(), cache, CPU, task_classes=(0, 1))
    assert every.source == "trained" and every.classes == (0, 1, 2, 3)
    monkeypatch.setattr(frogs.models.pretrain, "fit", no_training)
    named = load_clean_model(data, tiny_settings(classes=["c2", 3]), cache, CPU)
    assert named.source == "cache" and named.sha256 == clean.sha256  # same classes, same model


@pytest.mark.parametrize(
    ("classes", "task", "message"),
    [
        ("without_task", (), r"classes='without_task' needs the victim's task classes"),
        (["c1", "cat"], (0,), r"model.pretrain.classes='cat' is not a class of synthetic"),
        (["c0", "c1", "c2", "c3"], (0,), None),
        ("some", (0,), r"classes='some' is not allowed; expected all, without_task or a list"),
    ],
)
def test_pretrain_classes_bad_values_are_named(tmp_path, monkeypatch, classes, task, message):
    monkeypatch.setattr(frogs.models.pretrain, "fit", lambda *a, **k: None)
    settings = tiny_settings(classes=classes)
    if message is None:
        load_clean_model(synthetic(), settings, ArtifactCache(tmp_path), CPU, task_classes=task)
        return
    with pytest.raises(ConfigError, match=message):
        load_clean_model(synthetic(), settings, ArtifactCache(tmp_path), CPU, task_classes=task)


def test_compose_recipes_and_overrides():
    assert compose_settings([]).model.pretrain.epochs == 2
    cpu = compose_settings(["model/pretrain=cpu"]).model.pretrain
    assert (cpu.epochs, cpu.train_per_class, cpu.schedule, cpu.hold_epochs) == (
        22,
        2000,
        "exponential",
        14,
    )
    assert cpu.final_lr == pytest.approx(1.85e-5) and cpu.lr == pytest.approx(1e-3)
    paper = compose_settings(["model/pretrain=paper", "model.pretrain.epochs=5"]).model.pretrain
    assert (paper.epochs, paper.train_per_class, paper.batch_size) == (5, None, 128)
    resnet = compose_settings(["model=resnet18", "model/pretrain=cpu"]).model
    assert resnet.name == "resnet18" and resnet.pretrain.epochs == 22
    inception = compose_settings(["model=inception_v3"]).model
    assert inception.pretrain.epochs == 0 and inception.on_missing_weights == "error"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """`frogs pretrain` run in-process with its default output path, and what it printed."""
    root = tmp_path_factory.mktemp("pretrain")
    overrides = [*OVERRIDES, f"cache_dir={root / 'cache'}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        out = io.StringIO()
        with redirect_stdout(out):
            status = pretrain_main(overrides)
    assert status == 0
    text = out.getvalue()
    line = next(x for x in text.splitlines() if x.startswith("reuse with: "))
    pins = dict(item.split("=", 1) for item in line.removeprefix("reuse with: ").split())
    settings = compose_settings(overrides)
    return {
        "path": Path(pins["model.checkpoint"]),
        "sha256": pins["model.checkpoint_sha256"],
        "root": root,
        "overrides": overrides,
        "settings": settings,
        "data": load_dataset(settings.dataset),
        "stdout": text,
    }


def checkpoint_settings(written, **fields) -> ModelSettings:
    settings = written["settings"].model
    return ModelSettings(
        name=settings.name, pretrain=settings.pretrain, checkpoint=str(written["path"]), **fields
    )


def test_pretrain_writes_checkpoint_and_sidecar(written):
    path, data = written["path"], written["data"]
    key = clean_model_key(
        data, written["settings"].model, build_model(model_spec(data), written["settings"].model)
    )
    assert path == written["root"] / "checkpoints" / f"alexnet_cifar-synthetic-{key}.pt"
    assert path.is_file() and sidecar_path(path).is_file()
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["sha256"] == written["sha256"]
    assert set(sidecar["meta"]) == META_KEYS
    meta = sidecar["meta"]
    assert meta["dataset"] == dataset_fingerprint(data)
    assert meta["model"]["pretrain"]["epochs"] == 1 and meta["train_size"] == 4 * 64
    assert meta["pretrain_seconds"] > 0 and "loaded_weights=None" in meta["architecture"]
    assert "test accuracy:" in written["stdout"] and written["sha256"] in written["stdout"]


def test_pretrain_again_is_a_cache_hit(written, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(frogs.models.pretrain, "fit", no_training)
    out = tmp_path / "again.pt"
    assert pretrain_main(["--out", str(out), *written["overrides"]]) == 0
    state, meta, _ = load_checkpoint(out)
    assert meta["pretrain_seconds"] is None and str(out) in capsys.readouterr().out
    original, _, _ = load_checkpoint(written["path"])
    assert all(torch.equal(state[k], v) for k, v in original.items())


def test_checkpoint_loads_without_training(written, tmp_path, monkeypatch):
    monkeypatch.setattr(frogs.models.pretrain, "fit", no_training)
    data = written["data"]
    settings = checkpoint_settings(written, checkpoint_sha256=written["sha256"])
    clean = load_clean_model(data, settings, ArtifactCache(tmp_path), CPU)
    assert clean.source == "checkpoint" and clean.sha256 == written["sha256"]
    assert not list(tmp_path.iterdir())  # the cache was not touched
    cached = load_clean_model(
        data, written["settings"].model, ArtifactCache(written["root"] / "cache"), CPU
    )
    assert cached.source == "cache"
    for name, value in cached.model.state_dict().items():
        assert torch.equal(clean.model.state_dict()[name], value)
    assert torch.equal(clean.train_indices, cached.train_indices)
    assert clean.train_accuracy == pytest.approx(cached.train_accuracy)
    assert clean.test_accuracy == pytest.approx(cached.test_accuracy)


def test_corrupt_checkpoint_or_wrong_pin_is_refused(written, tmp_path):
    copy = tmp_path / "copy.pt"
    payload = bytearray(written["path"].read_bytes())
    copy.write_bytes(bytes(payload))
    sidecar_path(copy).write_bytes(sidecar_path(written["path"]).read_bytes())
    settings = checkpoint_settings(written, checkpoint_sha256="f" * 64)
    with pytest.raises(ConfigError, match=r"model\.checkpoint_sha256 expects"):
        load_clean_model(written["data"], settings, ArtifactCache(tmp_path), CPU)
    payload[len(payload) // 2] ^= 0x01
    copy.write_bytes(bytes(payload))
    settings = checkpoint_settings(written)
    settings = updated(settings, {"checkpoint": str(copy)})
    with pytest.raises(ConfigError, match="corrupt"):
        load_clean_model(written["data"], settings, ArtifactCache(tmp_path), CPU)


def test_checkpoint_of_another_dataset_is_refused(written, tmp_path):
    other = load_dataset(SyntheticDatasetSettings(subsample_seed=1))
    with pytest.raises(
        ConfigError, match=r"trained on synthetic .*this job's dataset is synthetic"
    ):
        load_clean_model(other, checkpoint_settings(written), ArtifactCache(tmp_path), CPU)


def test_checkpoint_of_another_model_is_refused(written, tmp_path):
    state, meta, _ = load_checkpoint(written["path"])
    path = tmp_path / "other.pt"
    save_checkpoint(path, {k: v for k, v in state.items() if k != "head.bias"}, meta)
    settings = checkpoint_settings(written)
    settings = updated(settings, {"checkpoint": str(path)})
    with pytest.raises(
        ConfigError, match=r"does not fit model\.name='alexnet_cifar'.*head\.bias"
    ) as refused:
        load_clean_model(written["data"], settings, ArtifactCache(tmp_path), CPU)
    # one line that says how to rebuild it with this frogs, from the settings it records
    message = str(refused.value)
    assert "\n" not in message
    assert (
        f"rebuild it: frogs pretrain --out {path} dataset=synthetic model=alexnet_cifar" in message
    )
    assert f"model.pretrain.epochs={meta['model']['pretrain']['epochs']}" in message
    settings = checkpoint_settings(written, input_size=24)
    with pytest.raises(ConfigError, match=r"model\.input_size=None.*model\.input_size=24"):
        load_clean_model(written["data"], settings, ArtifactCache(tmp_path), CPU)


def test_checkpoint_without_provenance_keys_loads(written, tmp_path, monkeypatch):
    """A file written by a script with the same keys minus frogs_version, git_sha and
    loaded_weights (e.g. a background pretraining job) loads as well."""
    monkeypatch.setattr(frogs.models.pretrain, "fit", no_training)
    state, meta, _ = load_checkpoint(written["path"])
    for key in ("frogs_version", "git_sha", "loaded_weights"):
        del meta[key]
    path = tmp_path / "script.pt"
    save_checkpoint(path, state, meta)
    settings = checkpoint_settings(written)
    settings = updated(settings, {"checkpoint": str(path)})
    clean = load_clean_model(written["data"], settings, ArtifactCache(tmp_path), CPU)
    assert clean.loaded_weights is None and len(clean.train_indices) == meta["train_size"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["model.pretrain.lr=0"], "model.pretrain.lr=0"),
        (["model/pretrain=nope"], "cpu, paper, quick"),
        (["model.checkpoint=x.pt"], "model.checkpoint='x.pt' is not allowed"),
    ],
)
def test_pretrain_bad_input_is_one_line(argv, needle, tmp_path, capsys):
    assert pretrain_main([*OVERRIDES, f"cache_dir={tmp_path}", *argv]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("frogs: error:") and needle in errors[0]
    assert not (tmp_path / "models").exists()  # nothing pretrained or cached first


def test_pretrain_unknown_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        pretrain_main(["--bogus", *OVERRIDES])
    assert exited.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "frogs: error: unrecognized arguments: --bogus" in errors[0]


@pytest.mark.parametrize(("arch", "loads"), [(None, True), ("vgg11", False)])
def test_a_checkpoint_that_records_knobs_its_model_lacks(written, tmp_path, arch, loads):
    """Checkpoints written before the model options had schemas of their own record model=
    torchvision's and module's knobs for every model, at null (the shared CIFAR-10 model does):
    null still loads into a model without them; any other value is another network."""
    state, meta, _ = load_checkpoint(written["path"])
    meta["model"].update(arch=arch, builder=None, feature_node=None, in_channels=None)
    path = tmp_path / "old.pt"
    save_checkpoint(path, state, meta)
    settings = updated(checkpoint_settings(written), {"checkpoint": str(path)})
    if loads:
        clean = load_clean_model(written["data"], settings, ArtifactCache(tmp_path), CPU)
        assert clean.source == "checkpoint"
    else:
        with pytest.raises(ConfigError, match=r"written for model\.arch='vgg11'.*model\.arch=None"):
            load_clean_model(written["data"], settings, ArtifactCache(tmp_path), CPU)
