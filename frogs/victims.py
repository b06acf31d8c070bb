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
from dataclasses import asdict, dataclass

import torch
from torch import nn

from frogs.config.registry import Registry
from frogs.config.settings import DatasetSettings, VictimSettings
from frogs.data.datasets import ImageData, per_class_subset
from frogs.data.poisoned_set import PoisonedSet
from frogs.data.task import Task
from frogs.errors import ConfigError
from frogs.models.architectures import FeatureClassifier
from frogs.models.pretrain import CleanModel
from frogs.models.train import cpu_threads, fit, predict_in_batches
from frogs.store.cache import ArtifactCache
from frogs.store.records import stable_hash

log = logging.getLogger(__name__)

VICTIMS: Registry = Registry("victim")


@dataclass
class TransferSettings(VictimSettings):
    """Sec. 3: the final layer retrained cold-start on frozen features (Adam, 100 epochs)."""

    name: str = "transfer"
    epochs: int = 100
    lr: float = 0.01
    batch_size: int = 8  # small batches: the head fits every training point, the poison included


@dataclass
class EndToEndSettings(VictimSettings):
    """Sec. 4: the whole network retrained warm-start (Adam 1.85e-5, 10 epochs)."""

    name: str = "end_to_end"
    epochs: int = 10
    lr: float = 1.85e-5
    batch_size: int = 128


def boundary_angle_deg(clean: torch.Tensor, poisoned: torch.Tensor, task: Task) -> float:
    """Angle between the clean and poisoned decision-boundary normals, in degrees (Fig. 2).

    The normal of the target/base boundary is the difference of the two head rows.
    """
    a = (clean[task.base_row] - clean[task.target_row]).double()
    b = (poisoned[task.base_row] - poisoned[task.target_row]).double()
    cosine = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    return math.degrees(math.acos(float(cosine.clamp(-1.0, 1.0))))


MIN_CLEAN_TRAIN_ACCURACY = 0.99  # the paper's clean model fits its training set (App. F: 100 %)


@dataclass
class PoisonedVictim:
    """A retrained victim: how it classifies, its head, and the angle after each epoch."""

    predict: nn.Module
    head_weight: torch.Tensor
    head_bias: torch.Tensor
    angle_per_epoch: list[float]
    features: nn.Module | None = None


@dataclass(frozen=True)
class Control:
    """The clean-retrained control: the same training run as a poisoned one, without poisons.

    ``head_per_epoch`` is its final layer after every epoch (the reference of the per-epoch
    angle); ``drift_deg`` is its boundary's angle to the clean model's before retraining (0 for
    the transfer victim, whose control *is* the clean head).
    """

    predict: nn.Module
    head_per_epoch: list[torch.Tensor]
    drift_deg: float


