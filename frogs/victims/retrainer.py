"""A victim's retrainer: the one seeded training run that gives both the clean-retrained control
and every poisoned victim, so that the two differ by the poisons alone."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from frogs.config.settings import VictimSettings
from frogs.data.poisoned_set import PoisonedSet
from frogs.data.task import Task
from frogs.models.train import TrainSeeds, fit, seeded
from frogs.victims.outcome import Control, PoisonedVictim, boundary_angle_deg


class Retrainer:
    """Trains with the victim's settings; subclasses say what is trained (a head, the network)."""

    def __init__(self, settings: VictimSettings, seeds: TrainSeeds, amp: bool = False) -> None:
        self.settings, self.seeds, self.amp = settings, seeds, amp

    def fit(
        self,
        module: nn.Module,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        num_clean: int,
        on_epoch: Callable[[int], None],
        progress: str | None,
    ) -> None:
        """Train ``module`` in place. Every run (clean control and each poisoned trial) starts
        from the same seed and sees the same clean batches in the same order; poisons, the rows
        after the clean training set, join fixed batches (``frogs.models.train.epoch_batches``).
        torch's global RNG is seeded for the run only (``seeded``)."""
        with seeded(self.seeds.init):
            fit(
                module,
                inputs,
                labels,
                epochs=self.settings.epochs,
                lr=self.settings.lr,
                batch_size=self.settings.batch_size,
                weight_decay=self.settings.weight_decay,
                num_clean=num_clean,
                slot_seed=self.seeds.slots,
                generator=torch.Generator().manual_seed(self.seeds.order),
                on_epoch=on_epoch,
                progress=progress,
                amp=self.amp,
            )

    def control(self, task: Task, progress: bool = False) -> Control:
        """The clean-retrained control of ``task``'s pair (built once per job, cached where it is
        expensive)."""
        raise NotImplementedError

    def retrain(
        self,
        training: PoisonedSet,
        task: Task,
        keep: torch.Tensor | None = None,
        progress: bool = False,
    ) -> PoisonedVictim:
        """The victim trained on ``training`` (the rows ``keep`` marks, all when None), with its
        angle to the control of ``task``'s pair after every epoch."""
        raise NotImplementedError


def angles(control: Control, trajectory: list[torch.Tensor], task: Task) -> list[float]:
    """Boundary angle of a poisoned run to the control, epoch by epoch (Fig. 2b)."""
    return [
        boundary_angle_deg(c, p, task)
        for c, p in zip(control.head_per_epoch, trajectory, strict=True)
    ]
