"""``victim=transfer`` (Sec. 3): the feature extractor is frozen and a new final layer is trained
cold-start on clean + poison features. The clean training and test features are computed once
(and cached on disk) and reused by every trial; the clean head, trained once and cached, is both
the clean victim and its control."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn

from frogs.config.settings import VictimSettings
from frogs.data.datasets import per_class_subset
from frogs.data.poisoned_set import PoisonedSet
from frogs.data.task import Task
from frogs.models.architectures import FeatureClassifier
from frogs.models.train import cpu_threads, predict_in_batches, seeded
from frogs.store.cache import ArtifactCache
from frogs.store.identity import cache_key
from frogs.victims import VICTIMS
from frogs.victims.base import Victim, VictimInputs
from frogs.victims.data_view import VictimData
from frogs.victims.evaluator import Evaluator, freeze, model_identity, set_features
from frogs.victims.outcome import Classifier, Control, Features, PoisonedVictim
from frogs.victims.retrainer import Retrainer, angles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferSettings(VictimSettings):
    """Sec. 3: the final layer retrained cold-start on frozen features (Adam, 100 epochs)."""

    name: str = "transfer"
    epochs: int = 100
    lr: float = 0.01
    batch_size: int = 8  # small batches: the head fits every training point, the poison included

    default_task_classes: ClassVar[str] = "pair"


def cached_features(
    cache: ArtifactCache, identity: str, model: FeatureClassifier, split: str, inputs: torch.Tensor
) -> torch.Tensor:
    """The clean model's features of ``inputs`` (one split of the data view), cached by the
    model's identity and the inputs."""
    key = cache_key(model=identity, inputs=inputs)

    def build() -> dict[str, torch.Tensor]:
        return {"features": predict_in_batches(model.features, inputs).cpu()}

    return cache.get_or_build("features", key, build, {"split": split})["features"]


class HeadRetrainer(Retrainer):
    """Trains a new linear head on frozen features; the clean head (the control) is trained once
    per (clean model, training images, victim settings, seed) and cached, since every job of a
    sweep would train the same one."""

    def __init__(
        self,
        inputs: VictimInputs,
        view: VictimData,
        train_features: torch.Tensor,
    ) -> None:
        super().__init__(inputs.settings, inputs.seeds, inputs.amp)
        self.model, self.device = inputs.clean.model, inputs.device
        self.train_features = train_features
        self.num_classes = len(view.task.classes)
        key = cache_key(
            model=model_identity(inputs.clean),
            train=view.train_idx,
            classes=list(view.task.classes),
            victim=self.settings,
            seeds=asdict(self.seeds),
        )

        def build() -> dict[str, torch.Tensor]:
            trajectory: list[torch.Tensor] = []
            head = self.fit_head(train_features, view.train_y, len(view.train_y), trajectory)
            return {
                "weight": head.weight.detach().cpu(),
                "bias": head.bias.detach().cpu(),
                "trajectory": torch.stack(trajectory).cpu(),
            }

        state = inputs.cache.get_or_build("heads", key, build, {"victim": "transfer"})
        head = nn.Linear(self.model.feature_dim, self.num_classes).to(self.device)
        with torch.no_grad():
            head.weight.copy_(state["weight"])
            head.bias.copy_(state["bias"])
        self.clean_head = head.eval()
        trajectory = list(state["trajectory"].to(self.device))
        self._control = Control(Classifier(Features(self.model), self.clean_head), trajectory, 0.0)

    def fit_head(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        num_clean: int,
        trajectory: list[torch.Tensor],
        progress: bool = False,
    ) -> nn.Linear:
        """A new head trained on ``features``, its weights after every epoch appended to
        ``trajectory``."""
        with seeded(self.seeds.init):
            head = nn.Linear(features.shape[1], self.num_classes).to(self.device)
        # One linear layer on in-memory features: one CPU thread is fastest (see cpu_threads).
        threads = cpu_threads(1) if self.device.type == "cpu" else nullcontext()
        with threads:
            self.fit(
                head,
                features,
                labels,
                num_clean,
                on_epoch=lambda _: trajectory.append(head.weight.detach().clone()),
                progress="retrain head" if progress else None,
            )
        return head

    def control(self, task: Task, progress: bool = False) -> Control:
        return self._control

    def retrain(
        self,
        training: PoisonedSet,
        task: Task,
        keep: torch.Tensor | None = None,
        progress: bool = False,
    ) -> PoisonedVictim:
        features = set_features(self.train_features, self.model.features, training)
        keep = torch.ones(len(features), dtype=torch.bool) if keep is None else keep
        keep = keep.to(features.device)
        kept = training.subset(keep)
        trajectory: list[torch.Tensor] = []
        head = self.fit_head(features[keep], kept.labels, kept.num_clean, trajectory, progress)
        return PoisonedVictim(
            predict=Classifier(Features(self.model), head),
            head_weight=head.weight.detach(),
            head_bias=head.bias.detach(),
            angle_per_epoch=angles(self._control, trajectory, task),
            features=Features(self.model),
        )


