"""Datasets as in-memory image tensors, found offline where possible (``dataset=`` group).

Every builder returns an ``ImageData``: float pixels in [0, 1], NCHW, both splits, class names and
the per-channel statistics the models normalise with. Small datasets stay as tensors in memory so
that crafting and retraining never touch a DataLoader.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import pickle
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from frogs.config.registry import Registry
from frogs.config.settings import DatasetSettings
from frogs.errors import ConfigError, DataNotFoundError
from frogs.interchange.safe_pickle import ARRAYS, safe_load
from frogs.store.atomic import atomic_write

log = logging.getLogger(__name__)

DATASETS: Registry = Registry("dataset", default_schema=DatasetSettings)


@dataclass(frozen=True)
class SyntheticDatasetSettings(DatasetSettings):
    """``dataset=synthetic``: tiny generated images (class prototypes plus noise) for tests;
    classes are named c0, c1, ..."""

    name: str = "synthetic"
    root: str = "unused"
    target_class: Any = "c0"
    base_class: Any = "c1"
    image_size: int | None = 16
    num_classes: int = 4
    channels: int = 3
    synthetic_train_per_class: int = 64
    synthetic_test_per_class: int = 32


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))


@dataclass(frozen=True)
class ImageData:
    """Both splits of a dataset as tensors, with what models and attacks need to know about it."""

    name: str
    class_names: tuple[str, ...]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    def class_index(self, name_or_index: str | int, what: str) -> int:
        """Resolve a class given by name or index; a bad one names the allowed values."""
        if isinstance(name_or_index, int) or str(name_or_index).isdigit():
            index = int(name_or_index)
            if 0 <= index < len(self.class_names):
                return index
        elif name_or_index in self.class_names:
            return self.class_names.index(name_or_index)
        raise ConfigError(
            f"{what}={name_or_index!r} is not a class of {self.name}; "
            f"expected one of {', '.join(self.class_names)} "
            f"(or an index 0..{len(self.class_names) - 1})"
        )


def expand_root(root: str | os.PathLike) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(str(root))))


def data_search_roots(settings: DatasetSettings) -> list[Path]:
    """The configured root first, then ``$FROGS_DATA`` (e.g. ``../shared/data``)."""
    roots = [expand_root(settings.root)]
    env_root = os.environ.get("FROGS_DATA")
    if env_root and expand_root(env_root) not in roots:
        roots.append(expand_root(env_root))
    return roots


def _stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


def _as_float_images(array: np.ndarray) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, C, H, W) as float NCHW pixels in [0, 1]."""
    tensor = torch.as_tensor(array)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    return tensor.contiguous().float().div_(255.0)


def make_image_data(
    name: str,
    class_names: Sequence[str],
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
) -> ImageData:
    mean, std = _stats(train[0][: min(len(train[0]), 10000)])
    return ImageData(
        name, tuple(class_names), train[0], train[1].long(), test[0], test[1].long(), mean, std
    )


def _missing(name: str, looked: Sequence[Path], how: str) -> DataNotFoundError:
    places = ", ".join(str(p) for p in looked)
    return DataNotFoundError(f"{name} not found (looked in: {places}). {how}")


