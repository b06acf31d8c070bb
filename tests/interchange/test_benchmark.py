"""poisoning-benchmark's format: setups and trial folders round-trip, the benchmark's own
reading (plain ``pickle.load``) sees its layout, and malformed files and setups that do not fit
the dataset give one line naming the setup, file and value."""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image

from frogs.errors import ConfigError, DataNotFoundError
from frogs.interchange.benchmark import (
    BASE_INDICES_FILE,
    BENCHMARK_LINF_LIMIT_255,
    POISONS_FILE,
    TARGET_FILE,
    BenchmarkFormatError,
    Setup,
    check_setups,
    linf_255,
    read_setups,
    read_trial_poisons,
    write_setups,
    write_trial_poisons,
)
from frogs.interchange.safe_pickle import UnsafePickleError

GOOD = Setup(target_class=0, target_index=0, base_class=1, base_indices=(2, 3))
TRAIN_LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
TEST_LABELS = torch.tensor([0, 1, 2])
CLASSES = ("cat", "dog", "frog")


def test_setups_round_trip_in_the_benchmarks_structure(tmp_path):
    setups = [GOOD, Setup(2, 2, 0, (1, 0))]
    path = write_setups(tmp_path / "setups.pickle", setups)
    assert read_setups(path) == setups
    with open(path, "rb") as handle:
        raw = pickle.load(handle)  # as the benchmark reads it
    assert [set(entry) for entry in raw] == [
        {"target class", "target index", "base class", "base indices"}
    ] * 2
    assert raw[1]["target class"] == 2 and type(raw[1]["target class"]) is int
    assert isinstance(raw[1]["base indices"], np.ndarray)
    assert raw[1]["base indices"].dtype == np.int64 and raw[1]["base indices"].tolist() == [1, 0]


def test_numpy_integers_and_index_lists_are_accepted(tmp_path):
    entry = {
        "target class": np.int64(0),
        "target index": np.int32(0),
        "base class": 1,
        "base indices": [2, np.int64(3)],
    }
    path = tmp_path / "setups.pickle"
    path.write_bytes(pickle.dumps([entry]))
    assert read_setups(path) == [GOOD]


