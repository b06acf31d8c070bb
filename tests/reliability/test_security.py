"""Nothing from a dataset, cache entry or record is executed: tensors load with weights_only=True,
records are JSON, and hostile pickles are rejected (the cache case is in test_corrupt_cache)."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest

from frogs.config.settings import DatasetSettings
from frogs.errors import DataNotFoundError
from frogs.store.records import RecordWriter
from tests.reliability.conftest import REPO

PACKAGES = ("frogs", "analysis")


def python_files() -> list[Path]:
    files = [f for package in PACKAGES for f in sorted((REPO / package).rglob("*.py"))]
    assert any(f.parent.name == "frogs" for f in files)
    return files


def calls(tree: ast.AST, module: str, function: str) -> list[ast.Call]:
    """Calls spelled ``module.function(...)`` (e.g. ``torch.load``)."""
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == function
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == module
    ]


def keyword_is_true(call: ast.Call, name: str) -> bool:
    return any(
        k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in call.keywords
    )


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_code_path_unpickles_untrusted_bytes(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    where = str(path.relative_to(REPO))
    for call in calls(tree, "torch", "load"):
        assert keyword_is_true(call, "weights_only"), f"{where}:{call.lineno} torch.load"
    for module, function in [
        ("pickle", "load"),
        ("pickle", "loads"),
        ("pd", "read_pickle"),
        ("pandas", "read_pickle"),
        ("yaml", "unsafe_load"),
    ]:
        assert not calls(tree, module, function), f"{where}: {module}.{function}"
    for call in calls(tree, "np", "load") + calls(tree, "numpy", "load"):
        assert not keyword_is_true(call, "allow_pickle"), f"{where}:{call.lineno} np.load"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in ("eval", "exec"), f"{where}:{node.lineno} {node.func.id}"


def test_records_are_plain_json_lines(tmp_path):
    writer = RecordWriter(tmp_path / "results.jsonl")
    writer.append({"trial_id": "a", "status": "ok", "base_indices": [1, 2]})
    raw = (tmp_path / "results.jsonl").read_bytes()
    assert raw.endswith(b"\n") and not raw.startswith(b"\x80")  # not a pickle
    assert json.loads(raw) == {"trial_id": "a", "status": "ok", "base_indices": [1, 2]}


class Hostile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "executed"))


def test_hostile_pickle_posing_as_cifar10_is_not_executed(tmp_path, monkeypatch):
    """frogs reads CIFAR-10 batches with an unpickler that allows numpy arrays only."""
    from frogs.data.datasets import load_cifar10

    monkeypatch.delenv("FROGS_DATA", raising=False)
    marker = tmp_path / "pwned"
    batches = tmp_path / "root" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (batches / name).write_bytes(pickle.dumps(Hostile(marker)))
    settings = DatasetSettings(name="cifar10", root=str(tmp_path / "root"), download=False)
    with pytest.raises(DataNotFoundError, match="corrupt"):
        load_cifar10(settings)
    assert not marker.exists(), "a pickle placed in the data root was executed"


def test_the_checker_catches_an_unsafe_load():
    source = "import torch\nstate = torch.load(path)\nok = torch.load(p, weights_only=True)\n"
    tree = ast.parse(source)
    unsafe = [c for c in calls(tree, "torch", "load") if not keyword_is_true(c, "weights_only")]
    assert [c.lineno for c in unsafe] == [2]
