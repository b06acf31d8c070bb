"""The values a job's stages share: ``Job`` (what every trial of a job reads, loaded once by
``frogs.experiment.prepare.prepare_job``) and ``TrialPlan`` (what one trial attacks and where its
bases are). Their own module, so that the stages (``frogs.experiment.prepare``, ``trial``,
``evaluate``) import the values and not each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from frogs.attacks import FeatureFn
from frogs.config.settings import AttackSettings, DefenseSettings, JobSettings
from frogs.data.datasets import ImageData
from frogs.data.selection import TargetChoice
from frogs.interchange.fixed_trials import FixedTrial
from frogs.measures.feature_scale import FeatureScale, feature_scale
from frogs.models.pretrain import CleanModel
from frogs.models.train import predict_in_batches
from frogs.store.cache import ArtifactCache
from frogs.victims.base import Victim


@dataclass
class Job:
    """What every trial of a job shares: loaded once per job."""

    settings: JobSettings
    data: ImageData
    clean: CleanModel
    victim: Victim
    device: torch.device
    targets: list[TargetChoice]
    base_candidates: torch.Tensor
    clean_probs: dict[int, torch.Tensor]
    clean_predictions: torch.Tensor
    attack: AttackSettings
    defense: DefenseSettings
    extractors: list[FeatureFn]
    cache: ArtifactCache
    amp: bool = False
    #: the trials a setups file or external poisons fix (None: frogs draws targets and bases)
    fixed: list[FixedTrial] | None = None
    _control_predictions: torch.Tensor | None = None
    _feature_scale: FeatureScale | None = None
    _base_features: torch.Tensor | None = None

    def base_candidate_features(self) -> torch.Tensor:
        """The clean model's features of every base candidate (once per job, on demand)."""
        if self._base_features is None:
            images = self.data.test_x[self.base_candidates]
            with torch.no_grad():
                features = predict_in_batches(
                    lambda x: self.victim.evaluator.feature_fn(x.to(self.device)).flatten(1), images
                )
            self._base_features = features
        return self._base_features

    def feature_scale(self) -> FeatureScale:
        """Nearest-neighbour distances among the clean training features (once per job)."""
        if self._feature_scale is None:
            self._feature_scale = feature_scale(self.victim.evaluator.clean_training_features())
        return self._feature_scale

    def control_predictions(self) -> torch.Tensor:
        """The control's test predictions, computed by the first trial that needs them (a control
        that fails to train fails each trial, recorded, like any other numerical failure)."""
        if self._control_predictions is None:
            control = self.victim.control(progress=self.settings.progress)
            self._control_predictions = self.victim.evaluator.test_predictions(control.predict)
        return self._control_predictions


@dataclass(frozen=True)
class TrialPlan:
    """What one trial attacks: its victim (with the trial's pair) and where its bases are.

    ``base_split`` ``test``: the bases are test images and the poisons join the training set
    (the paper's protocol); ``train``: a file fixed them as training images, which the poisons
    replace (the poisoning-benchmark's rule).
    """

    victim: Victim
    fixed: FixedTrial | None

    @property
    def base_split(self) -> str:
        """``train`` when a file fixed the trial, else ``test``."""
        return "test" if self.fixed is None else "train"

    def base_images(self, data: ImageData, indices: torch.Tensor) -> torch.Tensor:
        """The images of the base indices ``indices`` (of this plan's split)."""
        return (data.train_x if self.base_split == "train" else data.test_x)[indices]

    def replaced(self, indices: torch.Tensor) -> torch.Tensor | None:
        """The training indices the poisons replace (None: they are added)."""
        return indices if self.base_split == "train" else None

    def accuracy_exclusions(self, target: TargetChoice, indices: torch.Tensor) -> torch.Tensor:
        """The test images a trial's clean accuracy leaves out: its target and test bases."""
        bases = indices.tolist() if self.base_split == "test" else []
        return torch.tensor([target.index, *bases])

    def fields(self) -> dict[str, Any]:
        """The record's fields that say where the trial's bases came from."""
        return {
            "setup_index": None if self.fixed is None else self.fixed.setup_index,
            "bases_split": self.base_split,
            "poisons_replace_bases": self.base_split == "train",
        }
