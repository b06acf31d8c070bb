"""Datasets: offline discovery, class resolution, subsampling, image folders, the victim task."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from frogs.config.settings import DatasetSettings
from frogs.data.datasets import SyntheticDatasetSettings, load_dataset, per_class_subset
from frogs.data.task import resolve_task
from frogs.errors import ConfigError, DataNotFoundError
from tests.conftest import requires_fashion_mnist


def synthetic(**overrides) -> SyntheticDatasetSettings:
    return SyntheticDatasetSettings(**overrides)


def test_synthetic_is_in_range_and_deterministic():
    first, second = load_dataset(synthetic()), load_dataset(synthetic())
    assert torch.equal(first.train_x, second.train_x)
    assert first.train_x.min() >= 0 and first.train_x.max() <= 1
    assert first.class_names == ("c0", "c1", "c2", "c3")


def test_class_index_by_name_or_index_and_clear_errors():
    data = load_dataset(synthetic())
    assert data.class_index("c2", "x") == 2
    assert data.class_index(3, "x") == 3
    assert data.class_index("1", "x") == 1
    with pytest.raises(ConfigError, match=r"dataset.target_class='zebra' is not a class"):
        data.class_index("zebra", "dataset.target_class")
    with pytest.raises(ConfigError, match=r"index 0\.\.3"):
        data.class_index(7, "dataset.base_class")


def test_task_classes_pair_all_and_list():
    data = load_dataset(synthetic())
    pair = resolve_task(data, synthetic(), "pair")
    assert pair.classes == (0, 1) and pair.target_row == 0 and pair.base_row == 1
    assert resolve_task(data, synthetic(), "all").classes == (0, 1, 2, 3)
    three_way = resolve_task(data, synthetic(task_classes=["c1", "c0", "c3"]), "pair")
    assert three_way.classes == (1, 0, 3) and three_way.base_row == 0
    labels = torch.tensor([3, 1, 0])
    assert three_way.to_task_labels(labels).tolist() == [2, 0, 1]
    with pytest.raises(ConfigError, match=r"must include dataset\.base_class"):
        resolve_task(data, synthetic(task_classes=["c0", "c2"]), "pair")
    with pytest.raises(ConfigError, match="both 'c0'"):
        resolve_task(data, synthetic(base_class="c0"), "pair")


def test_per_class_subset_is_balanced_and_seeded():
    labels = torch.arange(4).repeat_interleave(25)
    chosen = per_class_subset(labels, [1, 3], 10, seed=0)
    assert torch.bincount(labels[chosen], minlength=4).tolist() == [0, 10, 0, 10]
    assert torch.equal(chosen, per_class_subset(labels, [1, 3], 10, seed=0))
    assert not torch.equal(chosen, per_class_subset(labels, [1, 3], 10, seed=1))


def test_imagefolder_reads_class_subfolders(tmp_path):
    colours = {"dog": (200, 40, 40), "fish": (40, 40, 200)}
    for split in ("train", "test"):
        for name, colour in colours.items():
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (20, 24), colour).save(folder / f"{i}.png")
    data = load_dataset(
        DatasetSettings(
            name="imagefolder",
            root=str(tmp_path),
            image_size=16,
            target_class="dog",
            base_class="fish",
        )
    )
    assert data.class_names == ("dog", "fish")
    assert data.train_x.shape == (6, 3, 16, 16) and data.test_x.shape == (6, 3, 16, 16)
    assert data.train_x[0, 0].mean() > data.train_x[0, 2].mean()  # dogs are red here


def test_missing_roots_say_how_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.delenv("FROGS_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        load_dataset(DatasetSettings(name="cifar10", root=str(tmp_path), download=False))
    with pytest.raises(DataNotFoundError, match="train/ and test/"):
        load_dataset(DatasetSettings(name="imagefolder", root=str(tmp_path)))


@requires_fashion_mnist
def test_fashion_mnist_found_offline_from_debian(tmp_path, monkeypatch):
    monkeypatch.delenv("FROGS_DATA", raising=False)
    data = load_dataset(DatasetSettings(root=str(tmp_path), download=False))
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert "Ankle boot" in data.class_names
    assert (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_test_images_that_duplicate_training_images_are_found():
    """Footnote 3: exact (8-bit) duplicates between the splits are flagged, nothing else."""
    from frogs.data.datasets import duplicated_test_images, make_image_data

    gen = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (20, 1, 6, 6), generator=gen).float() / 255
    test = torch.randint(0, 256, (6, 1, 6, 6), generator=gen).float() / 255
    test[1], test[4] = train[3], train[17]
    test[2] = (train[5] + 1 / 255).clamp(0, 1)  # a near-duplicate is not an exact one
    data = make_image_data("t", ["a", "b"], (train, torch.zeros(20)), (test, torch.zeros(6)))
    assert duplicated_test_images(data).tolist() == [False, True, False, False, True, False]
