"""The restricted unpickler: hostile pickles are refused by name and never run, broken files
give one line naming the path, arrays and PIL images load under every protocol, and CIFAR-10
batches (Python 2 pickles) still load through it."""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from frogs.config.settings import DatasetSettings
from frogs.data.datasets import _read_cifar_batch, load_cifar10
from frogs.errors import DataNotFoundError, FrogsError
from frogs.interchange.safe_pickle import (
    ARRAYS,
    INTERCHANGE,
    UnsafePickleError,
    safe_load,
    safe_loads,
)

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


class RunsCommand:
    """Unpickled by plain ``pickle``, this would run ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def short_unicode(text: str) -> bytes:
    """Protocol 4's SHORT_BINUNICODE opcode pushing ``text``."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def stack_global(module: str, name: str) -> bytes:
    """A protocol 4 pickle that only looks up ``module.name`` (STACK_GLOBAL) and returns it."""
    return b"\x80\x04" + short_unicode(module) + short_unicode(name) + b"\x93."


def refusal(tmp_path: Path, data: bytes, allowed=INTERCHANGE) -> str:
    path = tmp_path / "hostile.pickle"
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError) as caught:
        safe_load(path, allowed)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_command_in_reduce_is_refused_and_never_run(tmp_path, protocol):
    marker = tmp_path / "executed"
    message = refusal(tmp_path, pickle.dumps(RunsCommand(marker), protocol=protocol))
    assert "refused to unpickle posix.system" in message or "os.system" in message
    assert "(allowed: numpy arrays and scalars, PIL images, lists, tuples, dicts" in message
    assert not marker.exists()


def test_the_error_is_a_frogs_error_and_an_unpickling_error(tmp_path):
    path = tmp_path / "x.pickle"
    path.write_bytes(pickle.dumps(RunsCommand(tmp_path / "executed")))
    with pytest.raises(FrogsError):
        safe_load(path)
    with pytest.raises(pickle.UnpicklingError):
        safe_load(path)


def test_naming_a_global_without_calling_it_is_refused(tmp_path):
    message = refusal(tmp_path, b"cos\nsystem\n.")  # GLOBAL os.system, STOP
    assert "refused to unpickle os.system (allowed:" in message


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_builtins_eval_is_refused(tmp_path, protocol):
    # protocols 0-2 spell it __builtin__.eval; the message gives the Python 3 name
    message = refusal(tmp_path, pickle.dumps(eval, protocol=protocol))
    assert "refused to unpickle builtins.eval" in message


def test_an_attribute_of_an_allowed_global_is_refused(tmp_path):
    message = refusal(tmp_path, stack_global("builtins", "object.__subclasses__"))
    assert "builtins.object.__subclasses__" in message


def test_a_name_with_a_newline_still_gives_one_line(tmp_path):
    message = refusal(tmp_path, stack_global("os\nsystem", "x"))
    assert "refused to unpickle 'os\\nsystem'.x" in message


@pytest.mark.parametrize(
    ("data", "named"),
    [
        # _codecs.encode("x", "rot13"): only (str, "latin1") rebuilds bytes
        (
            b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.",
            "_codecs.encode('x', 'rot13')",
        ),
        # copyreg._reconstructor(numpy.dtype, object, None): only PIL images go this way
        (
            b"ccopy_reg\n_reconstructor\n(cnumpy\ndtype\nc__builtin__\nobject\nNtR.",
            "copyreg._reconstructor(<class 'numpy.dtype'>, <class 'object'>, None)",
        ),
        (b"c__builtin__\nbytes\n(I100\ntR.", "builtins.bytes(100)"),  # only bytes() is b""
    ],
)
def test_guarded_helpers_refuse_other_arguments(tmp_path, data, named):
    assert f"refused to unpickle {named} (allowed:" in refusal(tmp_path, data)


def test_arrays_refuse_images(tmp_path):
    image = Image.new("RGB", (2, 2))
    message = refusal(tmp_path, pickle.dumps(image, protocol=4), ARRAYS)
    assert "refused to unpickle PIL.Image.Image (allowed: numpy arrays and scalars, lists" in (
        message
    )


@pytest.mark.parametrize(
    "data", [pickle.dumps([np.arange(50), "x" * 100], protocol=4)[:60], b"not a pickle\n", b""]
)
def test_a_truncated_or_corrupt_file_gives_one_line_naming_it(tmp_path, data):
    assert "truncated or corrupt pickle" in refusal(tmp_path, data)


