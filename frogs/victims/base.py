"""A victim as the stages use it (its data view, evaluator and retrainer) and what its builder
is given (``VictimInputs``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from frogs.config.settings import DatasetSettings, VictimSettings
from frogs.data.datasets import ImageData
from frogs.data.poisoned_set import PoisonedSet
from frogs.data.task import Task
from frogs.models.pretrain import CleanModel
from frogs.models.train import TrainSeeds
from frogs.store.cache import ArtifactCache
from frogs.victims.data_view import VictimData
from frogs.victims.evaluator import Evaluator
from frogs.victims.outcome import Control, PoisonedVictim
from frogs.victims.retrainer import Retrainer


@dataclass(frozen=True, eq=False)
class VictimInputs:
    """What a victim's builder is given, once per job. ``duplicated`` marks the test images that
    duplicate training images (never in the accuracy set); ``seeds`` is the job's retraining
    stream (``frogs.experiment.seeds.retrain_seeds``)."""

    settings: VictimSettings
    clean: CleanModel
    data: ImageData
    task: Task
    dataset: DatasetSettings
    cache: ArtifactCache
    device: torch.device
    seeds: TrainSeeds
    duplicated: torch.Tensor
    amp: bool = False

    def view(self, train_idx: torch.Tensor) -> VictimData:
        """The data view training on the dataset training indices ``train_idx``."""
        return VictimData.select(
            self.data, self.task, train_idx, self.dataset, self.duplicated, self.device
        )


@dataclass(frozen=True, eq=False)
class Victim:
    """A victim: ``data`` (what it trains on and is scored on), ``evaluator`` (the clean model's
    view; scoring on the accuracy set) and ``retrainer`` (control and poisoned retraining).
    ``live_features`` and ``feature_rank`` describe the frozen features of a victim that retrains
    on them (App. D's condition), None otherwise."""

    name: str
    data: VictimData
    evaluator: Evaluator
    retrainer: Retrainer
    live_features: int | None = None
    feature_rank: int | None = None

    @property
    def task(self) -> Task:
        """The task and attacked pair."""
        return self.data.task

    def for_pair(self, task: Task) -> Victim:
        """This victim attacking ``task``'s pair of the same classes (a setups file's trial): the
        same data, clean model, control and caches."""
        return self if task == self.task else replace(self, data=self.data.for_pair(task))

    def control(self, progress: bool = False) -> Control:
        """The clean-retrained control of this victim's pair."""
        return self.retrainer.control(self.task, progress)

    def retrain(
        self, training: PoisonedSet, keep: torch.Tensor | None = None, progress: bool = False
    ) -> PoisonedVictim:
        """The victim trained on ``training`` (the rows ``keep`` marks, all when None)."""
        return self.retrainer.retrain(training, self.task, keep, progress)