class Victim:
    """Shared parts: the task's training data, the clean classifier, evaluation on the test set.

    The accuracy set is the task's test images minus those duplicated in the training split
    (footnote 3); each trial further leaves out its own target and bases' source images
    (``accuracy(..., exclude=...)``).
    """

    default_task_classes = "pair"
    # Set by victims that retrain on frozen features (App. D's condition: the head fits every
    # training point only when the features outnumber the samples).
    live_features: int | None = None
    feature_rank: int | None = None

    def __init__(
        self,
        settings: VictimSettings,
        clean: CleanModel,
        data: ImageData,
        task: Task,
        dataset: DatasetSettings,
        cache: ArtifactCache,
        device: torch.device,
        seed: int,
        duplicated: torch.Tensor,
        amp: bool = False,
    ) -> None:
        """``duplicated`` marks the test images that duplicate training images
        (``frogs.data.datasets.duplicated_test_images``): they never enter the accuracy set."""
        self.settings, self.clean_model, self.data, self.task = settings, clean, data, task
        self.model = clean.model
        self.device, self.seed, self.amp = device, seed, amp
        train_idx = self.training_indices(clean, data, task, dataset)
        self.test_duplicates_removed = int(duplicated.sum())
        test_idx = per_class_subset(
            data.test_y, task.classes, dataset.test_per_class, dataset.subsample_seed
        )
        test_idx = test_idx[~duplicated[test_idx]]
        self.train_idx, self.test_idx = train_idx, test_idx
        self.train_x = data.train_x[train_idx].to(device)
        self.train_y = task.to_task_labels(data.train_y[train_idx]).to(device)
        self.test_x = data.test_x[test_idx].to(device)
        self.test_y = task.to_task_labels(data.test_y[test_idx]).to(device)
        self.cache = cache
        self._train_features: torch.Tensor | None = None
        for p in self.model.parameters():
            p.requires_grad_(False)

    def training_indices(
        self, clean: CleanModel, data: ImageData, task: Task, dataset: DatasetSettings
    ) -> torch.Tensor:
        """Dataset train indices the victim trains on (transfer: ``dataset.train_per_class``)."""
        return per_class_subset(
            data.train_y, task.classes, dataset.train_per_class, dataset.subsample_seed
        )

    def model_identity(self) -> str:
        """What names the clean model in the keys of caches derived from it (features, control):
        its checkpoint or cache entry's SHA-256, else a checksum of its weights."""
        if self.clean_model.sha256:
            return self.clean_model.sha256
        return stable_hash({k: float(v.double().sum()) for k, v in self.model.state_dict().items()})

    def feature_fn(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) of the clean model: the space in which poisons are crafted."""
        return self.model.features(x)

    def clean_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (task order) of the clean victim."""
        raise NotImplementedError

    def clean_classifier(self) -> nn.Module:
        """The clean victim before any retraining, mapping images to task logits."""
        raise NotImplementedError

    def clean_test_probs(self, indices: torch.Tensor) -> torch.Tensor:
        """Clean-victim class probabilities (task order, CPU) of the test images ``indices``."""
        return torch.cat(
            [
                self.clean_probs(self.data.test_x[chunk].to(self.device)).cpu()
                for chunk in indices.split(512)
            ]
        )

    def control(self, progress: bool = False) -> Control:
        """The clean-retrained control (built once per job, cached where it is expensive)."""
        raise NotImplementedError

    def clean_head_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the clean victim's final layer (task order)."""
        return self.clean_head.weight.detach(), self.clean_head.bias.detach()

    def retrain(
        self, training: PoisonedSet, keep: torch.Tensor | None = None, progress: bool = False
    ) -> PoisonedVictim:
        """The victim trained on ``training`` (the rows ``keep`` marks, all when None)."""
        raise NotImplementedError

    def poisoned_set(
        self, poisons: torch.Tensor, replaces: torch.Tensor | None = None
    ) -> PoisonedSet:
        """The victim's clean training set followed by ``poisons``, labelled as the base class
        (clean-label). ``replaces``: the dataset training indices of images the poisons replace
        (the poisoning-benchmark's rule, its bases are training images): those clean rows are
        left out; None: the poisons are added (the paper's, its bases are test images)."""
        count = len(poisons)
        rows = None
        clean_x, clean_y = self.train_x, self.train_y
        if replaces is not None:
            kept = ~torch.isin(self.train_idx, replaces.cpu())
            if int((~kept).sum()) != len(replaces.unique()):
                raise ConfigError(
                    "a replaced base is not a training image of the victim; expected bases "
                    "among its training images"
                )
            rows = torch.nonzero(kept).flatten().to(self.device)
            clean_x, clean_y = self.train_x[rows], self.train_y[rows]
        return PoisonedSet(
            torch.cat([clean_x, poisons]),
            torch.cat([clean_y, torch.full((count,), self.task.base_row, device=self.device)]),
            torch.cat(
                [
                    torch.zeros(len(clean_y), dtype=torch.bool, device=self.device),
                    torch.ones(count, dtype=torch.bool, device=self.device),
                ]
            ),
            rows,
        )

    def for_pair(self, task: Task) -> Victim:
        """This victim with ``task``'s attacked pair (a setups file's trial attacks its own pair
        of the task's classes): the same data, clean model, control and caches."""
        if task == self.task:
            return self
        if task.classes != self.task.classes:
            raise ValueError("for_pair changes the attacked pair, not the task's classes")
        twin = copy.copy(self)
        twin.task = task
        return twin

    def clean_training_features(self) -> torch.Tensor:
        """The clean model's features of the clean training images (computed once per job)."""
        if self._train_features is None:
            self._train_features = predict_in_batches(self.feature_fn, self.train_x)
        return self._train_features

    def set_features(self, training: PoisonedSet) -> torch.Tensor:
        """The clean model's features of every row of a full poisoned set (what defenses see)."""
        clean = self.clean_training_features()
        if training.clean_rows is not None:
            clean = clean[training.clean_rows.to(clean.device)]
        with torch.no_grad():
            poisons = self.feature_fn(training.inputs[len(clean) :])
        return torch.cat([clean, poisons.flatten(1)])

    def test_predictions(self, classify: nn.Module) -> torch.Tensor:
        """Predicted task rows of ``classify`` on the accuracy set (images -> logits)."""
        return predict_in_batches(classify, self.test_x).argmax(1)

    def accuracy(self, predictions: torch.Tensor, exclude: torch.Tensor | None = None) -> float:
        """Accuracy of test-set predictions, leaving out the dataset test indices ``exclude``."""
        keep = torch.ones(len(self.test_idx), dtype=torch.bool)
        if exclude is not None:
            keep &= ~torch.isin(self.test_idx, exclude.cpu())
        keep = keep.to(predictions.device)
        return float((predictions[keep] == self.test_y[keep]).float().mean())

    def accuracy_set_size(self, exclude: torch.Tensor) -> int:
        """Images in the accuracy set of a trial that leaves out ``exclude``."""
        return int((~torch.isin(self.test_idx, exclude.cpu())).sum())

    def fit_victim(
        self,
        module: nn.Module,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        num_clean: int,
        on_epoch,
        progress: str | None,
    ) -> None:
        """Train with the victim's settings. Every run (clean control and each poisoned trial)
        starts from the same seed and sees the same clean batches in the same order; poisons, the
        rows after the clean training set, join fixed batches
        (``frogs.models.train.epoch_batches``)."""
        torch.manual_seed(self.seed)
        fit(
            module,
            inputs,
            labels,
            epochs=self.settings.epochs,
            lr=self.settings.lr,
            batch_size=self.settings.batch_size,
            weight_decay=self.settings.weight_decay,
            num_clean=num_clean,
            slot_seed=self.seed + 1,
            generator=torch.Generator().manual_seed(self.seed),
            on_epoch=on_epoch,
            progress=progress,
            amp=self.amp,
        )

    def angles(self, control: Control, trajectory: list[torch.Tensor]) -> list[float]:
        """Boundary angle of the poisoned run to the control, epoch by epoch (Fig. 2b)."""
        return [
            boundary_angle_deg(c, p, self.task)
            for c, p in zip(control.head_per_epoch, trajectory, strict=True)
        ]