class HeadEvaluator(Evaluator):
    """Scores heads on the cached features of the accuracy set (no forward pass through the
    frozen extractor)."""

    def __init__(
        self,
        inputs: VictimInputs,
        view: VictimData,
        train_features: torch.Tensor,
        test_features: torch.Tensor,
        clean_head: nn.Linear,
    ) -> None:
        super().__init__(inputs.clean, view, inputs.data.test_x, inputs.device)
        self._train_features, self.test_features = train_features, test_features
        self.clean = Classifier(Features(self.model), clean_head)

    def clean_classifier(self) -> nn.Module:
        return self.clean

    def clean_test_probs(self, indices: torch.Tensor) -> torch.Tensor:
        """From the cached test features when they cover ``indices`` (no forward pass)."""
        position = torch.full((len(self.test_images),), -1, dtype=torch.long)
        position[self.view.test_idx] = torch.arange(len(self.view.test_idx))
        rows = position[indices]
        if bool((rows < 0).any()):
            return super().clean_test_probs(indices)
        with torch.no_grad():
            logits = self.clean.head(self.test_features[rows.to(self.device)])
            return torch.softmax(logits, 1).cpu()

    def test_predictions(self, classifier: nn.Module) -> torch.Tensor:
        """Its head on the accuracy set's cached features: every transfer classifier shares the
        frozen extractor."""
        with torch.no_grad():
            return classifier.head(self.test_features).argmax(1)


@VICTIMS.register("transfer", TransferSettings)
def transfer_victim(inputs: VictimInputs) -> Victim:
    """Frozen extractor; a new linear head trained cold-start on clean + poison features. Trains
    on ``dataset.train_per_class`` images of each task class."""
    dataset, task = inputs.dataset, inputs.task
    model, identity = freeze(inputs.clean.model), model_identity(inputs.clean)
    view = inputs.view(
        per_class_subset(
            inputs.data.train_y, task.classes, dataset.train_per_class, dataset.subsample_seed
        )
    )
    train_features = cached_features(inputs.cache, identity, model, "train", view.train_x)
    test_features = cached_features(inputs.cache, identity, model, "test", view.test_x)
    train_features = train_features.to(inputs.device)
    test_features = test_features.to(inputs.device)
    retrainer = HeadRetrainer(inputs, view, train_features)
    evaluator = HeadEvaluator(inputs, view, train_features, test_features, retrainer.clean_head)
    victim = Victim(
        "transfer",
        view,
        evaluator,
        retrainer,
        live_features=int((train_features > 0).any(0).sum()),
        feature_rank=int(torch.linalg.matrix_rank(train_features.double().cpu())),
    )
    log.info(
        "transfer victim: %d features (%d live on the training set, rank %d), %d clean "
        "training samples, clean accuracy %.4f",
        model.feature_dim,
        victim.live_features,
        victim.feature_rank,
        len(view.train_y),
        view.accuracy(evaluator.test_predictions(evaluator.clean)),
    )
    return victim
