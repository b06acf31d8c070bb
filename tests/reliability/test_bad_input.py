"""Bad input: one ``frogs: error:`` line naming the value and what is allowed, exit status 2, no
traceback, and nothing pretrained or cached first.

Two cases go through the real command (slow tier; run two at a time in one module fixture); the
rest run in-process through ``frogs.cli.main`` (fast tier), each its own test.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from frogs import cli
from tests.reliability.conftest import REPO, TINY, assert_one_clear_error, frogs_env, run_frogs

GARBAGE_CIFAR = "GARBAGE_CIFAR"  # replaced by a folder holding a garbage cifar-10-batches-py

# id: (overrides, needles that the one error line must contain). Two cases go through the real
# command (a Hydra composition error, and a data error found after composition); every other
# case runs in-process through frogs.cli.main, the same code path without an interpreter start.
CASES: dict[str, tuple[list[str], list[str]]] = {
    "group-dataset": (["dataset=nope"], ["dataset/nope", "cifar10, fashion_mnist"]),
    "cifar-garbage-root": (
        ["dataset=cifar10", f"dataset.root={GARBAGE_CIFAR}", "dataset.download=false"],
        [GARBAGE_CIFAR, "corrupt"],
    ),
}

# The same checks in-process through frogs.cli.main (the same code path, no interpreter start).
IN_PROCESS_CASES: dict[str, tuple[list[str], list[str]]] = {
    "group-victim": (["victim=nope"], ["victim/nope", "end_to_end, transfer"]),
    "name-dataset": (["dataset.name=nope"], ["dataset 'nope'", "synthetic"]),
    "name-victim": (["victim.name=nope"], ["victim 'nope'", "end_to_end, transfer"]),
    "unknown-key": (["attack.stepz=3"], ["attack.stepz", "FeatureCollisionSettings"]),
    "target-is-base": (["dataset.base_class=c0"], ["'c0'", "two different classes"]),
    "too-many-bases": (
        ["attack.num_poisons=33", "attack.multi_base=true"],
        ["attack.num_poisons=33", "only 32"],
    ),
    "opacity-above-1": (["attack.opacity=1.5"], ["attack.opacity=1.5", "0 <= opacity <= 1"]),
    "iters-zero": (["attack.iters=0"], ["attack.iters=0", "> 0"]),
    "trials-zero": (["trials=0"], ["trials=0", "> 0"]),
    "device-cuda": (["device=cuda"], ["device='cuda'", "auto or cpu"]),
    "enum-knob": (["attack.constraint=l1"], ["attack.constraint=l1", "expected one of [linf, l2]"]),
    "cifar-missing-root": (
        ["dataset=cifar10", "dataset.root=/nonexistent", "dataset.download=false"],
        ["/nonexistent", "cifar-10-batches-py"],
    ),
    "group-model": (["model=nope"], ["model/nope", "alexnet_cifar"]),
    "group-attack": (["attack=nope"], ["attack/nope", "feature_collision"]),
    "name-model": (["model.name=nope"], ["model 'nope'", "alexnet_cifar"]),
    "name-attack": (["attack.name=nope"], ["attack 'nope'", "feature_collision"]),
    "class-not-in-dataset": (["dataset.base_class=zebra"], ["'zebra'", "c0, c1, c2, c3"]),
    "target-not-in-dataset": (
        ["dataset.target_class=zebra"],
        ["dataset.target_class='zebra' is not a class", "c0, c1, c2, c3"],
    ),
    "opacity-below-0": (["attack.opacity=-0.1"], ["attack.opacity=-0.1", "0 <= opacity <= 1"]),
    "attack-lr-negative": (["attack.lr=-1"], ["attack.lr=-1", "> 0"]),
    "attack-lr-nan": (["attack.lr=nan"], ["attack.lr=nan", "> 0"]),
    "victim-lr-zero": (["victim.lr=0"], ["victim.lr=0", "> 0"]),
    "victim-epochs-zero": (["victim.epochs=0"], ["victim.epochs=0", "> 0"]),
    "pretrain-lr-zero": (["model.pretrain.lr=0"], ["model.pretrain.lr=0", "> 0"]),
    "trials-negative": (["trials=-2"], ["trials=-2", "> 0"]),
    "group-defense": (["defense=nope"], ["defense/nope", "deep_knn"]),
    "name-defense": (["defense.name=nope"], ["defense 'nope'", "spectral_signatures"]),
    # an option's knob given to another option of its group fails at composition
    "attack-knob-on-wrong-attack": (
        ["attack.ensemble=[clean]"],
        ["attack.ensemble", "FeatureCollisionSettings"],
    ),
    "defense-knob-on-wrong-defense": (["defense.k=3"], ["defense.k", "NoDefenseSettings"]),
    "cluster-knob-on-knn": (
        ["defense=deep_knn", "defense.dims=3"],
        ["defense.dims", "DeepKnnSettings"],
    ),
    "ensemble-unknown-model": (
        ["attack=convex_polytope", "attack.ensemble=[clean,vgg99]"],
        ["'vgg99'", "alexnet_cifar"],
    ),
    "knn-k-zero": (["defense=deep_knn", "defense.k=0"], ["defense.k=0", "integer > 0"]),
    "knn-k-negative": (["defense=deep_knn", "defense.k=-3"], ["defense.k=-3", "integer > 0"]),
    "removal-rate-one": (
        ["defense=spectral_signatures", "defense.removal_rate=1"],
        ["defense.removal_rate=1", "(0, 1)"],
    ),
    "removal-rate-zero": (
        ["defense=spectral_signatures", "defense.removal_rate=0.0"],
        ["defense.removal_rate=0.0", "(0, 1)"],
    ),
    "cp-one-poison": (
        ["attack=convex_polytope", "attack.num_poisons=1"],
        ["attack.num_poisons=1", "convex_polytope", ">= 2"],
    ),
    "bp-one-poison": (
        ["attack=bullseye_polytope", "attack.num_poisons=1"],
        ["attack.num_poisons=1", "bullseye_polytope", ">= 2"],
    ),
}


def garbage_cifar(root: Path) -> Path:
    """A root whose cifar-10-batches-py holds the right names with garbage inside."""
    batches = root / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (batches / name).write_bytes(b"not a pickle\n" * 100)
    return root


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path, list[str]]]:
    """Run the real-command cases (two processes at a time); each with its own empty cache."""
    base = tmp_path_factory.mktemp("bad-input")
    cifar = garbage_cifar(base / "garbage-cifar")

    def one(case: str):
        overrides, needles = CASES[case]
        overrides = [o.replace(GARBAGE_CIFAR, str(cifar)) for o in overrides]
        needles = [n.replace(GARBAGE_CIFAR, str(cifar)) for n in needles]
        cache = base / case / "cache"
        result = run_frogs(
            *TINY, *overrides, f"cache_dir={cache}", f"hydra.run.dir={base / case / 'run'}"
        )
        return case, (result, cache, needles)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, CASES))


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line_before_heavy_work(outcomes, case):
    if case == "device-cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result, cache, needles = outcomes[case]
    assert_one_clear_error(result, *needles)
    assert not (cache / "models").exists(), "the clean model was touched before the error"
    assert not (cache / "features").exists()


@pytest.mark.parametrize("case", list(IN_PROCESS_CASES))
def test_bad_input_in_process_is_one_clear_line(tmp_path, monkeypatch, capsys, case):
    if case == "device-cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    overrides, needles = IN_PROCESS_CASES[case]
    cache = tmp_path / "cache"
    argv = ["frogs", *TINY, *overrides, f"cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}"]
    monkeypatch.setattr(sys, "argv", argv)
    for name in ("FROGS_DATA", "FROGS_CACHE"):  # as the real command's environment (frogs_env)
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    captured = capsys.readouterr()
    result = subprocess.CompletedProcess(argv, stopped.value.code, captured.out, captured.err)
    assert_one_clear_error(result, *needles)
    assert not (cache / "models").exists(), "the clean model was touched before the error"
    assert not (cache / "features").exists()


@pytest.mark.slow
def test_analysis_of_a_folder_without_records_is_one_clear_line(tmp_path):
    empty = tmp_path / "no-records-here"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "analysis", str(empty)],
        capture_output=True,
        text=True,
        timeout=120,
        env=frogs_env(),
        cwd=REPO,
    )
    assert_one_clear_error(result, str(empty), prefix="frogs-analyze: error:")