ENTRY = {"target class": 0, "target index": 0, "base class": 1, "base indices": np.array([2])}


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ({"a": 1}, ["holds {'a': 1} (dict)", "expected a non-empty list of setups"]),
        ([], ["expected a non-empty list"]),
        ([ENTRY, "x"], ["setups[1] is 'x' (str); expected a dict"]),
        (
            [ENTRY, {k: v for k, v in ENTRY.items() if k != "base class"}],
            ["setups[1] lacks 'base class' and has unexpected none; expected exactly the keys"],
        ),
        ([ENTRY, {**ENTRY, "extra": 1}], ["setups[1] lacks no key and has unexpected 'extra'"]),
        ([ENTRY, {**ENTRY, "target index": 2.0}], ["setups[1]['target index'] is 2.0 (float)"]),
        ([ENTRY, {**ENTRY, "base class": True}], ["setups[1]['base class'] is True (bool)"]),
        (
            [ENTRY, {**ENTRY, "base indices": np.zeros((1, 2), np.int64)}],
            ["setups[1]['base indices'] is", "expected a 1-D integer numpy array or a list"],
        ),
        ([ENTRY, {**ENTRY, "base indices": np.array([1.5])}], ["setups[1]['base indices']"]),
        ([ENTRY, {**ENTRY, "base indices": ["2"]}], ["setups[1]['base indices'] is ['2']"]),
    ],
)
def test_malformed_setups_name_the_entry_and_value(tmp_path, content, needles):
    path = tmp_path / "setups.pickle"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(BenchmarkFormatError) as caught:
        read_setups(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for needle in needles:
        assert needle in message


def test_a_hostile_setups_file_is_refused(tmp_path):
    path = tmp_path / "setups.pickle"
    path.write_bytes(b"cos\nsystem\n.")
    with pytest.raises(UnsafePickleError, match=r"refused to unpickle os\.system"):
        read_setups(path)


def test_fitting_setups_pass_the_check():
    check_setups(
        [GOOD, Setup(2, 2, 0, (1, 0))],
        train_labels=TRAIN_LABELS,
        test_labels=TEST_LABELS,
        class_names=CLASSES,
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            Setup(5, 0, 1, (2,)),
            "setups[1]: target class 5 is not a class of the dataset; expected one of 0=cat, "
            "1=dog, 2=frog",
        ),
        (Setup(0, 0, -1, (2,)), "setups[1]: base class -1 is not a class of the dataset"),
        (
            Setup(0, 3, 1, (2,)),
            "setups[1]: target index 3 is out of range of the test split (0..2)",
        ),
        (
            Setup(0, 1, 1, (2,)),
            "setups[1]: target index 1 has test label 1 (dog), not target class 0 (cat)",
        ),
        (
            Setup(0, 0, 1, (2, 6, -1)),
            "setups[1]: base index 6 is out of range of the training split (0..5) (and 1 more: -1)",
        ),
        (
            Setup(0, 0, 1, (2, 0)),
            "setups[1]: base index 0 has training label 0 (cat), not base class 1 (dog)",
        ),
        (Setup(0, 0, 1, (2, 3, 2)), "setups[1]: base index 2 appears more than once"),
        (Setup(0, 0, 1, ()), "setups[1]: no base indices"),
    ],
)
def test_setups_that_do_not_fit_the_dataset_are_config_errors(bad, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        check_setups(
            [GOOD, bad], train_labels=TRAIN_LABELS, test_labels=TEST_LABELS, class_names=CLASSES
        )


def write_trial(folder, channels: int = 3, seed: int = 0, **overrides):
    gen = torch.Generator().manual_seed(seed)
    arguments = {
        "poisons": torch.rand(3, channels, 4, 5, generator=gen),
        "poison_labels": 1,
        "base_indices": torch.tensor([7, 2, 9]),
        "target": torch.rand(channels, 4, 5, generator=gen),
        "target_label": 0,
        **overrides,
    }
    return write_trial_poisons(folder, **arguments), arguments


def eight_bit(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.double() * 255).float() / 255


@pytest.mark.parametrize("channels", [1, 3])
def test_trial_poisons_round_trip_as_8_bit_pixels(tmp_path, channels):
    files, written = write_trial(tmp_path, channels, poison_labels=torch.tensor([1, 1, 2]))
    assert files == [tmp_path / POISONS_FILE, tmp_path / BASE_INDICES_FILE, tmp_path / TARGET_FILE]
    trial = read_trial_poisons(tmp_path)
    assert trial.poisons.shape == (3, channels, 4, 5) and trial.poisons.dtype == torch.float32
    assert torch.equal(trial.poisons, eight_bit(written["poisons"]))
    assert torch.equal(trial.target, eight_bit(written["target"]))
    assert trial.poison_labels.tolist() == [1, 1, 2]
    assert trial.base_indices.tolist() == [7, 2, 9] and trial.base_indices.dtype == torch.int64
    assert trial.target_label == 0
    assert trial.files == tuple(files)
    assert re.fullmatch(r"[0-9a-f]{64}", trial.sha256)


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (3, "RGB")])
def test_the_benchmark_reads_the_layout_with_plain_pickle(tmp_path, channels, mode):
    write_trial(tmp_path, channels)
    with open(tmp_path / POISONS_FILE, "rb") as handle:
        poisons = pickle.load(handle)
    with open(tmp_path / BASE_INDICES_FILE, "rb") as handle:
        bases = pickle.load(handle)
    with open(tmp_path / TARGET_FILE, "rb") as handle:
        target = pickle.load(handle)
    assert isinstance(poisons, list) and len(poisons) == 3
    for item in poisons:
        assert isinstance(item, tuple) and len(item) == 2
        assert isinstance(item[0], Image.Image) and type(item[1]) is int
        assert item[0].mode == mode and item[0].size == (5, 4)
    assert isinstance(bases, np.ndarray) and bases.tolist() == [7, 2, 9]
    assert isinstance(target, tuple) and isinstance(target[0], Image.Image) and target[1] == 0


def test_the_digest_is_stable_and_follows_every_file(tmp_path):
    write_trial(tmp_path)
    first = read_trial_poisons(tmp_path).sha256
    assert read_trial_poisons(tmp_path).sha256 == first
    seen = {first}
    for overrides in [
        {"target_label": 2},
        {"base_indices": [7, 2, 8]},
        {"poison_labels": 2},
        {"poisons": torch.zeros(3, 3, 4, 5)},
    ]:
        write_trial(tmp_path, **overrides)
        seen.add(read_trial_poisons(tmp_path).sha256)
    assert len(seen) == 5


def rewrite(folder, name: str, content) -> None:
    (folder / name).write_bytes(pickle.dumps(content))


