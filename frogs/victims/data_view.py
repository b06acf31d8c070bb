"""A victim's data view: the images it trains on and the images it is scored on.

The training set is the task's training images (transfer: ``dataset.train_per_class`` of each
class; end-to-end: the clean model's own). The accuracy set is the task's test images minus those
duplicated in the training split (footnote 3); each trial further leaves out its own target and
bases' source images (``accuracy(..., exclude=...)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from frogs.config.settings import DatasetSettings
from frogs.data.datasets import ImageData, per_class_subset
from frogs.data.poisoned_set import PoisonedSet
from frogs.data.task import Task
from frogs.errors import ConfigError


@dataclass(frozen=True, eq=False)
class VictimData:
    """Training and accuracy images on the device, labelled in task order (``task``'s rows);
    ``train_idx`` and ``test_idx`` are their dataset indices."""

    task: Task
    train_idx: torch.Tensor
    test_idx: torch.Tensor
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_duplicates_removed: int

    @classmethod
    def select(
        cls,
        data: ImageData,
        task: Task,
        train_idx: torch.Tensor,
        dataset: DatasetSettings,
        duplicated: torch.Tensor,
        device: torch.device,
    ) -> VictimData:
        """The view of ``data`` training on ``train_idx``; ``duplicated`` marks the test images
        that duplicate training images (``frogs.data.datasets.duplicated_test_images``): they
        never enter the accuracy set."""
        test_idx = per_class_subset(
            data.test_y, task.classes, dataset.test_per_class, dataset.subsample_seed
        )
        test_idx = test_idx[~duplicated[test_idx]]
        return cls(
            task,
            train_idx,
            test_idx,
            data.train_x[train_idx].to(device),
            task.to_task_labels(data.train_y[train_idx]).to(device),
            data.test_x[test_idx].to(device),
            task.to_task_labels(data.test_y[test_idx]).to(device),
            int(duplicated.sum()),
        )

    @property
    def image_values(self) -> int:
        """Values per image (C x H x W)."""
        return math.prod(self.train_x.shape[1:])

    def for_pair(self, task: Task) -> VictimData:
        """This view with ``task``'s attacked pair (a setups file's trial attacks its own pair of
        the task's classes): the same images, labelled the same."""
        if task == self.task:
            return self
        if task.classes != self.task.classes:
            raise ValueError("for_pair changes the attacked pair, not the task's classes")
        return replace(self, task=task)

    def poisoned_set(
        self, poisons: torch.Tensor, replaces: torch.Tensor | None = None
    ) -> PoisonedSet:
        """The clean training set followed by ``poisons``, labelled as the base class
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
            rows = torch.nonzero(kept).flatten().to(self.train_x.device)
            clean_x, clean_y = self.train_x[rows], self.train_y[rows]
        device = self.train_x.device
        return PoisonedSet(
            torch.cat([clean_x, poisons]),
            torch.cat([clean_y, torch.full((count,), self.task.base_row, device=device)]),
            torch.cat(
                [
                    torch.zeros(len(clean_y), dtype=torch.bool, device=device),
                    torch.ones(count, dtype=torch.bool, device=device),
                ]
            ),
            rows,
        )

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
