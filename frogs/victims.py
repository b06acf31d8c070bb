"""Victims: how the poisoned training set is turned into a model (``victim=`` group).

``transfer``: the feature extractor is frozen, the final layer retrained cold-start (Sec. 3);
the clean training features are computed once per job (and cached on disk) and reused by every
trial. ``end_to_end``: the whole network retrained warm-start from the clean model (Sec. 4).
Both give the clean victim (for target choice and clean accuracy) and a ``retrain`` that returns
the poisoned victim with its decision-boundary angle after every epoch.
"""

from __future__ import annotations

import copy
import logging
import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from frogs.cache import ArtifactCache
from frogs.data import ImageData, per_class_subset
from frogs.models import FeatureClassifier
from frogs.records import stable_hash
from frogs.registry import Registry
from frogs.settings import DatasetSettings, VictimSettings
from frogs.task import Task
from frogs.train import cpu_threads, fit, predict_in_batches

log = logging.getLogger(__name__)

VICTIMS: Registry = Registry("victim")


def boundary_angle_deg(clean: torch.Tensor, poisoned: torch.Tensor, task: Task) -> float:
    """Angle between the clean and poisoned decision-boundary normals, in degrees (Fig. 2).

    The normal of the target/base boundary is the difference of the two head rows.
    """
    a = (clean[task.base_row] - clean[task.target_row]).double()
    b = (poisoned[task.base_row] - poisoned[task.target_row]).double()
    cosine = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    return math.degrees(math.acos(float(cosine.clamp(-1.0, 1.0))))


@dataclass
class PoisonedVictim:
    """A retrained victim: how it classifies, its head, and the angle after each epoch."""

    predict: nn.Module
    head_weight: torch.Tensor
    head_bias: torch.Tensor
    angle_per_epoch: list[float]
    features: nn.Module | None = None


class Victim:
    """Shared parts: the task's training data, the clean classifier, evaluation on the test set."""

    default_task_classes = "pair"

    def __init__(
        self,
        settings: VictimSettings,
        model: FeatureClassifier,
        data: ImageData,
        task: Task,
        dataset: DatasetSettings,
        cache: ArtifactCache,
        device: torch.device,
        seed: int,
        amp: bool = False,
    ) -> None:
        self.settings, self.model, self.data, self.task = settings, model, data, task
        self.device, self.seed, self.amp = device, seed, amp
        train_idx = per_class_subset(
            data.train_y, task.classes, dataset.train_per_class, dataset.subsample_seed
        )
        test_idx = per_class_subset(
            data.test_y, task.classes, dataset.test_per_class, dataset.subsample_seed
        )
        self.train_x = data.train_x[train_idx].to(device)
        self.train_y = task.to_task_labels(data.train_y[train_idx]).to(device)
        self.test_x = data.test_x[test_idx].to(device)
        self.test_y = task.to_task_labels(data.test_y[test_idx]).to(device)
        self.cache = cache
        for p in model.parameters():
            p.requires_grad_(False)

    def feature_fn(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) of the clean model: the space in which poisons are crafted."""
        return self.model.features(x)

    def clean_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (task order) of the clean victim."""
        raise NotImplementedError

    def clean_accuracy(self) -> float:
        raise NotImplementedError

    def clean_head_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the clean victim's final layer (task order)."""
        return self.clean_head.weight.detach(), self.clean_head.bias.detach()

    def poisoned_accuracy(self, victim: PoisonedVictim) -> float:
        raise NotImplementedError

    def retrain(self, poisons: torch.Tensor, progress: bool = False) -> PoisonedVictim:
        raise NotImplementedError

    def accuracy(self, classify: nn.Module, inputs: torch.Tensor) -> float:
        predictions = predict_in_batches(classify, inputs).argmax(1)
        return float((predictions == self.test_y).float().mean())

    def poisoned_labels(self, num_poisons: int) -> torch.Tensor:
        """Clean training labels followed by the base label of every poison (clean-label)."""
        poison_labels = torch.full((num_poisons,), self.task.base_row, device=self.device)
        return torch.cat([self.train_y, poison_labels])

    def fit_victim(
        self,
        module: nn.Module,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        on_epoch,
        progress: str | None,
    ) -> None:
        """Train with the victim's settings; same seed and batch order for every trial, so clean
        and poisoned runs shuffle alike."""
        torch.manual_seed(self.seed)
        fit(
            module,
            inputs,
            labels,
            epochs=self.settings.epochs,
            lr=self.settings.lr,
            batch_size=self.settings.batch_size,
            weight_decay=self.settings.weight_decay,
            generator=torch.Generator().manual_seed(self.seed),
            on_epoch=on_epoch,
            progress=progress,
            amp=self.amp,
        )


