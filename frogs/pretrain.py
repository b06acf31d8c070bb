"""The clean model: torchvision weights where configured and available, else trained by frogs;
cached by config hash so that every later job of a sweep reuses it."""

from __future__ import annotations

import logging

import torch

from frogs.cache import ArtifactCache
from frogs.data import ImageData, per_class_subset
from frogs.models import FeatureClassifier, ModelSpec, build_model
from frogs.records import stable_hash
from frogs.settings import ModelSettings
from frogs.train import fit, predict_in_batches

log = logging.getLogger(__name__)


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


def clean_model_key(data: ImageData, settings: ModelSettings) -> str:
    from dataclasses import asdict

    return stable_hash({"model": asdict(settings), "data": dataset_fingerprint(data)})


def accuracy(model: FeatureClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    logits = predict_in_batches(model, x)
    return float((logits.argmax(1).cpu() == y.cpu()).float().mean())


def load_clean_model(
    data: ImageData,
    settings: ModelSettings,
    cache: ArtifactCache,
    device: torch.device,
    progress: bool = False,
) -> FeatureClassifier:
    """The clean (pretrained) model on ``device`` in eval mode, from the cache or built once."""
    spec = model_spec(data)

    def build() -> dict[str, torch.Tensor]:
        torch.manual_seed(settings.pretrain.seed)
        model = build_model(spec, settings).to(device)
        if settings.pretrain.epochs > 0:
            idx = per_class_subset(
                data.train_y,
                range(spec.num_classes),
                settings.pretrain.train_per_class,
                settings.pretrain.seed,
            )
            log.info("pretraining %s on %d %s images", settings.name, len(idx), data.name)
            fit(
                model,
                data.train_x[idx].to(device),
                data.train_y[idx].to(device),
                epochs=settings.pretrain.epochs,
                lr=settings.pretrain.lr,
                batch_size=settings.pretrain.batch_size,
                weight_decay=settings.pretrain.weight_decay,
                generator=torch.Generator().manual_seed(settings.pretrain.seed),
                progress="pretrain" if progress else None,
            )
        model.eval()
        acc = accuracy(model, data.test_x.to(device), data.test_y)
        log.info("clean %s test accuracy on %s: %.4f", settings.name, data.name, acc)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        state["__test_accuracy__"] = torch.tensor(acc)
        return state

    key = clean_model_key(data, settings)
    state = dict(cache.get_or_build("models", key, build, meta={"model": settings.name}))
    state.pop("__test_accuracy__", None)
    model = build_model(spec, settings)
    model.load_state_dict(state)
    return model.to(device).eval()
