"""A small end-to-end job on real Fashion-MNIST records its control. Its own file (its own small
clean model): pytest-xdist's ``--dist loadfile`` can run it beside the default-model tests of
test_fashion_mnist.py, the slow tier's longest file."""

from __future__ import annotations

import pytest
import torch

from frogs.config.compose import compose_settings
from frogs.data.datasets import load_dataset, per_class_subset
from frogs.experiment.run import run
from tests.conftest import requires_fashion_mnist, whole_records

pytestmark = [pytest.mark.slow, requires_fashion_mnist]

# The accuracy set: a seeded 100 test images per class instead of all 10,000 (three accuracy
# passes per trial over the whole test set were most of this job's time on a CPU).
TEST_PER_CLASS = 100


def test_end_to_end_job_records_its_control(cache, tmp_path):
    """A small end-to-end job on real Fashion-MNIST: both trials record the control, the clean
    model's own training set, the per-epoch angle and an accuracy set of 100 test images per class
    (the whole test set's exclusion rule is tests/test_controls.py's)."""
    settings = compose_settings(
        [
            f"cache_dir={cache}",
            "progress=false",
            "device=cpu",
            "victim=end_to_end",
            "trials=2",
            "attack.num_poisons=5",
            "attack.opacity=0.3",
            "attack.iters=50",
            "victim.epochs=2",
            "victim.lr=1e-4",
            "model.pretrain.train_per_class=100",
            "model.pretrain.epochs=3",
            "save_features=true",
            "feature_sample=20",
            f"dataset.test_per_class={TEST_PER_CLASS}",
        ]
    )
    records = run(settings, tmp_path)
    assert [r["status"] for r in records] == ["ok", "ok"]
    accuracy_set = per_class_subset(
        load_dataset(settings.dataset).test_y,
        range(10),
        TEST_PER_CLASS,
        settings.dataset.subsample_seed,
    )
    for record in records:
        assert record["scenario"] == "end_to_end"
        assert len(record["task_classes"]) == 10
        assert record["victim_train_size"] == 10 * 100  # the clean model's own training set
        assert len(record["angular_deviation_per_epoch"]) == 2
        for key in ("clean_acc_before", "clean_acc_control", "clean_acc_after"):
            assert 0.0 <= record[key] <= 1.0
        # the 1,000 test images (no Fashion-MNIST test image duplicates a training one) but those
        # of the target and the 5 bases among them
        assert record["test_duplicates_removed"] == 0
        left_out = torch.tensor([record["target_index"], *record["base_indices"]])
        assert len(accuracy_set) == 10 * TEST_PER_CLASS
        assert record["accuracy_set_size"] == 10 * TEST_PER_CLASS - int(
            torch.isin(accuracy_set, left_out).sum()
        )
        assert record["poison_linf255_start_worst"] <= 8 + 1e-4
        assert (tmp_path / record["features_path"]).is_file()
    assert len(whole_records(tmp_path / "results.jsonl")) == 2
