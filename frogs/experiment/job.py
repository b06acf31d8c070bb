"""The values a job's stages read, one per stage, each built once per job by
``frogs.experiment.prepare.prepare_job``:

- ``Trials`` plans a trial (``Trials.plan`` -> ``TrialPlan``: its target, its victim and bases);
- ``Crafting`` is what crafting reads (the attack, the feature maps, what names cached poisons);
- ``Baseline`` is what an outcome is measured against (the clean model's predictions, the
  control's, the scale of the clean feature space);
- ``Job`` holds them beside what the record names (settings, clean model, victim).

Their own module, so that the stages (``frogs.experiment.prepare``, ``trial``, ``evaluate``)
import the values and not each other."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import torch

from frogs.attacks import FeatureFn
from frogs.config.settings import AttackSettings, DefenseSettings, JobSettings, ModelSettings
from frogs.data.datasets import ImageData
from frogs.data.selection import TargetChoice, choose_bases
from frogs.data.task import Task
from frogs.experiment.seeds import stream_seed
from frogs.interchange.fixed_trials import FixedTrial
from frogs.measures.feature_scale import FeatureScale, feature_scale
from frogs.models.pretrain import CleanModel
from frogs.models.train import predict_in_batches
from frogs.store.cache import ArtifactCache
from frogs.victims.base import Victim


def crafted_count(attack: AttackSettings) -> int:
    """How many poisons a trial crafts: ``attack.pool`` when set, else ``attack.num_poisons``."""
    return attack.pool if attack.pool is not None else attack.num_poisons


def task_fields(task: Task, class_names: list[str]) -> dict[str, Any]:
    """The record's fields naming the attacked class pair and the victim task."""
    return {
        "target_class": class_names[task.target_label],
        "base_class": class_names[task.base_label],
        "target_label": task.target_label,
        "base_label": task.base_label,
        "task_classes": list(task.names),
    }


@dataclass(frozen=True, eq=False)
class TrialPlan:
    """What one trial attacks: its target, its victim (with the trial's pair) and the bases of
    the whole crafted set (``crafted_count``), of which the trial uses the first ``num_poisons``.

    ``base_split`` ``test``: the bases are test images and the poisons join the training set
    (the paper's protocol); ``train``: a file fixed them as training images, which the poisons
    replace (the poisoning-benchmark's rule).
    """

    index: int
    target: TargetChoice
    victim: Victim
    fixed: FixedTrial | None
    target_image: torch.Tensor
    crafted_bases: torch.Tensor
    crafted_base_images: torch.Tensor
    num_poisons: int

    @property
    def base_split(self) -> str:
        """``train`` when a file fixed the trial, else ``test``."""
        return "test" if self.fixed is None else "train"

    @property
    def used_bases(self) -> torch.Tensor:
        """Dataset indices of the bases of the poisons the trial uses."""
        return self.crafted_bases[: self.num_poisons]

    @property
    def used_base_images(self) -> torch.Tensor:
        """The images of ``used_bases``."""
        return self.crafted_base_images[: self.num_poisons]

    def replaced(self) -> torch.Tensor | None:
        """The training indices the poisons replace (None: they are added)."""
        return self.used_bases if self.base_split == "train" else None

    def accuracy_exclusions(self) -> torch.Tensor:
        """The test images a trial's clean accuracy leaves out: its target and test bases."""
        bases = self.used_bases.tolist() if self.base_split == "test" else []
        return torch.tensor([self.target.index, *bases])

    def fields(self, class_names: list[str]) -> dict[str, Any]:
        """The record's fields that say what the trial attacked and where its bases came from
        (a fixed trial's own pair; the job's pair is among the job's common fields)."""
        return {
            **(task_fields(self.victim.task, class_names) if self.fixed is not None else {}),
            "target_index": self.target.index,
            "base_indices": self.used_bases.tolist(),
            "outlier_rank": self.target.outlier_rank,
            "setup_index": None if self.fixed is None else self.fixed.setup_index,
            "bases_split": self.base_split,
            "poisons_replace_bases": self.base_split == "train",
        }


