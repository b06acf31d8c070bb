"""Shared fixtures: the session's one warm cache and each test's private copy of it, tiny synthetic
settings, CIFAR-10 and Fashion-MNIST availability; and the strict records reader of the tests
(``whole_records``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from frogs.attacks import CraftingProblem, attack_budget
from frogs.attacks.feature_collision import FeatureCollisionSettings
from frogs.config.compose import compose_settings
from frogs.config.settings import JobSettings, updated
from frogs.data.datasets import SyntheticDatasetSettings
from frogs.defenses.none import NoDefenseSettings
from frogs.experiment.prepare import prepare_job
from frogs.experiment.run import run
from frogs.store.records import read_records
from frogs.victims.end_to_end import EndToEndSettings
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


def synthetic_job(cache: Path) -> JobSettings:
    """A job on tiny synthetic data that runs in about a second on a CPU, caching in ``cache``."""
    settings = JobSettings(
        attack=FeatureCollisionSettings(),
        victim=TransferSettings(),
        defense=NoDefenseSettings(),
        dataset=SyntheticDatasetSettings(train_per_class=None),
        trials=2,
        device="cpu",
        cache_dir=str(cache),
        progress=False,
    )
    return updated(
        settings,
        {
            "model.pretrain.epochs": 3,
            "model.pretrain.train_per_class": None,
            "attack.iters": 30,
            "victim.epochs": 5,
        },
    )


# A tiny synthetic job as the CLI composes it (the reliability and interchange suites' job);
# explicit top-level keys so nothing depends on how debug=smoke composes.
TINY = [
    "dataset=synthetic",
    "debug=smoke",
    "dataset.train_per_class=null",
    "device=cpu",
    "threads=1",
    "progress=false",
    "save_poisons=false",
]


def tiny_settings(*overrides: str) -> JobSettings:
    """The TINY job's settings as the CLI composes them, for in-process runs."""
    return compose_settings([*TINY, *overrides])


def _warm(cache: Path, scratch: Path) -> None:
    """Fill ``cache`` with what most tests load: the clean models, features and heads of the
    synthetic job (its own task and all classes, transfer and end-to-end) and of one TINY
    trial."""
    jobs = [synthetic_job(cache)]
    jobs.append(updated(jobs[0], {"dataset.task_classes": "all"}))
    jobs.append(replace(jobs[0], victim=EndToEndSettings(epochs=1, lr=1e-4, batch_size=32)))
    for settings in jobs:
        prepare_job(settings, torch.device("cpu"))
    run(tiny_settings("trials=1", f"cache_dir={cache}"), scratch)


@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory) -> Path:
    """The test session's one cache, warmed once (``_warm``) and never written by a test: every
    test works on a private copy (``cache``, or a module's ``module_cache``), so a test may
    corrupt, fill or count the misses of its copy without touching another test's.

    Under pytest-xdist the workers share it: the first to arrive builds it under a lock (in a
    scratch folder renamed into place), the others wait and reuse it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder all workers' base temp folders live in
    path = root / "warm-cache"
    with FileLock(str(root / "warm-cache.lock")):
        if not path.is_dir():
            building = Path(tempfile.mkdtemp(prefix=".warm-cache-", dir=root))
            _warm(building / "cache", building / "run")
            (building / "cache").rename(path)
            shutil.rmtree(building)
    return path


def copy_cache(source: Path, target: Path) -> Path:
    """A private copy of a warm cache (entries are immutable; locks are not copied)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.lock"))
    return target


@pytest.fixture
def cache(warm_cache: Path, tmp_path: Path) -> Path:
    """A private copy of the session's warm cache for one test."""
    return copy_cache(warm_cache, tmp_path / "cache")


@pytest.fixture(scope="module")
def module_cache(warm_cache: Path, tmp_path_factory) -> Path:
    """A copy of the warm cache shared by one file's tests, for files whose tests deliberately
    share what the first of them builds (a model trained once for the file)."""
    return copy_cache(warm_cache, tmp_path_factory.mktemp("module") / "cache")


@pytest.fixture
def synthetic_settings(cache: Path) -> JobSettings:
    """The synthetic job (``synthetic_job``) on the test's private copy of the warm cache."""
    return synthetic_job(cache)


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
