"""Setups in, poisons out in the poisoning-benchmark's format, and the same poisons back in.

A setups file fixes two trials with different pairs; frogs crafts them and writes the poisons in
the benchmark's layout; ``attack=external`` reads those folders (with and without the setups
file) and must give the same success, probabilities and perceptibility as the trial that crafted
them. On the synthetic set (not 8-bit) the crafting start differs: feature collision starts from
the 8-bit rounded base, an external poison's start is the base itself, so the ``*_start_*``
fields and ``feat_dist_before`` are not compared.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image

from frogs.config.compose import compose_settings
from frogs.data.datasets import load_dataset
from frogs.errors import ConfigError
from frogs.experiment.prepare import prepare_job
from frogs.experiment.run import run
from frogs.interchange.benchmark import Setup, write_setups
from tests.conftest import whole_records

CPU = torch.device("cpu")
JOB = [
    "dataset=synthetic",
    "debug=smoke",
    "dataset.train_per_class=null",
    "victim=end_to_end",
    "attack.num_poisons=2",
    "trials=2",
]
#: What a trial's outcome is: equal whether frogs crafted the poisons or read them back.
SAME = (
    "target_index",
    "base_indices",
    "target_class",
    "base_class",
    "success",
    "target_pred",
    "target_base_prob",
    "target_true_prob",
    "control_success",
    "control_target_base_prob",
    "clean_acc_before",
    "clean_acc_control",
    "clean_acc_after",
    "angular_deviation_deg",
    "poison_l2_base_worst",
    "poison_linf255_base_worst",
    "poison_psnr_base_mean",
    "poison_ssim_base_worst",
    "bases_split",
    "poisons_replace_bases",
    "victim_train_size",
)


def settings(cache: Path, *overrides: str):
    return compose_settings([*JOB, f"cache_dir={cache}", *overrides])


@pytest.fixture(scope="module")
def setups_file(tmp_path_factory, module_cache) -> Path:
    """Two setups of different pairs: c0 -> c1 and c2 -> c3, two training bases each."""
    data = load_dataset(settings(module_cache).dataset)
    setups = []
    for target, base in ((0, 1), (2, 3)):
        target_index = int(torch.nonzero(data.test_y == target).flatten()[3])
        bases = torch.nonzero(data.train_y == base).flatten()[:2].tolist()
        setups.append(Setup(target, target_index, base, tuple(bases)))
    return write_setups(tmp_path_factory.mktemp("setups") / "setups.pickle", setups)


@pytest.fixture(scope="module")
def crafted(tmp_path_factory, module_cache, setups_file) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("crafted")
    job = settings(
        module_cache,
        "target_selection=setups",
        f"setups={setups_file}",
        "save_poisons=true",
        "poison_format=benchmark",
    )
    run(job, out)
    return out, whole_records(out / "results.jsonl")


def test_setups_trials_attack_their_own_pairs_with_replaced_training_bases(crafted):
    _, records = crafted
    assert [r["status"] for r in records] == ["ok", "ok"], [r["error"] for r in records]
    assert [(r["target_class"], r["base_class"]) for r in records] == [("c0", "c1"), ("c2", "c3")]
    assert [r["setup_index"] for r in records] == [0, 1]
    assert all(r["bases_split"] == "train" and r["poisons_replace_bases"] for r in records)
    assert all(len(r["setups_sha256"]) == 64 for r in records)


def test_poisons_replace_their_bases_in_the_training_set(cache, setups_file):
    job = prepare_job(settings(cache, "target_selection=setups", f"setups={setups_file}"), CPU)
    plan = job.trials.plan(1)
    bases = torch.tensor(plan.fixed.base_indices)
    assert torch.equal(plan.used_bases, bases)
    assert torch.equal(plan.used_base_images, job.trials.data.train_x[bases])  # training images
    training = plan.victim.data.poisoned_set(plan.used_base_images, plan.replaced())
    assert len(training.inputs) == len(job.victim.data.train_y)  # replaced, not added
    kept = job.victim.data.train_idx[training.clean_rows]
    assert not torch.isin(bases, kept).any()
    assert training.labels[training.is_poison].tolist() == [plan.victim.task.base_row] * 2
    assert plan.victim.task.names[plan.victim.task.base_row] == "c3"


def test_written_poisons_are_the_benchmarks_format(crafted):
    out, records = crafted
    folder = out / records[1]["benchmark_poisons_path"]
    with open(folder / "poisons.pickle", "rb") as handle:
        poisons = pickle.load(handle)  # the benchmark's own loader is plain pickle
    assert [type(p[0]) for p in poisons] == [Image.Image] * 2
    assert [p[1] for p in poisons] == [3, 3]  # dataset label of the base class
    with open(folder / "base_indices.pickle", "rb") as handle:
        assert handle and pickle.load(handle).tolist() == records[1]["base_indices"]
    with open(folder / "target.pickle", "rb") as handle:
        assert pickle.load(handle)[1] == 2


@pytest.mark.parametrize("with_setups", [True, False])
def test_external_poisons_give_the_crafting_trials_outcome(
    crafted, cache, setups_file, tmp_path, with_setups
):
    out, records = crafted
    overrides = ["attack=external", f"attack.path={out / 'poisons' / 'benchmark'}"]
    if with_setups:
        overrides += ["target_selection=setups", f"setups={setups_file}"]
    run(settings(cache, *overrides), tmp_path)
    again = whole_records(tmp_path / "results.jsonl")
    assert [r["status"] for r in again] == ["ok", "ok"], [r["error"] for r in again]
    for made, read in zip(records, again, strict=True):
        assert {k: read[k] for k in SAME} == {k: made[k] for k in SAME}
        assert read["feat_dist_after"] == pytest.approx(made["feat_dist_after"], rel=1e-5)
        assert read["setup_index"] == (made["setup_index"] if with_setups else None)
        assert read["poisons_source"].endswith(str(made["trial_index"]))
        assert len(read["poisons_sha256"]) == 64
        assert read["poisons_within_benchmark_linf"] is True


def test_a_bad_setups_file_fails_before_any_model_is_trained(tmp_path):
    data = load_dataset(settings(tmp_path).dataset)
    wrong_label = int(torch.nonzero(data.test_y == 1).flatten()[0])  # a c1 image as "class 0"
    path = write_setups(tmp_path / "bad.pickle", [Setup(0, wrong_label, 1, (64, 65))] * 2)
    cache = tmp_path / "cache"
    job = settings(cache, "target_selection=setups", f"setups={path}")
    with pytest.raises(ConfigError, match=r"setups\[0\].*target") as caught:
        run(job, tmp_path / "out")
    assert "\n" not in str(caught.value)
    assert not cache.exists()  # nothing was built: no duplicate mask, no clean model


def test_a_base_outside_the_victims_training_set_is_refused(cache, setups_file, tmp_path):
    job = settings(
        cache,
        "victim=transfer",
        "dataset.task_classes=all",
        "dataset.train_per_class=1",  # keeps training image 64 of c1 out
        "target_selection=setups",
        f"setups={setups_file}",
    )
    with pytest.raises(ConfigError, match="not in the transfer victim's training set"):
        run(job, tmp_path)


def test_a_pair_outside_the_task_is_refused(cache, setups_file, tmp_path):
    job = settings(cache, "victim=transfer", "target_selection=setups", f"setups={setups_file}")
    with pytest.raises(ConfigError, match=r"expected dataset\.task_classes=all"):
        run(job, tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["poison_format=benchmark"], "poison_format=benchmark is not allowed"),
        (["target_selection=setups"], "needs setups=PATH"),
        (["setups=x.pickle"], "expected target_selection=setups"),
        (["attack=external"], "needs attack.path=DIR"),
        (["attack=external", "attack.path=/no/such/folder"], "no such folder"),
        (["target_selection=setups", "setups=x", "attack.multi_base=false"], "multi_base"),
    ],
)
def test_bad_interchange_settings_fail_at_composition(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, *overrides)


def test_external_poisons_of_another_count_are_refused(crafted, cache, tmp_path):
    out, _ = crafted
    job = settings(
        cache,
        "attack=external",
        f"attack.path={out / 'poisons' / 'benchmark'}",
        "attack.num_poisons=3",
    )
    with pytest.raises(ConfigError, match=r"holds 2 poisons but attack\.num_poisons=3"):
        run(job, tmp_path)


def test_random_setups_fit_the_dataset_and_the_victims_training_set(cache):
    from frogs.data.datasets import per_class_subset
    from frogs.interchange.benchmark import check_setups
    from frogs.interchange.make_setups import random_setups

    data = load_dataset(settings(cache).dataset)
    made = random_setups(data, count=6, num_poisons=3, train_per_class=10, seed=1)
    check_setups(
        made, train_labels=data.train_y, test_labels=data.test_y, class_names=data.class_names
    )
    training = per_class_subset(data.train_y, range(4), 10, 0)
    assert all(set(s.base_indices) <= set(training.tolist()) for s in made)
    assert all(s.target_class != s.base_class for s in made)
    assert made == random_setups(data, count=6, num_poisons=3, train_per_class=10, seed=1)
    assert made != random_setups(data, count=6, num_poisons=3, train_per_class=10, seed=2)
    with pytest.raises(ConfigError, match="--poisons 11 is not allowed"):
        random_setups(data, count=1, num_poisons=11, train_per_class=10)


@pytest.mark.parametrize(
    ("bases", "message"),
    [
        ([0, 10**6], r"base index 1000000 is out of range of the training split"),
        ([0, 0], r"base index 0 appears more than once"),
    ],
)
def test_external_poison_folders_are_checked_as_setups(crafted, cache, tmp_path, bases, message):
    """Without a setups file a folder's base indices get the setups file's checks, the folder
    named in the one-line error."""
    import shutil

    import numpy as np

    out, _ = crafted
    folder = tmp_path / "external"
    shutil.copytree(out / "poisons" / "benchmark", folder)
    with open(folder / "0" / "base_indices.pickle", "wb") as handle:
        pickle.dump(np.array(bases, dtype=np.int64), handle)
    job = settings(cache, "attack=external", f"attack.path={folder}")
    with pytest.raises(ConfigError, match=rf"{folder / '0'}: {message}"):
        run(job, tmp_path / "run")