@VICTIMS.register("transfer")
class TransferVictim(Victim):
    """Frozen extractor; a new linear head trained cold-start on clean + poison features."""

    default_task_classes = "pair"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.train_features = self._cached_features("train", self.train_x)
        self.test_features = self._cached_features("test", self.test_x)
        self.clean_trajectory: list[torch.Tensor] = []
        self.clean_head = self._fit_head(
            self.train_features, self.train_y, self.clean_trajectory, progress=False
        )
        log.info(
            "transfer victim: %d features, %d clean training samples, clean accuracy %.4f",
            self.model.feature_dim,
            len(self.train_y),
            self.clean_accuracy(),
        )

    def _cached_features(self, split: str, inputs: torch.Tensor) -> torch.Tensor:
        key = stable_hash(
            {
                "model": {k: float(v.double().sum()) for k, v in self.model.state_dict().items()},
                "inputs": [list(inputs.shape), float(inputs.double().sum())],
            }
        )

        def build() -> dict[str, torch.Tensor]:
            return {"features": predict_in_batches(self.model.features, inputs).cpu()}

        return self.cache.get_or_build("features", key, build, {"split": split})["features"].to(
            self.device
        )

    def _fit_head(self, features, labels, trajectory, progress) -> nn.Linear:
        torch.manual_seed(self.seed)
        head = nn.Linear(features.shape[1], len(self.task.classes)).to(self.device)
        # One linear layer on in-memory features: one CPU thread is fastest (see cpu_threads).
        threads = cpu_threads(1) if self.device.type == "cpu" else nullcontext()
        with threads:
            self.fit_victim(
                head,
                features,
                labels,
                on_epoch=lambda _: trajectory.append(head.weight.detach().clone()),
                progress="retrain head" if progress else None,
            )
        return head

    def clean_probs(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(self.clean_head(self.model.features(x)), 1)

    def clean_accuracy(self) -> float:
        return self.accuracy(self.clean_head, self.test_features)

    def retrain(self, poisons: torch.Tensor, progress: bool = False) -> PoisonedVictim:
        with torch.no_grad():
            poison_features = self.model.features(poisons)
        features = torch.cat([self.train_features, poison_features])
        labels = self.poisoned_labels(len(poisons))
        trajectory: list[torch.Tensor] = []
        head = self._fit_head(features, labels, trajectory, progress)
        angles = [
            boundary_angle_deg(c, p, self.task)
            for c, p in zip(self.clean_trajectory, trajectory, strict=True)
        ]
        return PoisonedVictim(
            predict=nn.Sequential(_Features(self.model), head),
            head_weight=head.weight.detach(),
            head_bias=head.bias.detach(),
            angle_per_epoch=angles,
            features=_Features(self.model),
        )

    def poisoned_accuracy(self, victim: PoisonedVictim) -> float:
        return self.accuracy(victim.predict[1], self.test_features)


class _Features(nn.Module):
    """``model.features`` as a module, so a poisoned victim is one callable."""

    def __init__(self, model: FeatureClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


def sliced_classifier(model: FeatureClassifier, task: Task) -> FeatureClassifier:
    """A copy of ``model`` whose head keeps only the task's rows: the clean K-way victim."""
    victim = copy.deepcopy(model)
    rows = list(task.classes)
    head = nn.Linear(model.feature_dim, len(rows)).to(model.head.weight.device)
    with torch.no_grad():
        head.weight.copy_(model.head.weight[rows])
        head.bias.copy_(model.head.bias[rows])
    victim.head = head
    return victim


@VICTIMS.register("end_to_end")
class EndToEndVictim(Victim):
    """The whole network retrained warm-start from the clean model on clean data + poisons."""

    default_task_classes = "all"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clean = sliced_classifier(self.model, self.task).eval()
        self.clean_head = self.clean.head
        self._clean_accuracy = self.accuracy(self.clean, self.test_x)
        log.info(
            "end-to-end victim: %d clean training samples, clean accuracy %.4f",
            len(self.train_y),
            self._clean_accuracy,
        )

    def clean_probs(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(self.clean(x), 1)

    def clean_accuracy(self) -> float:
        return self._clean_accuracy

    def retrain(self, poisons: torch.Tensor, progress: bool = False) -> PoisonedVictim:
        victim = copy.deepcopy(self.clean)
        for p in victim.parameters():
            p.requires_grad_(True)
        inputs = torch.cat([self.train_x, poisons])
        labels = self.poisoned_labels(len(poisons))
        clean_weight = self.clean.head.weight.detach()
        angles: list[float] = []
        self.fit_victim(
            victim,
            inputs,
            labels,
            on_epoch=lambda _: angles.append(
                boundary_angle_deg(clean_weight, victim.head.weight.detach(), self.task)
            ),
            progress="retrain" if progress else None,
        )
        for p in victim.parameters():
            p.requires_grad_(False)
        return PoisonedVictim(
            predict=victim,
            head_weight=victim.head.weight.detach(),
            head_bias=victim.head.bias.detach(),
            angle_per_epoch=angles,
            features=_Features(victim),
        )

    def poisoned_accuracy(self, victim: PoisonedVictim) -> float:
        return self.accuracy(victim.predict, self.test_x)