@VICTIMS.register("transfer", TransferSettings)
class TransferVictim(Victim):
    """Frozen extractor; a new linear head trained cold-start on clean + poison features."""

    default_task_classes = "pair"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.train_features = self._cached_features("train", self.train_x)
        self.test_features = self._cached_features("test", self.test_x)
        self.clean_head, trajectory = self._cached_clean_head()
        self._control = Control(self.clean_classifier(), trajectory, 0.0)
        self.live_features = int((self.train_features > 0).any(0).sum())
        self.feature_rank = int(torch.linalg.matrix_rank(self.train_features.double().cpu()))
        log.info(
            "transfer victim: %d features (%d live on the training set, rank %d), %d clean "
            "training samples, clean accuracy %.4f",
            self.model.feature_dim,
            self.live_features,
            self.feature_rank,
            len(self.train_y),
            self.accuracy(self.clean_head(self.test_features).argmax(1)),
        )

    def _cached_features(self, split: str, inputs: torch.Tensor) -> torch.Tensor:
        key = stable_hash(
            {
                "model": self.model_identity(),
                "inputs": [list(inputs.shape), float(inputs.double().sum())],
            }
        )

        def build() -> dict[str, torch.Tensor]:
            return {"features": predict_in_batches(self.model.features, inputs).cpu()}

        return self.cache.get_or_build("features", key, build, {"split": split})["features"].to(
            self.device
        )

    def _cached_clean_head(self) -> tuple[nn.Linear, list[torch.Tensor]]:
        """The clean head and its weights after every epoch (the control), trained once per
        (clean model, training images, victim settings, seed) and cached: every job of a sweep
        would train the same one."""
        key = stable_hash(
            {
                "model": self.model_identity(),
                "train": self.train_idx.tolist(),
                "classes": list(self.task.classes),
                "victim": asdict(self.settings),
                "seed": self.seed,
            }
        )

        def build() -> dict[str, torch.Tensor]:
            trajectory: list[torch.Tensor] = []
            head = self._fit_head(
                self.train_features, self.train_y, len(self.train_y), trajectory, False
            )
            return {
                "weight": head.weight.detach().cpu(),
                "bias": head.bias.detach().cpu(),
                "trajectory": torch.stack(trajectory).cpu(),
            }

        state = self.cache.get_or_build("heads", key, build, {"victim": "transfer"})
        head = nn.Linear(self.model.feature_dim, len(self.task.classes)).to(self.device)
        with torch.no_grad():
            head.weight.copy_(state["weight"])
            head.bias.copy_(state["bias"])
        return head.eval(), list(state["trajectory"].to(self.device))

    def clean_training_features(self) -> torch.Tensor:
        return self.train_features

    def _fit_head(self, features, labels, num_clean, trajectory, progress) -> nn.Linear:
        torch.manual_seed(self.seed)
        head = nn.Linear(features.shape[1], len(self.task.classes)).to(self.device)
        # One linear layer on in-memory features: one CPU thread is fastest (see cpu_threads).
        threads = cpu_threads(1) if self.device.type == "cpu" else nullcontext()
        with threads:
            self.fit_victim(
                head,
                features,
                labels,
                num_clean,
                on_epoch=lambda _: trajectory.append(head.weight.detach().clone()),
                progress="retrain head" if progress else None,
            )
        return head

    def clean_probs(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(self.clean_head(self.model.features(x)), 1)

    def clean_test_probs(self, indices: torch.Tensor) -> torch.Tensor:
        """From the cached test features when they cover ``indices`` (no forward pass)."""
        position = torch.full((len(self.data.test_y),), -1, dtype=torch.long)
        position[self.test_idx] = torch.arange(len(self.test_idx))
        rows = position[indices]
        if bool((rows < 0).any()):
            return super().clean_test_probs(indices)
        with torch.no_grad():
            return torch.softmax(self.clean_head(self.test_features[rows.to(self.device)]), 1).cpu()

    def clean_classifier(self) -> nn.Module:
        return nn.Sequential(_Features(self.model), self.clean_head)

    def control(self, progress: bool = False) -> Control:
        return self._control

    def test_predictions(self, classify: nn.Module) -> torch.Tensor:
        head = classify[1] if isinstance(classify, nn.Sequential) else classify
        with torch.no_grad():
            return head(self.test_features).argmax(1)

    def retrain(
        self, training: PoisonedSet, keep: torch.Tensor | None = None, progress: bool = False
    ) -> PoisonedVictim:
        features = self.set_features(training)
        keep = torch.ones(len(features), dtype=torch.bool) if keep is None else keep
        keep = keep.to(features.device)
        kept = training.subset(keep)
        trajectory: list[torch.Tensor] = []
        head = self._fit_head(features[keep], kept.labels, kept.num_clean, trajectory, progress)
        return PoisonedVictim(
            predict=nn.Sequential(_Features(self.model), head),
            head_weight=head.weight.detach(),
            head_bias=head.bias.detach(),
            angle_per_epoch=self.angles(self._control, trajectory),
            features=_Features(self.model),
        )


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


@VICTIMS.register("end_to_end", EndToEndSettings)
class EndToEndVictim(Victim):
    """The whole network retrained warm-start from the clean model on clean data + poisons.

    It retrains on exactly the images the clean model was trained on (restricted to the task's
    classes), so retraining adds the poisons and nothing else the model has not seen. Its control
    is the same retraining without poisons, built once and cached for every job that shares it.
    """

    default_task_classes = "all"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clean = sliced_classifier(self.model, self.task).eval()
        self.clean_head = self.clean.head
        train_acc = self.clean_model.train_accuracy
        if train_acc is not None and train_acc < MIN_CLEAN_TRAIN_ACCURACY:
            log.warning(
                "the clean model fits only %.2f %% of its %d training images (the paper's: "
                "100 %%, App. F); retraining will mix ordinary learning into the poisoning. Use a "
                "longer pretraining recipe (model/pretrain=cpu or paper)",
                100 * train_acc,
                len(self.train_y),
            )
        self._control: Control | None = None
        log.info(
            "end-to-end victim: %d clean training samples (the clean model's own), clean "
            "accuracy %.4f",
            len(self.train_y),
            self.accuracy(self.test_predictions(self.clean)),
        )

    def training_indices(
        self, clean: CleanModel, data: ImageData, task: Task, dataset: DatasetSettings
    ) -> torch.Tensor:
        if clean.train_indices is None:
            log.warning(
                "the clean model's training images are unknown (external weights); the "
                "end-to-end victim retrains on dataset.train_per_class images instead"
            )
            return super().training_indices(clean, data, task, dataset)
        indices = clean.train_indices
        return indices[torch.isin(data.train_y[indices], torch.tensor(task.classes))]

    def clean_probs(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(self.clean(x), 1)

    def clean_classifier(self) -> nn.Module:
        return self.clean

    def _train(self, training: PoisonedSet, progress: str | None):
        victim = copy.deepcopy(self.clean)
        for p in victim.parameters():
            p.requires_grad_(True)
        trajectory: list[torch.Tensor] = []
        self.fit_victim(
            victim,
            training.inputs,
            training.labels,
            training.num_clean,
            on_epoch=lambda _: trajectory.append(victim.head.weight.detach().clone()),
            progress=progress,
        )
        for p in victim.parameters():
            p.requires_grad_(False)
        return victim.eval(), trajectory

    def control(self, progress: bool = False) -> Control:
        if self._control is None:
            key = stable_hash(
                {
                    "clean_model": self.model_identity(),
                    "victim": asdict(self.settings),
                    "seed": self.seed,
                    "classes": list(self.task.classes),
                    "train": self.train_idx.tolist(),
                }
            )

            def build() -> dict[str, torch.Tensor]:
                log.info("clean-retrain control: retraining without poisons (once per job)")
                clean_set = self.poisoned_set(self.train_x[:0])
                victim, trajectory = self._train(clean_set, "control" if progress else None)
                state = {f"model.{k}": v.cpu() for k, v in victim.state_dict().items()}
                state["head_per_epoch"] = torch.stack(trajectory).cpu()
                return state

            state = self.cache.get_or_build("controls", key, build, {"victim": "end_to_end"})
            predict = copy.deepcopy(self.clean)
            predict.load_state_dict(
                {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
            )
            predict = predict.to(self.device).eval()
            heads = list(state["head_per_epoch"].to(self.device))
            drift = boundary_angle_deg(self.clean.head.weight.detach(), heads[-1], self.task)
            self._control = Control(predict, heads, drift)
        return self._control

    def retrain(
        self, training: PoisonedSet, keep: torch.Tensor | None = None, progress: bool = False
    ) -> PoisonedVictim:
        control = self.control(progress)
        kept = training if keep is None else training.subset(keep)
        victim, trajectory = self._train(kept, "retrain" if progress else None)
        return PoisonedVictim(
            predict=victim,
            head_weight=victim.head.weight.detach(),
            head_bias=victim.head.bias.detach(),
            angle_per_epoch=self.angles(control, trajectory),
            features=_Features(victim),
        )
