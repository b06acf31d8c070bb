"""Stage 4 of a trial: how the retrained victim classifies the target, beside its control.

Outcome fields of the record (docs/records.md): the target's prediction and probabilities
before, after and in the clean-retrain control; clean accuracy on the accuracy set (the task's
test images minus the target and the bases); the decision-boundary angle; the attack's own
metrics; and the poisons' perceptibility against their bases and crafting starts.
"""

from __future__ import annotations

from typing import Any

import torch

from frogs.attacks import Crafted
from frogs.errors import NumericalError
from frogs.experiment.job import Baseline, TrialPlan
from frogs.measures.feature_scale import target_overlap
from frogs.measures.perceptibility import perceptibility_fields
from frogs.victims.outcome import PoisonedVictim


def evaluate(
    baseline: Baseline,
    plan: TrialPlan,
    crafted: Crafted,
    poisoned: PoisonedVictim,
    device: torch.device,
) -> dict[str, Any]:
    """Success, its control, clean accuracy, angle, attack metrics and perceptibility (of the
    trial's pair, on the victim ``plan`` gives it)."""
    victim, task, target = plan.victim, plan.victim.task, plan.target
    view, evaluator = victim.data, victim.evaluator
    control = victim.control()
    target_batch = plan.target_image.to(device).unsqueeze(0)
    with torch.no_grad():
        probs = torch.softmax(poisoned.predict(target_batch), 1)[0].cpu()
        control_probs = torch.softmax(control.predict(target_batch), 1)[0].cpu()
    if not bool(torch.isfinite(probs).all()):
        raise NumericalError("the retrained victim outputs NaN or Inf for the target")
    clean_probs = baseline.clean_probs[target.index]
    predicted = int(probs.argmax())
    control_predicted = int(control_probs.argmax())
    exclude = plan.accuracy_exclusions()
    bases = plan.used_base_images.to(device)
    return {
        "success": predicted == task.base_row,
        "target_pred": task.names[predicted],
        "target_base_prob": float(probs[task.base_row]),
        "target_true_prob": float(probs[task.target_row]),
        "target_base_prob_clean": float(clean_probs[task.base_row]),
        "target_true_prob_clean": float(clean_probs[task.target_row]),
        "control_success": control_predicted == task.base_row,
        "control_target_pred": task.names[control_predicted],
        "control_target_base_prob": float(control_probs[task.base_row]),
        "clean_acc_before": view.accuracy(baseline.clean_predictions, exclude),
        "clean_acc_control": view.accuracy(baseline.control_predictions, exclude),
        "clean_acc_after": view.accuracy(evaluator.test_predictions(poisoned.predict), exclude),
        "accuracy_set_size": view.accuracy_set_size(exclude),
        "angular_deviation_deg": poisoned.angle_per_epoch[-1],
        "angular_deviation_per_epoch": poisoned.angle_per_epoch,
        "control_drift_deg": control.drift_deg,
        **crafted.record_metrics(),
        **overlap_fields(baseline, target_batch, crafted.poisons),
        **perceptibility_fields(crafted.poisons, bases, crafted.starts),
    }


def overlap_fields(
    baseline: Baseline, target_batch: torch.Tensor, poisons: torch.Tensor
) -> dict[str, Any]:
    """How close the poisons came to the target in the clean feature space, against the scale of
    the clean training images (``frogs.measures.feature_scale``: the overlap criterion)."""
    evaluator = baseline.victim.evaluator
    with torch.no_grad():
        target_features = evaluator.feature_fn(target_batch)
        poison_features = evaluator.feature_fn(poisons)
    return {
        **baseline.feature_scale.fields(),
        **target_overlap(target_features, poison_features, evaluator.clean_training_features()),
    }