@dataclass(frozen=True, eq=False)
class Trials:
    """Which target and bases each trial of a job attacks: ``targets`` in trial order from
    ``trial_offset``, or the trials a setups file or external poisons fix (``fixed``)."""

    data: ImageData
    victim: Victim
    targets: list[TargetChoice]
    base_candidates: torch.Tensor
    attack: AttackSettings
    seed: int
    trial_offset: int
    device: torch.device
    fixed: list[FixedTrial] | None = None

    def target(self, index: int) -> TargetChoice:
        """The target of trial ``index``."""
        return self.targets[index - self.trial_offset]

    def plan(self, index: int) -> TrialPlan:
        """Trial ``index``'s plan: a fixed trial's pair and training bases, else the job's pair
        and test bases from the trial's own seeded stream (``bases``)."""
        target = self.target(index)
        fixed = None if self.fixed is None else self.fixed[index - self.trial_offset]
        victim, split = self.victim, self.data.test_x
        if fixed is not None:
            task = replace(
                victim.task, target_label=fixed.target_label, base_label=fixed.base_label
            )
            victim, split = victim.for_pair(task), self.data.train_x
        bases = self.bases(index, target) if fixed is None else torch.tensor(fixed.base_indices)
        return TrialPlan(
            index,
            target,
            victim,
            fixed,
            self.data.test_x[target.index],
            bases,
            split[bases],
            self.attack.num_poisons,
        )

    def bases(self, index: int, target: TargetChoice) -> torch.Tensor:
        """Test-image indices of the bases of trial ``index``'s crafted set, drawn from its own
        seeded stream, or with ``attack.base_selection=closest`` the base-class images nearest
        the target in the clean feature space. ``choose_bases`` orders the candidates the same
        whatever the count, so a trial using the first ``num_poisons`` of a pool uses the bases
        a trial crafting only those would."""
        generator = torch.Generator().manual_seed(stream_seed(self.seed, "bases", index))
        distances = None
        if self.attack.base_selection == "closest":
            with torch.no_grad():
                target_features = self.victim.evaluator.feature_fn(
                    self.data.test_x[target.index].unsqueeze(0).to(self.device)
                ).flatten(1)
            distances = (self.base_candidate_features - target_features).norm(dim=1).cpu()
        return choose_bases(
            self.base_candidates,
            crafted_count(self.attack),
            self.attack.multi_base,
            generator,
            distances,
        )

    @cached_property
    def base_candidate_features(self) -> torch.Tensor:
        """The clean model's features of every base candidate (once per job, on demand)."""
        images = self.data.test_x[self.base_candidates]
        with torch.no_grad():
            return predict_in_batches(
                lambda x: self.victim.evaluator.feature_fn(x.to(self.device)).flatten(1), images
            )


@dataclass(frozen=True, eq=False)
class Crafting:
    """What crafting a trial's poisons reads: the attack (its settings resolved for this job),
    the feature maps it crafts against (``extractors``; ``victim_features`` is the clean
    model's), and what names the poisons in the cache (``clean_model``, ``ensemble_models``,
    ``data``: the clean model's identity, the settings ensemble members are trained with, the
    dataset's fingerprint)."""

    attack: AttackSettings
    extractors: list[FeatureFn]
    victim_features: FeatureFn
    clean_model: str
    ensemble_models: ModelSettings
    data: dict[str, Any]
    seed: int
    device: torch.device
    amp: bool
    progress: bool
    cache: ArtifactCache


@dataclass(frozen=True, eq=False)
class Baseline:
    """What a trial's outcome is measured against: the clean model's probabilities of each
    target candidate and predictions on the accuracy set, the control's predictions (the job's
    victim retrained without poisons) and the scale of the clean feature space."""

    victim: Victim
    clean_probs: dict[int, torch.Tensor]
    clean_predictions: torch.Tensor
    progress: bool

    @cached_property
    def control_predictions(self) -> torch.Tensor:
        """The control's test predictions, computed by the first trial that needs them (a control
        that fails to train fails each trial, recorded, like any other numerical failure)."""
        control = self.victim.control(progress=self.progress)
        return self.victim.evaluator.test_predictions(control.predict)

    @cached_property
    def feature_scale(self) -> FeatureScale:
        """Nearest-neighbour distances among the clean training features (once per job)."""
        return feature_scale(self.victim.evaluator.clean_training_features())


@dataclass(frozen=True, eq=False)
class Job:
    """A prepared job: its stages' values (``trials``, ``crafting``, ``defense``, ``baseline``)
    and what its records name (``settings``, ``clean``, ``victim``, ``class_names``, ``amp``)."""

    settings: JobSettings
    clean: CleanModel
    victim: Victim
    class_names: list[str]
    amp: bool
    trials: Trials
    crafting: Crafting
    defense: DefenseSettings
    baseline: Baseline
