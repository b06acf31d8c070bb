"""Shared fixtures: tiny synthetic settings, a private cache, Fashion-MNIST availability; and the
strict records reader of the tests (``whole_records``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from frogs.attacks import CraftingProblem, attack_budget
from frogs.attacks.feature_collision import FeatureCollisionSettings
from frogs.config.settings import JobSettings, updated
from frogs.data.datasets import SyntheticDatasetSettings
from frogs.defenses.none import NoDefenseSettings
from frogs.store.records import read_records
from frogs.victims.transfer import TransferSettings


def whole_records(path: Path) -> list[dict]:
    """The records of one ``results.jsonl`` (none when it does not exist), read by frogs' one
    reader, asserting that every line is a whole record ending in a newline."""
    read = read_records(path)
    assert not read.malformed, f"{path}: malformed line(s) {list(read.malformed)}"
    assert not read.truncated, f"{path} ends in a partial line"
    return list(read.records)


FASHION_MNIST_DIRS = [Path("/usr/share/datasets/fashion-mnist")]


def fashion_mnist_available() -> bool:
    return any((d / "train-images-idx3-ubyte.gz").is_file() for d in FASHION_MNIST_DIRS)


requires_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_available() and not os.environ.get("CI"),
    reason="Fashion-MNIST missing: apt-get install dataset-fashion-mnist",
)


CIFAR10_ROOTS = [Path(p) for p in (os.environ.get("FROGS_DATA"),) if p] + [
    Path(__file__).resolve().parents[2] / "shared" / "data"
]


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """A folder holding ``cifar-10-batches-py`` (``$FROGS_DATA`` or ``../shared/data``); the
    tests that need it skip without it, except in CI, where they fail."""
    for root in CIFAR10_ROOTS:
        if (root / "cifar-10-batches-py").is_dir():
            return root
    if os.environ.get("CI"):
        pytest.fail(f"CIFAR-10 not found in {CIFAR10_ROOTS}; CI must have ../shared/data")
    pytest.skip("CIFAR-10 missing: set FROGS_DATA to a folder with cifar-10-batches-py")


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One cache for the whole test session, so the clean models are trained once."""
    return tmp_path_factory.mktemp("frogs-cache")


@pytest.fixture
def synthetic_settings(session_cache: Path) -> JobSettings:
    """A job on tiny synthetic data that runs in about a second on a CPU."""
    settings = JobSettings(
        attack=FeatureCollisionSettings(),
        victim=TransferSettings(),
        defense=NoDefenseSettings(),
        dataset=SyntheticDatasetSettings(train_per_class=None),
        trials=2,
        device="cpu",
        cache_dir=str(session_cache),
        progress=False,
    )
    settings = updated(
        settings,
        {
            "model.pretrain.epochs": 3,
            "model.pretrain.train_per_class": None,
            "attack.iters": 30,
            "victim.epochs": 5,
        },
    )
    return settings


def tiny_conv_features(
    channels: int = 8, features: int = 16, dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """A fixed small conv feature map on 3x8x8 images (seed 0, frozen, eval mode)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, channels, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(channels * 8 * 8, features),
        torch.nn.ReLU(),
    ).to(dtype)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


@pytest.fixture
def tiny_feature_fn():
    """A fixed small conv feature map (deterministic), for crafting tests without training."""
    return tiny_conv_features()


def crafting_problem(settings, feature_fn, target, bases, extractors=None) -> CraftingProblem:
    """What the experiment hands an attack, built directly for unit tests of one attack."""
    return CraftingProblem(
        target=target,
        bases=bases,
        target_label=0,
        base_label=1,
        extractors=extractors or [feature_fn],
        victim_features=feature_fn,
        budget=attack_budget(settings),
        device=target.device,
    )