def test_a_missing_trial_file_is_data_not_found(tmp_path):
    write_trial(tmp_path)
    os.remove(tmp_path / TARGET_FILE)
    with pytest.raises(DataNotFoundError, match=f"^{re.escape(str(tmp_path / TARGET_FILE))}:"):
        read_trial_poisons(tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        (POISONS_FILE, {"a": 1}, "expected a non-empty list of (PIL image, int label) tuples"),
        (POISONS_FILE, [], "expected a non-empty list"),
        (POISONS_FILE, "image label", "expected a non-empty list"),
        (POISONS_FILE, [(Image.new("L", (5, 4)), "1")] * 3, "poisons[0] is"),
        (POISONS_FILE, [(Image.new("L", (5, 4)), 1, 2)] * 3, "poisons[0] is"),
        (POISONS_FILE, [np.zeros((4, 5))] * 3, "poisons[0] is array("),
        (BASE_INDICES_FILE, np.array([7.0, 2.0, 9.0]), "expected a 1-D integer numpy array"),
        (BASE_INDICES_FILE, np.array([7, 2]), "3 poisons but 2 base indices"),
        (TARGET_FILE, Image.new("RGB", (5, 4)), "expected a (PIL image, int label) tuple"),
        (TARGET_FILE, (Image.new("RGB", (5, 4)), 0, [0], [1, 1]), "triggered-backdoor target"),
        (TARGET_FILE, (Image.new("RGB", (6, 4)), 0), "images differ in mode or size"),
        (TARGET_FILE, (Image.new("L", (5, 4)), 0), "images differ in mode or size"),
        (
            POISONS_FILE,
            [(Image.new("RGBA", (5, 4)), 1)] * 3,
            "images differ in mode or size (RGB 5x4, RGBA 5x4)",
        ),
    ],
)
def test_malformed_trial_files_give_one_line(tmp_path, name, content, needle):
    write_trial(tmp_path)
    rewrite(tmp_path, name, content)
    with pytest.raises(BenchmarkFormatError) as caught:
        read_trial_poisons(tmp_path)
    message = str(caught.value)
    assert message.startswith(str(tmp_path)) and "\n" not in message
    assert needle in message


def test_images_of_one_unsupported_mode_are_named(tmp_path):
    write_trial(tmp_path)
    rewrite(tmp_path, POISONS_FILE, [(Image.new("RGBA", (5, 4)), 1)] * 3)
    rewrite(tmp_path, TARGET_FILE, (Image.new("RGBA", (5, 4)), 0))
    with pytest.raises(BenchmarkFormatError, match="PIL mode 'RGBA'; expected 'L'"):
        read_trial_poisons(tmp_path)


def test_a_hostile_poisons_file_is_refused(tmp_path):
    write_trial(tmp_path)
    (tmp_path / POISONS_FILE).write_bytes(b"\x80\x02c__builtin__\neval\n.")
    with pytest.raises(UnsafePickleError, match=r"poisons\.pickle: refused .*builtins\.eval"):
        read_trial_poisons(tmp_path)


def test_writing_refuses_pixels_outside_0_1_and_mismatched_counts(tmp_path):
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        write_trial(tmp_path, poisons=torch.full((3, 3, 4, 5), 1.5))
    with pytest.raises(ValueError, match="base_indices must be 3 integers"):
        write_trial(tmp_path, base_indices=[1, 2])
    with pytest.raises(ValueError, match="poison labels for 3 poisons"):
        write_trial(tmp_path, poison_labels=[1, 2])
    assert not list(tmp_path.iterdir())  # nothing written


def test_linf_255_and_the_benchmark_limit(tmp_path):
    bases = eight_bit(torch.rand(3, 3, 4, 5, generator=torch.Generator().manual_seed(1)))
    signs = torch.randint(0, 2, bases.shape, generator=torch.Generator().manual_seed(2)) * 2 - 1
    poisons = (bases + signs * 8 / 255).clamp(0, 1)
    poisons[0] = bases[0]
    distance = linf_255(poisons, bases)
    assert distance.shape == (3,) and distance[0] == 0
    assert torch.allclose(distance[1:], torch.full((2,), 8.0, dtype=torch.float64))
    write_trial(tmp_path, poisons=poisons)
    trial = read_trial_poisons(tmp_path)
    assert (linf_255(trial.poisons, bases) <= BENCHMARK_LINF_LIMIT_255).all()
    assert BENCHMARK_LINF_LIMIT_255 == 9
    with pytest.raises(ValueError, match="differ in shape"):
        linf_255(poisons, bases[:2])
