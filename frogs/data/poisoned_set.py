"""The poisoned training set: the value crafting hands to the defense and the defense to
retraining (``frogs.victims``), in its own module so that retraining does not import the defense
package. Defenses get it as ``frogs.defenses.PoisonedSet`` (their contract)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PoisonedSet:
    """The victim's training set with the poisons appended: clean rows first, then poisons.

    ``inputs`` are images in [0, 1] pixels (N,C,H,W), ``labels`` task rows (N,), ``is_poison``
    (N,) marks the attacker's rows. Clean-label: every poison carries the base class's label.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    is_poison: torch.Tensor
    #: the victim's clean training rows the clean part holds, in order (None: all of them); the
    #: poisoning-benchmark's rule leaves out the bases its poisons replace
    clean_rows: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not len(self.inputs) == len(self.labels) == len(self.is_poison):
            raise ValueError("inputs, labels and is_poison must have one row per sample")
        if self.clean_rows is not None and len(self.clean_rows) != self.num_clean:
            raise ValueError("clean_rows must name one victim training row per clean row")

    @property
    def num_clean(self) -> int:
        return int((~self.is_poison).sum())

    def subset(self, keep: torch.Tensor) -> PoisonedSet:
        """The rows ``keep`` marks, in their order (clean rows stay before poisons)."""
        keep = keep.to(self.inputs.device)
        rows = None
        if self.clean_rows is not None:
            rows = self.clean_rows[keep[~self.is_poison].to(self.clean_rows.device)]
        return PoisonedSet(self.inputs[keep], self.labels[keep], self.is_poison[keep], rows)