def _fashion_mnist_raw_dir(settings: DatasetSettings) -> Path | None:
    """A ``FashionMNIST/raw`` folder with the unpacked files; unpacks Debian's copy if needed."""
    roots = data_search_roots(settings)
    for root in roots:
        raw = root / "FashionMNIST" / "raw"
        if all((raw / f).is_file() for f in FASHION_MNIST_FILES):
            return raw
    for source in [root / "fashion-mnist" for root in roots] + [DEBIAN_FASHION_MNIST]:
        if all((source / f"{f}.gz").is_file() for f in FASHION_MNIST_FILES):
            raw = roots[0] / "FashionMNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            for f in FASHION_MNIST_FILES:
                if not (raw / f).is_file():
                    with gzip.open(source / f"{f}.gz", "rb") as packed:
                        atomic_write(raw / f, functools.partial(shutil.copyfileobj, packed))
            log.info("unpacked Fashion-MNIST from %s into %s", source, raw)
            return raw
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST family's format: big-endian header, then uint8 values) as an array.

    Read directly rather than through torchvision, whose import costs a job a second or more."""
    raw = bytearray(path.read_bytes())  # writable, so tensors may share its memory
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(settings: DatasetSettings) -> ImageData:
    """Fashion-MNIST (28x28 grey): Debian's ``dataset-fashion-mnist``, a root, or a download."""
    raw = _fashion_mnist_raw_dir(settings)
    if raw is None and settings.download:
        from torchvision.datasets import FashionMNIST

        root = expand_root(settings.root)
        try:
            FashionMNIST(str(root), train=True, download=True)
        except Exception as exc:  # offline: torchvision raises URLError/RuntimeError
            raise _missing(
                "Fashion-MNIST",
                [*data_search_roots(settings), DEBIAN_FASHION_MNIST],
                f"Download failed ({exc.__class__.__name__}). Install Debian's package "
                "(apt-get install dataset-fashion-mnist) or set dataset.root / $FROGS_DATA.",
            ) from exc
        raw = root / "FashionMNIST" / "raw"
    elif raw is None:
        raise _missing(
            "Fashion-MNIST",
            [*data_search_roots(settings), DEBIAN_FASHION_MNIST],
            "Install Debian's package (apt-get install dataset-fashion-mnist), set dataset.root, "
            "or allow dataset.download=true when online.",
        )
    try:
        arrays = [read_idx(raw / name) for name in FASHION_MNIST_FILES]
    except (OSError, ValueError, IndexError) as exc:
        raise DataNotFoundError(
            f"Fashion-MNIST under {raw} is incomplete or corrupt ({exc}); expected the official "
            "IDX files"
        ) from exc
    splits = [(arrays[0], arrays[1]), (arrays[2], arrays[3])]
    return make_image_data(
        "fashion_mnist",
        FASHION_MNIST_CLASSES,
        *[(_as_float_images(x), torch.as_tensor(y.astype(np.int64))) for x, y in splits],
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR-10 batch as (N, 3, 32, 32) uint8 images and int64 labels."""
    batch = safe_load(path, ARRAYS, encoding="latin1")
    images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images, np.asarray(batch["labels"], dtype=np.int64)


@DATASETS.register("cifar10")
def load_cifar10(settings: DatasetSettings) -> ImageData:
    """CIFAR-10 (32x32 RGB) from a root with ``cifar-10-batches-py`` (``$FROGS_DATA``) or online
    (torchvision downloads it; the files are read directly, without importing torchvision)."""
    roots = data_search_roots(settings)
    root = next((r for r in roots if (r / "cifar-10-batches-py").is_dir()), None)
    if root is None:
        if not settings.download:
            raise _missing(
                "CIFAR-10",
                roots,
                "Set dataset.root or $FROGS_DATA to a folder holding cifar-10-batches-py, "
                "or allow dataset.download=true when online.",
            )
        from torchvision.datasets import CIFAR10

        root = roots[0]
        try:
            CIFAR10(str(root), train=True, download=True)
        except Exception as exc:
            raise _missing(
                "CIFAR-10",
                roots,
                f"Download failed ({exc.__class__.__name__}). Set dataset.root or $FROGS_DATA to a "
                "folder holding cifar-10-batches-py.",
            ) from exc
    folder = root / CIFAR10_FOLDER
    try:
        train = [_read_cifar_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
        test = _read_cifar_batch(folder / "test_batch")
        classes = safe_load(folder / "batches.meta", ARRAYS, encoding="latin1")["label_names"]
    except (OSError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as exc:
        raise DataNotFoundError(
            f"CIFAR-10 under {root} is incomplete or corrupt ({exc}); expected the official "
            "cifar-10-batches-py files"
        ) from exc
    splits = [
        (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
        test,
    ]
    return make_image_data(
        "cifar10",
        classes,
        *[(_as_float_images(x), torch.as_tensor(y)) for x, y in splits],
    )


@DATASETS.register("imagefolder")
def load_imagefolder(settings: DatasetSettings) -> ImageData:
    """Any folder ``root/{train,test}/<class>/<image>`` (e.g. an ImageNet dog-vs-fish subset)."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    root = expand_root(settings.root)
    test_name = next((n for n in ("test", "val") if (root / n).is_dir()), None)
    if not (root / "train").is_dir() or test_name is None:
        raise DataNotFoundError(
            f"imagefolder root {root} must hold train/ and test/ (or val/) folders of class "
            "subfolders; set dataset.root"
        )
    size = settings.image_size or 224
    transform = transforms.Compose(
        [transforms.Resize(size), transforms.CenterCrop(size), transforms.PILToTensor()]
    )
    splits = [ImageFolder(str(root / n), transform=transform) for n in ("train", test_name)]
    if splits[0].classes != splits[1].classes:
        raise DataNotFoundError(
            f"imagefolder {root}: train classes {splits[0].classes} differ from "
            f"{test_name} classes {splits[1].classes}"
        )
    tensors = []
    for split in splits:
        images = torch.stack([image for image, _ in split]).float().div_(255.0)
        tensors.append((images, torch.as_tensor(split.targets)))
    return make_image_data("imagefolder", splits[0].classes, *tensors)


@DATASETS.register("synthetic", SyntheticDatasetSettings)
def load_synthetic(settings: SyntheticDatasetSettings) -> ImageData:
    """Tiny class-conditional images (a smooth prototype per class plus noise), for unit tests."""
    size = settings.image_size or 16
    gen = torch.Generator().manual_seed(settings.subsample_seed)
    prototypes = torch.rand(settings.num_classes, settings.channels, 4, 4, generator=gen)
    prototypes = torch.nn.functional.interpolate(prototypes, size=(size, size), mode="bilinear")

    def split(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(settings.num_classes).repeat_interleave(per_class)
        noise = 0.15 * torch.randn(len(y), settings.channels, size, size, generator=gen)
        return (prototypes[y] + noise).clamp_(0, 1), y

    names = [f"c{i}" for i in range(settings.num_classes)]
    train = split(settings.synthetic_train_per_class)
    test = split(settings.synthetic_test_per_class)
    return make_image_data("synthetic", names, train, test)


def load_dataset(settings: DatasetSettings) -> ImageData:
    """Build the configured dataset through its registered builder."""
    return DATASETS.get(settings.name)(settings)


def per_class_subset(
    labels: torch.Tensor, classes: Sequence[int], per_class: int | None, seed: int
) -> torch.Tensor:
    """Indices of at most ``per_class`` examples of each class in ``classes``, seeded, sorted."""
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for c in classes:
        idx = torch.nonzero(labels == c).flatten()
        if per_class is not None and per_class < len(idx):
            idx = idx[torch.randperm(len(idx), generator=gen)[:per_class]]
        chosen.append(idx)
    return torch.cat(chosen).sort().values


def _image_digests(images: torch.Tensor) -> list[bytes]:
    """A digest of each image's 8-bit pixels (equal digests: equal images)."""
    levels = torch.round(images.clamp(0, 1) * 255).to(torch.uint8).reshape(len(images), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in levels.numpy()]


def duplicated_test_images(data: ImageData) -> torch.Tensor:
    """A mask over the test split: True where the test image also appears in the training split.

    The paper removes such duplicates before picking targets and measuring accuracy (footnote 3;
    the authors' code drops test images at feature distance 0 from a training image): a target
    that is also a training image of its true class cannot be poisoned fairly. Exact duplicates
    (equal 8-bit pixels); near-duplicates are left alone.
    """
    seen = set(_image_digests(data.train_x))
    return torch.tensor([digest in seen for digest in _image_digests(data.test_x)])
