"""``victim=end_to_end`` (Sec. 4): the whole network retrained warm-start from the clean model on
clean data + poisons. It retrains on exactly the images the clean model was trained on
(restricted to the task's classes), so retraining adds the poisons and nothing else the model has
not seen. Its control is the same retraining without poisons, built once and cached for every job
that shares it."""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn

from frogs.config.settings import VictimSettings
from frogs.data.datasets import per_class_subset
from frogs.data.poisoned_set import PoisonedSet
from frogs.data.task import Task
from frogs.models.architectures import FeatureClassifier
from frogs.store.identity import cache_key
from frogs.victims import VICTIMS
from frogs.victims.base import Victim, VictimInputs
from frogs.victims.data_view import VictimData
from frogs.victims.evaluator import Evaluator, freeze, model_identity
from frogs.victims.outcome import Control, Features, PoisonedVictim, boundary_angle_deg
from frogs.victims.retrainer import Retrainer, angles

log = logging.getLogger(__name__)

MIN_CLEAN_TRAIN_ACCURACY = 0.99  # the paper's clean model fits its training set (App. F: 100 %)


@dataclass(frozen=True)
class EndToEndSettings(VictimSettings):
    """Sec. 4: the whole network retrained warm-start (Adam 1.85e-5, 10 epochs)."""

    name: str = "end_to_end"
    epochs: int = 10
    lr: float = 1.85e-5
    batch_size: int = 128

    default_task_classes: ClassVar[str] = "all"


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


class NetworkEvaluator(Evaluator):
    """The clean victim is the clean network with the task's rows of its head."""

    def __init__(self, inputs: VictimInputs, view: VictimData, clean: FeatureClassifier) -> None:
        super().__init__(inputs.clean, view, inputs.data.test_x, inputs.device)
        self.clean = clean

    def clean_classifier(self) -> nn.Module:
        return self.clean


class NetworkRetrainer(Retrainer):
    """Retrains a copy of the clean network, every parameter free."""

    def __init__(
        self,
        inputs: VictimInputs,
        view: VictimData,
        clean: FeatureClassifier,
    ) -> None:
        super().__init__(inputs.settings, inputs.seeds, inputs.amp)
        self.clean, self.view, self.cache = clean, view, inputs.cache
        self.device = inputs.device
        self.control_key = cache_key(
            clean_model=model_identity(inputs.clean),
            victim=self.settings,
            seeds=asdict(self.seeds),
            classes=list(view.task.classes),
            train=view.train_idx,
        )
        self._control: tuple[nn.Module, list[torch.Tensor]] | None = None

    def train(
        self, training: PoisonedSet, progress: str | None
    ) -> tuple[FeatureClassifier, list[torch.Tensor]]:
        """A copy of the clean network trained on ``training``, and its head after every
        epoch."""
        victim = copy.deepcopy(self.clean)
        for p in victim.parameters():
            p.requires_grad_(True)
        trajectory: list[torch.Tensor] = []
        self.fit(
            victim,
            training.inputs,
            training.labels,
            training.num_clean,
            on_epoch=lambda _: trajectory.append(victim.head.weight.detach().clone()),
            progress=progress,
        )
        return freeze(victim).eval(), trajectory

    def control(self, task: Task, progress: bool = False) -> Control:
        if self._control is None:

            def build() -> dict[str, torch.Tensor]:
                log.info("clean-retrain control: retraining without poisons (once per job)")
                clean_set = self.view.poisoned_set(self.view.train_x[:0])
                victim, trajectory = self.train(clean_set, "control" if progress else None)
                state = {f"model.{k}": v.cpu() for k, v in victim.state_dict().items()}
                state["head_per_epoch"] = torch.stack(trajectory).cpu()
                return state

            state = self.cache.get_or_build(
                "controls", self.control_key, build, {"victim": "end_to_end"}
            )
            predict = copy.deepcopy(self.clean)
            predict.load_state_dict(
                {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
            )
            heads = list(state["head_per_epoch"].to(self.device))
            self._control = (predict.to(self.device).eval(), heads)
        predict, heads = self._control
        drift = boundary_angle_deg(self.clean.head.weight.detach(), heads[-1], task)
        return Control(predict, heads, drift)

    def retrain(
        self,
        training: PoisonedSet,
        task: Task,
        keep: torch.Tensor | None = None,
        progress: bool = False,
    ) -> PoisonedVictim:
        control = self.control(task, progress)
        kept = training if keep is None else training.subset(keep)
        victim, trajectory = self.train(kept, "retrain" if progress else None)
        return PoisonedVictim(
            predict=victim,
            head_weight=victim.head.weight.detach(),
            head_bias=victim.head.bias.detach(),
            angle_per_epoch=angles(control, trajectory, task),
            features=Features(victim),
        )


def training_indices(inputs: VictimInputs) -> torch.Tensor:
    """The clean model's own training images of the task's classes; when they are unknown
    (external weights), ``dataset.train_per_class`` images of each class."""
    data, task, dataset = inputs.data, inputs.task, inputs.dataset
    indices = inputs.clean.train_indices
    if indices is None:
        log.warning(
            "the clean model's training images are unknown (external weights); the "
            "end-to-end victim retrains on dataset.train_per_class images instead"
        )
        return per_class_subset(
            data.train_y, task.classes, dataset.train_per_class, dataset.subsample_seed
        )
    return indices[torch.isin(data.train_y[indices], torch.tensor(task.classes))]


@VICTIMS.register("end_to_end", EndToEndSettings)
def end_to_end_victim(inputs: VictimInputs) -> Victim:
    """The whole network retrained warm-start from the clean model."""
    freeze(inputs.clean.model)
    view = inputs.view(training_indices(inputs))
    clean = sliced_classifier(inputs.clean.model, inputs.task).eval()
    evaluator = NetworkEvaluator(inputs, view, clean)
    retrainer = NetworkRetrainer(inputs, view, clean)
    train_acc = inputs.clean.train_accuracy
    if train_acc is not None and train_acc < MIN_CLEAN_TRAIN_ACCURACY:
        log.warning(
            "the clean model fits only %.2f %% of its %d training images (the paper's: "
            "100 %%, App. F); retraining will mix ordinary learning into the poisoning. Use a "
            "longer pretraining recipe (model/pretrain=cpu or paper)",
            100 * train_acc,
            len(view.train_y),
        )
    log.info(
        "end-to-end victim: %d clean training samples (the clean model's own), clean accuracy %.4f",
        len(view.train_y),
        view.accuracy(evaluator.test_predictions(clean)),
    )
    return Victim("end_to_end", view, evaluator, retrainer)
