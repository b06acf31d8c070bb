"""The victim's classification task: which classes it sees and which two are attacked."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from frogs.config.settings import DatasetSettings
from frogs.data.datasets import ImageData
from frogs.errors import ConfigError


@dataclass(frozen=True)
class Task:
    """Classes of the victim task (dataset indices, in head order) and the attacked pair."""

    classes: tuple[int, ...]
    names: tuple[str, ...]
    target_label: int
    base_label: int

    @property
    def target_row(self) -> int:
        """Row of the target class in the victim's head."""
        return self.classes.index(self.target_label)

    @property
    def base_row(self) -> int:
        return self.classes.index(self.base_label)

    def to_task_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Map dataset labels (of task classes only) to head rows 0..K-1."""
        lookup = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long)
        lookup[list(self.classes)] = torch.arange(len(self.classes))
        return lookup[labels]


def resolve_task(data: ImageData, settings: DatasetSettings, victim_default: str) -> Task:
    """Resolve the class pair and the task classes (``null`` takes the victim's default)."""
    target = data.class_index(settings.target_class, "dataset.target_class")
    base = data.class_index(settings.base_class, "dataset.base_class")
    if target == base:
        raise ConfigError(
            f"dataset.target_class and dataset.base_class are both {data.class_names[target]!r}; "
            "the attack needs two different classes"
        )
    spec = settings.task_classes if settings.task_classes is not None else victim_default
    if spec == "pair":
        classes = [target, base]
    elif spec == "all":
        classes = list(range(len(data.class_names)))
    elif isinstance(spec, list | tuple):
        classes = [data.class_index(c, "dataset.task_classes") for c in spec]
        for label, what in ((target, "target_class"), (base, "base_class")):
            if label not in classes:
                raise ConfigError(
                    f"dataset.task_classes={list(spec)!r} must include dataset.{what} "
                    f"{data.class_names[label]!r}"
                )
        if len(set(classes)) != len(classes):
            raise ConfigError(f"dataset.task_classes={list(spec)!r} lists a class twice")
    else:
        raise ConfigError(
            f"dataset.task_classes={spec!r} is not allowed; expected null, 'pair', 'all' or a list "
            "of class names"
        )
    names = tuple(data.class_names[c] for c in classes)
    return Task(tuple(classes), names, target, base)