def test_a_missing_file_is_data_not_found(tmp_path):
    path = tmp_path / "absent.pickle"
    with pytest.raises(DataNotFoundError, match=f"^{path}: cannot read"):
        safe_load(path)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_arrays_scalars_and_images_load_under_every_protocol(protocol):
    rgb = Image.fromarray(np.arange(24, dtype=np.uint8).reshape(2, 4, 3))
    grey = Image.fromarray(np.arange(8, dtype=np.uint8).reshape(2, 4))
    png = io.BytesIO()
    rgb.save(png, "PNG")
    opened = Image.open(io.BytesIO(png.getvalue()))  # a PngImageFile
    opened.load()
    data = {
        "images": [(rgb, 1), (grey, np.int64(2)), opened],
        "arrays": [np.arange(3), np.zeros(0, np.uint8), np.array([1, "a"], dtype=object)],
        "plain": (np.float32(1.5), b"", b"\xff", 3.0, None, True),
    }
    loaded = safe_loads(pickle.dumps(data, protocol=protocol))
    (rgb2, one), (grey2, two), opened2 = loaded["images"]
    assert (rgb2.mode, grey2.mode, one, two) == ("RGB", "L", 1, 2)
    assert type(opened2) is Image.Image  # read as a plain in-memory image
    for before, after in [(rgb, rgb2), (grey, grey2), (rgb, opened2)]:
        assert np.array_equal(np.asarray(after), np.asarray(before))
    for before, after in zip(data["arrays"], loaded["arrays"], strict=True):
        assert np.array_equal(after, before) and after.dtype == before.dtype
    assert loaded["plain"] == data["plain"]


# --- CIFAR-10 batches: Python 2 pickles, read with encoding="latin1" -------------------------


def py2_string(data: bytes) -> bytes:
    """A Python 2 ``str`` (BINSTRING): decoded with latin1 by the Python 3 unpickler."""
    return b"T" + struct.pack("<i", len(data)) + data


def py2_uint8_array(array: np.ndarray) -> bytes:
    """A C-contiguous uint8 array as numpy 1 on Python 2 pickles it (protocol 2)."""
    shape = b"".join(b"J" + struct.pack("<i", n) for n in array.shape)
    return (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + py2_string(b"b")
        + b"\x87R(K\x01(" + shape + b"tcnumpy\ndtype\n" + py2_string(b"u1")
        + b"K\x00K\x01\x87R(K\x03" + py2_string(b"|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
        + py2_string(array.tobytes()) + b"tb"
    )  # fmt: skip


def py2_dict(items: dict[bytes, bytes]) -> bytes:
    """A Python 2 protocol 2 pickle of a dict of str keys to already-pickled values."""
    body = b"".join(py2_string(key) + value for key, value in items.items())
    return b"\x80\x02}(" + body + b"u."


def py2_batch(images: np.ndarray, labels: list[int]) -> bytes:
    label_list = b"](" + b"".join(b"K" + bytes([label]) for label in labels) + b"e"
    return py2_dict(
        {
            b"batch_label": py2_string(b"training batch 1 of 5"),
            b"labels": label_list,
            b"data": py2_uint8_array(images.reshape(len(images), -1)),
        }
    )


def test_a_python2_cifar_batch_reads_through_the_new_unpickler(tmp_path):
    images = np.arange(2 * 3 * 32 * 32, dtype=np.uint32).astype(np.uint8).reshape(2, 3, 32, 32)
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_batch(images, [3, 9]))
    # the hand-written bytes are what a plain latin1 load of a CIFAR-10 batch sees
    assert pickle.loads(path.read_bytes(), encoding="latin1")["labels"] == [3, 9]
    read_images, read_labels = _read_cifar_batch(path)
    assert np.array_equal(read_images, images) and read_images.dtype == np.uint8
    assert read_labels.tolist() == [3, 9] and read_labels.dtype == np.int64


def test_load_cifar10_on_tiny_synthetic_batches(tmp_path, monkeypatch):
    monkeypatch.delenv("FROGS_DATA", raising=False)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
        (folder / name).write_bytes(py2_batch(batches[name], [1, 2]))
    names = [f"class{i}".encode() for i in range(10)]
    meta = b"](" + b"".join(py2_string(n) for n in names) + b"e"
    (folder / "batches.meta").write_bytes(py2_dict({b"label_names": meta}))

    data = load_cifar10(DatasetSettings(name="cifar10", root=str(tmp_path), download=False))
    train = np.concatenate([batches[f"data_batch_{i}"] for i in range(1, 6)])
    assert torch.equal(data.train_x, torch.from_numpy(train).float() / 255)
    assert torch.equal(data.test_x, torch.from_numpy(batches["test_batch"]).float() / 255)
    assert data.train_y.tolist() == [1, 2] * 5 and data.test_y.dtype == torch.int64
    assert data.class_names == tuple(f"class{i}" for i in range(10))


def test_a_hostile_cifar_batch_is_reported_as_corrupt(tmp_path, monkeypatch):
    monkeypatch.delenv("FROGS_DATA", raising=False)
    marker = tmp_path / "executed"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps(RunsCommand(marker), protocol=2))
    settings = DatasetSettings(name="cifar10", root=str(tmp_path), download=False)
    refused = r"corrupt .*refused to unpickle (posix|os)\.system"
    with pytest.raises(DataNotFoundError, match=refused):
        load_cifar10(settings)
    assert not marker.exists()
