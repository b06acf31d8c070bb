"""The file format of poisoning-benchmark (aks2203/poisoning-benchmark, "Just How Toxic is Data
Poisoning?"), in which researchers exchange poison setups and crafted poisons.

Two kinds of file, both pickles (read here through ``frogs.interchange.safe_pickle`` only):

- A *setups* file: a list with one dict per trial, keys ``"target class"`` (int), ``"target
  index"`` (int, an index into the TEST split), ``"base class"`` (int) and ``"base indices"``
  (a numpy int array of indices into the TRAINING split). ``Setup`` is one entry.
- An attack's output, one folder per trial: ``poisons.pickle`` (a list of ``(PIL image,
  label)`` tuples, one per poison), ``base_indices.pickle`` (a numpy array of the bases'
  training indices, poison i being crafted from base i) and ``target.pickle`` (a ``(PIL image,
  label)`` tuple). ``BenchmarkTrial`` is one folder read back.

Units: frogs' pixels are float tensors in [0, 1], shape (N, C, H, W); the files hold 8-bit PIL
images, mode ``"L"`` for 1 channel and ``"RGB"`` for 3, converted by rounding ``x * 255`` (so a
pixel moves by at most 0.5/255). The benchmark accepts a poison when its L-inf distance from
its base is at most ``BENCHMARK_LINF_LIMIT_255`` / 255 (``linf_255``).

Indices, classes and labels are 0-based, as in the benchmark; ``setups[i]`` in a message is the
i-th entry of the file. Errors are one line naming the file: ``BenchmarkFormatError`` for a file
that does not have the structure above, ``DataNotFoundError`` for a missing file,
``UnsafePickleError`` for a pickle naming anything but arrays and images, ``ConfigError`` from
``check_setups`` for setups that do not fit the dataset.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from frogs.errors import ConfigError, DataNotFoundError, FrogsError
from frogs.interchange.safe_pickle import ARRAYS, INTERCHANGE, safe_load, safe_loads
from frogs.store.atomic import atomic_write

BENCHMARK_LINF_LIMIT_255 = 9
"""The largest L-inf distance, in 1/255 units, the benchmark accepts between a poison and its
base: its 8/255 budget plus one level for the 8-bit conversion (its ``poison_test.py`` asserts
``max <= 9/255`` to allow for torchvision's ``ToPILImage`` truncating instead of rounding)."""

PICKLE_PROTOCOL = 4
"""Protocol of the files frogs writes: readable by every Python 3 the benchmark runs on (3.4+),
unlike ``pickle.HIGHEST_PROTOCOL`` (5 needs 3.8)."""

POISONS_FILE = "poisons.pickle"
BASE_INDICES_FILE = "base_indices.pickle"
TARGET_FILE = "target.pickle"
TRIAL_FILES = (POISONS_FILE, BASE_INDICES_FILE, TARGET_FILE)
"""A trial folder's files, in the order ``BenchmarkTrial.sha256`` hashes them."""

SETUP_KEYS = ("target class", "target index", "base class", "base indices")
IMAGE_MODES = {1: "L", 3: "RGB"}
"""PIL mode of an image with that many channels."""


class BenchmarkFormatError(FrogsError, ValueError):
    """A file does not have poisoning-benchmark's structure; the message names the file, the
    entry and what is expected."""


@dataclass(frozen=True)
class Setup:
    """One trial of a setups file: poison ``target_index`` (test split), whose class is
    ``target_class``, with poisons crafted from the training images ``base_indices``, all of
    class ``base_class`` (the label the poisons keep and the target should get)."""

    target_class: int
    target_index: int
    base_class: int
    base_indices: tuple[int, ...]

    @property
    def num_poisons(self) -> int:
        return len(self.base_indices)


@dataclass(frozen=True, eq=False)
class BenchmarkTrial:
    """One trial folder read back.

    ``poisons``: float (N, C, H, W) in [0, 1], the 8-bit images divided by 255;
    ``poison_labels``, ``base_indices``: int64 (N,), poison i crafted from training image
    ``base_indices[i]``; ``target``: float (C, H, W) in [0, 1]; ``sha256``: hex digest of the
    three files (see ``trial_sha256``), to record which poisons a result came from; ``files``:
    the three paths in ``TRIAL_FILES`` order.
    """

    poisons: torch.Tensor
    poison_labels: torch.Tensor
    base_indices: torch.Tensor
    target: torch.Tensor
    target_label: int
    sha256: str
    files: tuple[Path, ...]


def _is_int(value: object) -> bool:
    """A Python or numpy integer, not a bool (which the benchmark never means as a label)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _show(value: object) -> str:
    """``value`` and its type, cut to fit in one line."""
    text = repr(value).replace("\n", " ")
    return f"{text[:60]}{'...' if len(text) > 60 else ''} ({type(value).__name__})"


def _index_array(value: object) -> np.ndarray | None:
    """``value`` as a 1-D int64 array if it is a 1-D integer numpy array (any numeric dtype
    when empty: ``np.array([])`` is float) or a list/tuple of integers; None otherwise."""
    if isinstance(value, np.ndarray):
        if value.ndim == 1 and (value.dtype.kind in "iu" or value.size == 0):
            return value.astype(np.int64)
        return None
    if isinstance(value, list | tuple) and all(_is_int(v) for v in value):
        try:
            return np.array(value, dtype=np.int64)
        except OverflowError:
            return None
    return None


def read_setups(path: str | os.PathLike[str]) -> list[Setup]:
    """The setups in a benchmark setups file, its structure checked (``check_setups`` checks
    them against a dataset). Only numpy arrays and plain values are unpickled."""
    raw = safe_load(path, ARRAYS)
    if not isinstance(raw, list | tuple) or not raw:
        raise BenchmarkFormatError(
            f"{path}: holds {_show(raw)}; expected a non-empty list of setups (dicts with keys "
            f"{', '.join(map(repr, SETUP_KEYS))})"
        )
    setups = []
    for i, entry in enumerate(raw):
        where = f"{path}: setups[{i}]"
        if not isinstance(entry, dict):
            raise BenchmarkFormatError(f"{where} is {_show(entry)}; expected a dict")
        if set(entry) != set(SETUP_KEYS):
            missing = [repr(k) for k in SETUP_KEYS if k not in entry]
            extra = [_short_key(k) for k in entry if k not in SETUP_KEYS]
            raise BenchmarkFormatError(
                f"{where} lacks {', '.join(missing) or 'no key'} and has unexpected "
                f"{', '.join(extra) or 'none'}; expected exactly the keys "
                f"{', '.join(map(repr, SETUP_KEYS))}"
            )
        for key in SETUP_KEYS[:3]:
            if not _is_int(entry[key]):
                raise BenchmarkFormatError(
                    f"{where}[{key!r}] is {_show(entry[key])}; expected an integer"
                )
        indices = _index_array(entry["base indices"])
        if indices is None:
            raise BenchmarkFormatError(
                f"{where}['base indices'] is {_show(entry['base indices'])}; expected a 1-D "
                "integer numpy array or a list of integers"
            )
        setups.append(
            Setup(
                int(entry["target class"]),
                int(entry["target index"]),
                int(entry["base class"]),
                tuple(indices.tolist()),
            )
        )
    return setups


def _short_key(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:40] + "..."


def _more(values: torch.Tensor) -> str:
    """ " (and 3 more: 5, 9, 12)" for the values after the first, the first few listed."""
    rest = [int(v) for v in values[1:]]
    if not rest:
        return ""
    listed = ", ".join(map(str, rest[:5])) + (", ..." if len(rest) > 5 else "")
    return f" (and {len(rest)} more: {listed})"


def check_setups(
    setups: Sequence[Setup],
    *,
    train_labels: torch.Tensor,
    test_labels: torch.Tensor,
    class_names: Sequence[str],
    names: Sequence[str] | None = None,
) -> None:
    """Check that every setup fits the dataset, raising a one-line ``ConfigError`` naming the
    first setup that does not, and why (as ``names[i]``, else ``setups[i]``).

    A setup fits when its classes are classes of the dataset, its target index is in the test
    split and has test label ``target_class``, and its base indices are non-empty, distinct,
    in the training split and all have training label ``base_class``. ``train_labels`` and
    ``test_labels`` are the splits' labels (1-D, as ``ImageData.train_y`` / ``test_y``).
    """
    num_classes = len(class_names)
    allowed = ", ".join(f"{i}={name}" for i, name in enumerate(class_names))

    def name(c: int) -> str:
        return f"{c} ({class_names[c]})"

    for i, setup in enumerate(setups):
        where = names[i] if names is not None else f"setups[{i}]"
        for what, c in (("target class", setup.target_class), ("base class", setup.base_class)):
            if not 0 <= c < num_classes:
                raise ConfigError(
                    f"{where}: {what} {c} is not a class of the dataset; expected one of {allowed}"
                )
        if not 0 <= setup.target_index < len(test_labels):
            raise ConfigError(
                f"{where}: target index {setup.target_index} is out of range of the test split "
                f"(0..{len(test_labels) - 1})"
            )
        label = int(test_labels[setup.target_index])
        if label != setup.target_class:
            raise ConfigError(
                f"{where}: target index {setup.target_index} has test label {name(label)}, "
                f"not target class {name(setup.target_class)}"
            )
        if not setup.base_indices:
            raise ConfigError(f"{where}: no base indices (expected at least one)")
        bases = torch.tensor(setup.base_indices, dtype=torch.int64)
        outside = bases[(bases < 0) | (bases >= len(train_labels))]
        if len(outside):
            raise ConfigError(
                f"{where}: base index {int(outside[0])} is out of range of the training split "
                f"(0..{len(train_labels) - 1}){_more(outside)}"
            )
        values, counts = torch.unique(bases, return_counts=True)
        repeated = values[counts > 1]
        if len(repeated):
            raise ConfigError(
                f"{where}: base index {int(repeated[0])} appears more than once{_more(repeated)}; "
                "expected distinct base indices, one per poison"
            )
        wrong = bases[train_labels[bases] != setup.base_class]
        if len(wrong):
            label = int(train_labels[wrong[0]])
            raise ConfigError(
                f"{where}: base index {int(wrong[0])} has training label {name(label)}, not "
                f"base class {name(setup.base_class)}{_more(wrong)}"
            )


def write_setups(path: str | os.PathLike[str], setups: Sequence[Setup]) -> Path:
    """Write ``setups`` as a benchmark setups file (atomically): a list of dicts with the four
    keys, ``"base indices"`` a numpy int64 array, as the benchmark's own files."""
    entries = [
        {
            "target class": int(s.target_class),
            "target index": int(s.target_index),
            "base class": int(s.base_class),
            "base indices": np.asarray(s.base_indices, dtype=np.int64),
        }
        for s in setups
    ]
    return atomic_write(path, pickle.dumps(entries, protocol=PICKLE_PROTOCOL))


def to_pil_images(images: torch.Tensor) -> list[Image.Image]:
    """Float (N, C, H, W) pixels in [0, 1], C 1 or 3, as 8-bit PIL images (mode ``"L"`` or
    ``"RGB"``), each pixel ``round(x * 255)``."""
    if images.ndim != 4 or images.shape[1] not in IMAGE_MODES:
        raise ValueError(f"expected images of shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    pixels = images.detach().cpu().double()
    if not torch.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
        raise ValueError("pixels must be finite and in [0, 1]")
    levels = torch.round(pixels * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if images.shape[1] == 1:
        levels = levels[..., 0]
    return [Image.fromarray(np.ascontiguousarray(level)) for level in levels]


def from_pil_images(images: Sequence[Image.Image], what: str = "images") -> torch.Tensor:
    """8-bit PIL images, all of one size and mode (``"L"`` or ``"RGB"``), as float (N, C, H, W)
    pixels in [0, 1]; ``what`` names them in a ``BenchmarkFormatError``."""
    kinds = sorted({(image.mode, image.size) for image in images})
    if len(kinds) > 1:
        shown = ", ".join(f"{mode} {w}x{h}" for mode, (w, h) in kinds[:4])
        raise BenchmarkFormatError(
            f"{what}: images differ in mode or size ({shown}); expected one mode and size"
        )
    if kinds and kinds[0][0] not in IMAGE_MODES.values():
        raise BenchmarkFormatError(
            f"{what}: images have PIL mode {kinds[0][0]!r}; expected 'L' (1 channel) or 'RGB'"
        )
    levels = torch.from_numpy(np.stack([np.asarray(image) for image in images]))
    if levels.ndim == 3:
        levels = levels.unsqueeze(-1)
    return levels.permute(0, 3, 1, 2).float().div_(255.0)


def _labels(labels: int | Sequence[int] | torch.Tensor, count: int) -> list[int]:
    """One Python int per poison, from one label or one per poison."""
    if _is_int(labels):
        return [int(labels)] * count
    values = torch.as_tensor(labels)
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise ValueError(f"poison labels must be integers, got {values.dtype}")
    if values.ndim != 1 or len(values) != count:
        raise ValueError(f"{tuple(values.shape)} poison labels for {count} poisons")
    return values.tolist()


def write_trial_poisons(
    folder: str | os.PathLike[str],
    *,
    poisons: torch.Tensor,
    poison_labels: int | Sequence[int] | torch.Tensor,
    base_indices: Sequence[int] | torch.Tensor | np.ndarray,
    target: torch.Tensor,
    target_label: int,
) -> list[Path]:
    """Write one trial's poisons in the benchmark's layout and return the three paths.

    ``poisons``: float (N, C, H, W) in [0, 1]; ``poison_labels``: one label for all or one per
    poison (the base class, for clean-label poisons); ``base_indices``: the N training indices
    the poisons were crafted from, in order; ``target``: float (C, H, W) in [0, 1]. Images are
    stored as 8-bit PIL images (``to_pil_images``). Each file is written atomically; a reader
    racing the writer may still see a new poisons file beside an old target (compare
    ``BenchmarkTrial.sha256``).
    """
    folder = Path(folder)
    images = to_pil_images(poisons)
    labels = _labels(poison_labels, len(images))
    if isinstance(base_indices, torch.Tensor):
        base_indices = base_indices.cpu().numpy()
    bases = _index_array(np.asarray(base_indices))
    if bases is None or len(bases) != len(images):
        raise ValueError(
            f"base_indices must be {len(images)} integers (one per poison), got "
            f"{_show(base_indices)}"
        )
    if target.shape != poisons.shape[1:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} differs from the poisons' "
            f"{tuple(poisons.shape[1:])}"
        )
    contents = {
        POISONS_FILE: list(zip(images, labels, strict=True)),
        BASE_INDICES_FILE: bases,
        TARGET_FILE: (to_pil_images(target.unsqueeze(0))[0], int(target_label)),
    }
    return [
        atomic_write(folder / name, pickle.dumps(contents[name], protocol=PICKLE_PROTOCOL))
        for name in TRIAL_FILES
    ]


def trial_sha256(contents: Sequence[bytes]) -> str:
    """Hex SHA-256 of a trial's files' bytes, in ``TRIAL_FILES`` order. Each file enters as
    its name, a NUL, its length (8 bytes, big-endian) and its bytes, so bytes moved from one
    file to the next change the digest."""
    digest = hashlib.sha256()
    for name, data in zip(TRIAL_FILES, contents, strict=True):
        digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def _image_and_label(item: Any) -> bool:
    return (
        isinstance(item, tuple | list)
        and len(item) == 2
        and isinstance(item[0], Image.Image)
        and _is_int(item[1])
    )


def read_trial_poisons(folder: str | os.PathLike[str]) -> BenchmarkTrial:
    """Read one trial folder in the benchmark's layout (see the module docstring), checking its
    structure: a non-empty list of (image, int) tuples, as many base indices as poisons, a
    (image, int) target, all images of one size and mode. Each file is read once, so the
    digest is of exactly the bytes that were unpickled. Triggered-backdoor targets
    (image, label, patch, [x, y]) are not supported."""
    folder = Path(folder)
    files = tuple(folder / name for name in TRIAL_FILES)
    contents = []
    for path in files:
        try:
            contents.append(path.read_bytes())
        except OSError as exc:
            raise DataNotFoundError(
                f"{path}: cannot read ({exc.strerror or exc}); a benchmark trial folder holds "
                f"{', '.join(TRIAL_FILES)}"
            ) from exc
    poisons, bases, target = (
        safe_loads(data, INTERCHANGE, source=str(path))
        for data, path in zip(contents, files, strict=True)
    )

    if not isinstance(poisons, list | tuple) or not poisons:
        raise BenchmarkFormatError(
            f"{files[0]}: holds {_show(poisons)}; expected a non-empty list of "
            "(PIL image, int label) tuples"
        )
    bad = next((i for i, item in enumerate(poisons) if not _image_and_label(item)), None)
    if bad is not None:
        raise BenchmarkFormatError(
            f"{files[0]}: poisons[{bad}] is {_show(poisons[bad])}; expected a "
            "(PIL image, int label) tuple"
        )
    indices = _index_array(bases)
    if indices is None:
        raise BenchmarkFormatError(
            f"{files[1]}: holds {_show(bases)}; expected a 1-D integer numpy array or a list "
            "of integers"
        )
    if len(indices) != len(poisons):
        raise BenchmarkFormatError(
            f"{folder}: {len(poisons)} poisons but {len(indices)} base indices; expected one "
            "base index per poison, in the same order"
        )
    if isinstance(target, tuple | list) and len(target) == 4:
        raise BenchmarkFormatError(
            f"{files[2]}: a triggered-backdoor target (image, label, patch, [x, y]); only "
            "(PIL image, int label) targets are supported"
        )
    if not _image_and_label(target):
        raise BenchmarkFormatError(
            f"{files[2]}: holds {_show(target)}; expected a (PIL image, int label) tuple"
        )
    images = from_pil_images(
        [image for image, _ in poisons] + [target[0]], f"{folder} (poisons and target)"
    )
    return BenchmarkTrial(
        poisons=images[:-1],
        poison_labels=torch.tensor([int(label) for _, label in poisons], dtype=torch.int64),
        base_indices=torch.from_numpy(indices),
        target=images[-1],
        target_label=int(target[1]),
        sha256=trial_sha256(contents),
        files=files,
    )


def linf_255(poisons: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
    """Per-poison L-inf distance from its base in 1/255 units (float64, shape (N,)), for
    pixels in [0, 1] of equal shape (N, C, H, W). The benchmark accepts a trial when every
    value is at most ``BENCHMARK_LINF_LIMIT_255``."""
    if poisons.shape != bases.shape:
        raise ValueError(
            f"poisons {tuple(poisons.shape)} and bases {tuple(bases.shape)} differ in shape"
        )
    return (poisons.double() - bases.double()).abs().flatten(1).amax(dim=1) * 255
