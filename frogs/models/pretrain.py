"""The clean model: a ``frogs pretrain`` checkpoint, or built once and cached by what defines it.

Built means torchvision weights where configured (see ``frogs.models.architectures``), then
``model.pretrain.*`` epochs of training on a seeded per-class subset of the training split. The
cache key covers the model settings, the weights really loaded, the architecture (``repr``) and the
dataset, so every later job of a sweep reuses the entry and a changed network never picks up a stale
one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from frogs.config.settings import ModelSettings, PretrainSettings
from frogs.data.datasets import ImageData, per_class_subset
from frogs.errors import ConfigError
from frogs.models.architectures import FeatureClassifier, ModelSpec, build_model
from frogs.models.train import fit, predict_in_batches
from frogs.store.cache import ArtifactCache
from frogs.store.checkpoint import load_checkpoint
from frogs.store.identity import cache_key, stable_hash

log = logging.getLogger(__name__)

# Cache-entry tensors that are not weights.
_TRAIN_ACCURACY = "__train_accuracy__"
_TEST_ACCURACY = "__test_accuracy__"
_TRAIN_INDICES = "__train_indices__"
# Settings that shape the network: a checkpoint must have been written with the same values
# (arch: model=torchvision's; builder, in_channels: model=module's; feature_node: both).
_ARCHITECTURE_FIELDS = (
    "name",
    "input_size",
    "small_input",
    "arch",
    "builder",
    "feature_node",
    "in_channels",
)


@dataclass(frozen=True)
class CleanModel:
    """The clean model and what it was trained on.

    ``source``: ``trained`` (built by this call: pretrained, or external weights as they are),
    ``cache`` (the shared cache had it) or ``checkpoint`` (``model.checkpoint``). ``sha256``: of the
    checkpoint file or of the cache entry. ``pretrain_seconds``: wall seconds of this call's
    training, None unless ``source == "trained"``. ``classes``: the dataset classes it learnt.
    """

    model: FeatureClassifier
    train_indices: torch.Tensor | None
    train_accuracy: float | None
    test_accuracy: float
    source: str
    sha256: str | None
    loaded_weights: str | None
    pretrain_seconds: float | None = None
    classes: tuple[int, ...] | None = None


def model_spec(data: ImageData) -> ModelSpec:
    channels, height, _ = data.image_shape
    return ModelSpec(channels, height, len(data.class_names), data.mean, data.std)


def dataset_fingerprint(data: ImageData) -> dict:
    """What identifies a dataset's content cheaply (name, classes, sizes, a pixel checksum)."""
    probe = data.train_x[:: max(1, len(data.train_x) // 64)]
    return {
        "name": data.name,
        "classes": list(data.class_names),
        "train": list(data.train_x.shape),
        "test": list(data.test_x.shape),
        "checksum": round(float(probe.double().sum()), 4),
    }


def pretrain_classes(
    data: ImageData, pretrain: PretrainSettings, task_classes: Sequence[int] = ()
) -> tuple[int, ...]:
    """Dataset indices of the classes the clean model learns (``model.pretrain.classes``)."""
    spec = pretrain.classes
    everything = tuple(range(len(data.class_names)))
    if spec is None or spec == "all":
        return everything
    if spec == "without_task":
        if not task_classes:
            raise ConfigError(
                "model.pretrain.classes='without_task' needs the victim's task classes; expected "
                "a job with dataset.target_class and dataset.base_class"
            )
        chosen = tuple(c for c in everything if c not in set(task_classes))
    elif isinstance(spec, list | tuple):
        chosen = tuple(sorted({data.class_index(c, "model.pretrain.classes") for c in spec}))
    else:
        raise ConfigError(
            f"model.pretrain.classes={spec!r} is not allowed; expected all, without_task or a "
            "list of class names"
        )
    if not chosen:
        raise ConfigError(
            f"model.pretrain.classes={spec!r} leaves no class to learn; expected at least one"
        )
    return chosen


def clean_model_key(
    data: ImageData,
    settings: ModelSettings,
    model: FeatureClassifier,
    classes: Sequence[int] | None = None,
) -> str:
    """The cache key of the clean model ``model`` (as built, before training) would become.

    The model settings enter as their difference from the defaults, without the knobs that say
    where weights come from rather than how they are trained (checkpoint, on_missing_weights) and
    with ``model.pretrain.classes`` as the resolved ``classes``, part of the key only when they
    are not every class.
    """
    keyed = replace(
        settings,
        checkpoint=None,
        checkpoint_sha256=None,
        on_missing_weights="error",
        pretrain=replace(settings.pretrain, classes="all"),
    )
    parts: dict[str, Any] = {
        "model": keyed,
        "loaded_weights": model.loaded_weights,
        "architecture": stable_hash(repr(model)),
        "data": dataset_fingerprint(data),
    }
    if classes is not None and tuple(classes) != tuple(range(len(data.class_names))):
        parts["pretrain_classes"] = list(classes)
    return cache_key(**parts)


def pretrain_indices(
    data: ImageData, pretrain: PretrainSettings, classes: Sequence[int] | None = None
) -> torch.Tensor:
    """The training images pretraining uses: a seeded per-class subset of ``classes`` (default:
    every class), sorted, CPU long."""
    if classes is None:
        classes = range(len(data.class_names))
    return per_class_subset(data.train_y, classes, pretrain.train_per_class, pretrain.seed)


def accuracy(model: FeatureClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on (x, y); ``x`` may live on the CPU, it moves batch by batch."""
    device = next(model.parameters()).device
    logits = predict_in_batches(lambda batch: model(batch.to(device)), x)
    return float((logits.argmax(1).cpu() == y.cpu()).float().mean())


def load_clean_model(
    data: ImageData,
    settings: ModelSettings,
    cache: ArtifactCache,
    device: torch.device,
    progress: bool = False,
    task_classes: Sequence[int] = (),
) -> CleanModel:
    """The clean model on ``device`` in eval mode: from ``model.checkpoint`` when set, else from
    the cache, else built (and pretrained) once and cached. ``task_classes``: the victim's
    classes, which ``model.pretrain.classes=without_task`` leaves out."""
    if settings.checkpoint:
        clean = _from_checkpoint(data, settings, device)
    else:
        classes = pretrain_classes(data, settings.pretrain, task_classes)
        clean = _from_cache(data, settings, cache, device, progress, classes)
    train = "n/a" if clean.train_accuracy is None else f"{clean.train_accuracy:.4f}"
    size = 0 if clean.train_indices is None else len(clean.train_indices)
    log.info(
        "clean %s on %s (%s): train accuracy %s on %d images, test accuracy %.4f",
        settings.name,
        data.name,
        clean.source,
        train,
        size,
        clean.test_accuracy,
    )
    return clean


def _pretrain(
    model: FeatureClassifier,
    data: ImageData,
    settings: ModelSettings,
    idx: torch.Tensor,
    device: torch.device,
    progress: bool,
) -> None:
    """Train ``model`` in place on the images ``idx`` with the ``model.pretrain`` recipe."""
    pre = settings.pretrain
    log.info("pretraining %s on %d %s images", settings.name, len(idx), data.name)
    fit(
        model,
        data.train_x[idx].to(device),
        data.train_y[idx].to(device),
        epochs=pre.epochs,
        lr=pre.lr,
        final_lr=pre.final_lr if pre.schedule == "exponential" else None,
        hold_epochs=pre.hold_epochs if pre.schedule == "exponential" else 0,
        batch_size=pre.batch_size,
        weight_decay=pre.weight_decay,
        generator=torch.Generator().manual_seed(pre.seed),
        progress="pretrain" if progress else None,
    )


def _from_cache(
    data: ImageData,
    settings: ModelSettings,
    cache: ArtifactCache,
    device: torch.device,
    progress: bool,
    classes: Sequence[int],
) -> CleanModel:
    """Build the model (its weights decide the key), then reuse or fill its cache entry."""
    torch.manual_seed(settings.pretrain.seed)  # initialisation and then pretraining's own draws
    model = build_model(model_spec(data), settings).to(device)
    key = clean_model_key(data, settings, model, classes)
    seconds: list[float] = []

    def build() -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = {}
        if settings.pretrain.epochs > 0:
            idx = pretrain_indices(data, settings.pretrain, classes)
            start = time.perf_counter()
            _pretrain(model, data, settings, idx, device, progress)
            seconds.append(time.perf_counter() - start)
            model.eval()
            state[_TRAIN_ACCURACY] = torch.tensor(
                accuracy(model, data.train_x[idx], data.train_y[idx])
            )
            state[_TRAIN_INDICES] = idx
        else:
            seconds.append(0.0)
        model.eval()
        test = per_class_subset(data.test_y, classes, None, 0)  # every test image it learnt
        state[_TEST_ACCURACY] = torch.tensor(accuracy(model, data.test_x[test], data.test_y[test]))
        state.update({k: v.detach().cpu() for k, v in model.state_dict().items()})
        return state

    entry = dict(cache.get_or_build("models", key, build, meta={"model": settings.name}))
    extras = {
        name: entry.pop(name, None) for name in (_TRAIN_ACCURACY, _TEST_ACCURACY, _TRAIN_INDICES)
    }
    if not seconds:  # a cache hit: the built model is still untrained
        model.load_state_dict(entry)
    train_accuracy = extras[_TRAIN_ACCURACY]
    return CleanModel(
        model=model.eval(),
        train_indices=extras[_TRAIN_INDICES],
        train_accuracy=None if train_accuracy is None else float(train_accuracy),
        test_accuracy=float(extras[_TEST_ACCURACY]),
        source="trained" if seconds else "cache",
        sha256=_cache_entry_sha256(cache, key),
        loaded_weights=model.loaded_weights,
        pretrain_seconds=seconds[0] if seconds else None,
        classes=tuple(classes),
    )


def _cache_entry_sha256(cache: ArtifactCache, key: str) -> str | None:
    """The SHA-256 the cache recorded for its clean-model entry ``key``."""
    try:
        return json.loads(cache.paths("models", key)[1].read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        return None


def _describe(fingerprint: Any) -> str:
    """A dataset fingerprint in a few words, for error messages."""
    if not isinstance(fingerprint, dict):
        return repr(fingerprint)
    return (
        f"{fingerprint.get('name')} (train {fingerprint.get('train')}, "
        f"test {fingerprint.get('test')}, checksum {fingerprint.get('checksum')})"
    )


def _check_checkpoint_fits(
    meta: dict[str, Any], data: ImageData, settings: ModelSettings, where: str
) -> None:
    """The checkpoint must come from this dataset and this architecture; else one clear line."""
    missing = [key for key in ("model", "dataset", "test_accuracy") if key not in meta]
    if missing:
        raise ConfigError(
            f"{where} has no {', '.join(missing)} in its metadata; expected a file written by "
            "`frogs pretrain`"
        )
    expected = dataset_fingerprint(data)
    if meta.get("dataset") != expected:
        raise ConfigError(
            f"{where} was trained on {_describe(meta.get('dataset'))}, but this job's dataset is "
            f"{_describe(expected)}; expected a checkpoint written by `frogs pretrain` for this "
            "dataset"
        )
    written = meta.get("model") or {}
    for name in _ARCHITECTURE_FIELDS:
        # a knob this model's settings lack (model=alexnet_cifar has no arch) counts as null,
        # as checkpoints written before the model options had schemas of their own record it
        if name in written and written[name] != getattr(settings, name, None):
            raise ConfigError(
                f"{where} was written for model.{name}={written[name]!r}, but this job has "
                f"model.{name}={getattr(settings, name, None)!r}; expected the checkpoint's value"
            )


def rebuild_command(settings: ModelSettings, meta: dict[str, Any]) -> str:
    """The ``frogs pretrain`` command that writes the checkpoint again with this frogs, from the
    settings its metadata records (for errors about a checkpoint this frogs cannot load)."""
    written = meta.get("model") or {}
    pretrain = written.get("pretrain") or {}
    dataset = (meta.get("dataset") or {}).get("name", "DATASET")
    overrides = [f"dataset={dataset}", f"model={written.get('name', settings.name)}"]
    for name in ("arch", "feature_node", "in_channels"):
        if written.get(name) is not None:
            overrides.append(f"model.{name}={json.dumps(written[name])}")
    for name, value in (written.get("builder") or {}).items():  # kwargs are new keys: "+"
        plus = "" if name == "_target_" else "+"
        overrides.append(f"{plus}model.builder.{name}={json.dumps(value)}")
    overrides += [f"model.pretrain.{k}={json.dumps(v)}" for k, v in sorted(pretrain.items())]
    return f"frogs pretrain --out {settings.checkpoint} {' '.join(overrides)}"


def _from_checkpoint(data: ImageData, settings: ModelSettings, device: torch.device) -> CleanModel:
    """Load a verified ``frogs pretrain`` file into the configured network: no pretraining."""
    where = f"model.checkpoint={settings.checkpoint!r}"
    state, meta, digest = load_checkpoint(settings.checkpoint, settings.checkpoint_sha256)
    _check_checkpoint_fits(meta, data, settings, where)
    loaded = meta.get("loaded_weights")
    origin = replace(settings, weights=loaded)
    model = build_model(model_spec(data), origin, fetch_weights=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(
            f"{where} does not fit model.name={settings.name!r} ({reason}); expected a "
            "checkpoint written by `frogs pretrain` for this model. If it was written by an "
            f"older frogs whose network differs, rebuild it: {rebuild_command(settings, meta)}"
        ) from None
    pre = (meta.get("model") or {}).get("pretrain") or {}
    indices = None
    if pre.get("epochs", 0) > 0:
        recipe = PretrainSettings(
            train_per_class=pre.get("train_per_class"), seed=pre.get("seed", 0)
        )
        indices = pretrain_indices(data, recipe, meta.get("pretrain_classes"))
        if "train_size" in meta and meta["train_size"] != len(indices):
            raise ConfigError(
                f"{where} records {meta['train_size']} training images, but its recipe selects "
                f"{len(indices)} here; expected a checkpoint written by this version of frogs. "
                f"Rebuild it: {rebuild_command(settings, meta)}"
            )
    train_accuracy = meta.get("train_accuracy")
    return CleanModel(
        model=model.to(device).eval(),
        train_indices=indices,
        train_accuracy=None if train_accuracy is None else float(train_accuracy),
        test_accuracy=float(meta["test_accuracy"]),
        source="checkpoint",
        sha256=digest,
        loaded_weights=loaded,
        classes=tuple(meta.get("pretrain_classes") or range(len(data.class_names))),
    )
