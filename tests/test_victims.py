"""The victim's three parts: its data view, its evaluator and its retrainer, and how they
compose (``frogs.victims``)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from frogs.config.settings import updated
from frogs.errors import ConfigError
from frogs.experiment.prepare import prepare_job
from frogs.models.train import predict_in_batches
from frogs.victims.end_to_end import EndToEndSettings
from frogs.victims.outcome import boundary_angle_deg


def _job(settings, victim: str = "transfer"):
    if victim == "end_to_end":
        settings = replace(
            settings, victim=EndToEndSettings(epochs=1, lr=1e-4, batch_size=32), trials=1
        )
        settings = updated(settings, {"dataset.task_classes": "all"})
    return prepare_job(settings, torch.device("cpu"))


@pytest.mark.parametrize("victim", ["transfer", "end_to_end"])
def test_evaluator_scores_a_retrained_victim_as_a_full_forward_pass_does(
    synthetic_settings, victim
):
    """The transfer evaluator scores heads on cached test features; that must equal running the
    whole classifier over the accuracy set's images, for the clean victim and a retrained one."""
    job = _job(synthetic_settings, victim)
    view, evaluator = job.victim.data, job.victim.evaluator
    poisons = view.test_x[view.test_y == job.victim.task.base_row][:2]
    poisoned = job.victim.retrain(view.poisoned_set(poisons))
    for classifier in (evaluator.clean_classifier(), poisoned.predict):
        with torch.no_grad():
            full = predict_in_batches(classifier, view.test_x).argmax(1)
        assert torch.equal(evaluator.test_predictions(classifier), full)
    assert len(poisoned.angle_per_epoch) == job.settings.victim.epochs


def test_for_pair_changes_the_attacked_pair_and_shares_everything_else(synthetic_settings):
    synthetic_settings = updated(synthetic_settings, {"dataset.task_classes": "all"})
    job = _job(synthetic_settings)
    victim = job.victim
    task = replace(victim.task, target_label=2, base_label=3)
    twin = victim.for_pair(task)
    assert twin.task == task and victim.task != task
    assert twin.evaluator is victim.evaluator and twin.retrainer is victim.retrainer
    assert twin.data.train_x is victim.data.train_x  # the same images, not a copy
    poisoned_set = twin.data.poisoned_set(twin.data.train_x[:1])
    assert int(poisoned_set.labels[-1]) == task.base_row  # poisons take the twin's base label
    assert victim.for_pair(victim.task) is victim
    with pytest.raises(ValueError, match="not the task's classes"):
        victim.for_pair(replace(task, classes=task.classes[:2]))


def test_end_to_end_control_drift_is_measured_for_each_trials_own_pair(synthetic_settings):
    """A setups file gives each trial its own pair; the control's drift is that pair's angle,
    whichever pair asked for the (shared, cached) control first."""
    job = _job(synthetic_settings, "end_to_end")
    victim = job.victim
    other = victim.for_pair(replace(victim.task, target_label=2, base_label=3))
    first, second = victim.control(), other.control()
    assert first.predict is second.predict  # trained (or loaded) once
    clean = victim.evaluator.clean_classifier().head.weight.detach()
    final = first.head_per_epoch[-1]
    assert first.drift_deg == pytest.approx(boundary_angle_deg(clean, final, victim.task))
    assert second.drift_deg == pytest.approx(boundary_angle_deg(clean, final, other.task))
    assert first.drift_deg != second.drift_deg


def test_poisons_replacing_training_images_must_be_among_them(synthetic_settings):
    job = _job(synthetic_settings)
    view = job.victim.data
    outside = torch.tensor([int(view.train_idx.max()) + 1])
    with pytest.raises(ConfigError, match="not a training image of the victim"):
        view.poisoned_set(view.train_x[:1], outside)
    replaced = view.poisoned_set(view.train_x[:1], view.train_idx[:1])
    assert len(replaced.inputs) == len(view.train_x)  # one replaced, one added
