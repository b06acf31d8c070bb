"""Controls: same batches with and without poisons, the clean-retrain control in every record,
and an accuracy set that never holds the trial's own target or bases."""

from __future__ import annotations

import logging

import torch

from frogs.config.settings import updated
from frogs.experiment.run import run
from frogs.models.train import epoch_batches


def _batches(num_clean: int, num_extra: int, seed: int = 3) -> list[list[torch.Tensor]]:
    order, slots = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    return [epoch_batches(num_clean, num_extra, 8, order, slots) for _ in range(4)]


def test_poisons_join_the_clean_batches_without_reordering_them():
    clean, poisoned = _batches(50, 0), _batches(50, 3)
    for clean_epoch, poisoned_epoch in zip(clean, poisoned, strict=True):
        assert len(clean_epoch) == len(poisoned_epoch)
        for plain, with_poisons in zip(clean_epoch, poisoned_epoch, strict=True):
            assert torch.equal(with_poisons[: len(plain)], plain)  # same clean rows, same order
            assert (with_poisons[len(plain) :] >= 50).all()  # then only poison rows
        extra = torch.cat(poisoned_epoch)
        assert sorted(extra[extra >= 50].tolist()) == [50, 51, 52]  # each poison once per epoch


#: the synthetic job as a small end-to-end victim on every class
END_TO_END = {
    "victim.name": "end_to_end",
    "victim.lr": 1e-4,
    "victim.batch_size": 32,
    "victim.epochs": 2,
    "dataset.task_classes": "all",
}


def test_end_to_end_records_carry_the_clean_retrain_control(synthetic_settings, tmp_path):
    synthetic_settings = updated(
        synthetic_settings, {**END_TO_END, "attack.num_poisons": 3, "attack.opacity": 0.3}
    )
    records = run(synthetic_settings, tmp_path)
    assert [r["status"] for r in records] == ["ok", "ok"]
    for record in records:
        for key in ("clean_acc_control", "control_drift_deg", "control_target_base_prob"):
            assert isinstance(record[key], float), key
        assert isinstance(record["control_success"], bool)
        assert len(record["angular_deviation_per_epoch"]) == 2
        # the victim retrains on exactly the clean model's training set (all 4 x 64 images)
        assert record["victim_train_size"] == 4 * 64
        assert record["clean_train_acc"] is not None


class Messages(logging.Handler):
    """Collects what frogs logs, whatever an earlier test did to the logging configuration."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_end_to_end_control_is_built_once_and_an_underfit_clean_model_is_flagged(
    synthetic_settings, tmp_path
):
    synthetic_settings = updated(
        synthetic_settings,
        {
            "victim.name": "end_to_end",
            "victim.epochs": 1,
            "dataset.task_classes": "all",
            "trials": 1,
            "model.pretrain.epochs": 1,  # fits about 75 % of its training set
            "dataset.target_class": "c2",  # a class that model classifies correctly
        },
    )
    frogs_logger, handler = logging.getLogger("frogs"), Messages()
    level = frogs_logger.level
    frogs_logger.addHandler(handler)
    frogs_logger.setLevel(logging.INFO)
    try:
        run(synthetic_settings, tmp_path / "first")
        # another job, same victim: same control
        synthetic_settings = updated(synthetic_settings, {"attack.num_poisons": 2})
        run(synthetic_settings, tmp_path / "second")
    finally:
        frogs_logger.removeHandler(handler)
        frogs_logger.setLevel(level)
    messages = handler.messages
    assert sum("cache miss controls/" in m for m in messages) == 1
    assert sum("cache hit controls/" in m for m in messages) == 1
    assert any("fits only 75.00 %" in m and "training images" in m for m in messages)


def test_innocuous_extra_image_barely_moves_the_end_to_end_boundary(synthetic_settings, tmp_path):
    """An unmodified base image as the 'poison': the run differs from the control by one image
    per epoch in a fixed batch, so the boundary stays close to the control's."""
    synthetic_settings = updated(synthetic_settings, {**END_TO_END, "attack.optimize": False})
    records = run(synthetic_settings, tmp_path)
    angles = [r["angular_deviation_deg"] for r in records]
    assert max(angles) < 1.0, angles


def test_accuracy_set_leaves_out_the_target_and_the_bases(synthetic_settings, tmp_path):
    synthetic_settings = updated(synthetic_settings, {"attack.num_poisons": 4})
    records = run(synthetic_settings, tmp_path)
    task_test_images = 2 * synthetic_settings.dataset.synthetic_test_per_class
    for record in records:
        assert record["accuracy_set_size"] == task_test_images - 1 - 4
        assert record["test_duplicates_removed"] == 0
