"""Trials whose target and bases a file fixes, as the poisoning-benchmark does it.

Two sources: a setups file (``target_selection=setups setups=PATH``: trial i is setup i) and
another tool's poisons (``attack=external attack.path=DIR``: trial i is the folder ``DIR/i``, in
the benchmark's layout). Either way the bases are *training* images and their poisons replace
them in the victim's training set (the benchmark's rule; frogs' own selection draws its bases
from the test split and adds the poisons, as the paper does). Everything here is checked against
the dataset before any model is loaded or trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from frogs.attacks.budget import quantize
from frogs.config.settings import JobSettings
from frogs.data.datasets import ImageData
from frogs.data.task import Task
from frogs.errors import ConfigError
from frogs.interchange.benchmark import Setup, check_setups, read_setups, read_trial_poisons


@dataclass(frozen=True)
class FixedTrial:
    """One trial a file fixes: the target (test split), the pair and the bases (training split).

    ``setup_index`` is the trial's setup in the setups file (None when the target came from a
    poison folder alone).
    """

    trial_index: int
    target_index: int
    target_label: int
    base_label: int
    base_indices: tuple[int, ...]
    setup_index: int | None


def setups_trials(path: str, data: ImageData, offset: int, count: int) -> list[FixedTrial]:
    """Trials ``offset .. offset+count-1`` of a setups file, checked against the dataset."""
    setups = read_setups(Path(path).expanduser())
    check_setups(
        setups, train_labels=data.train_y, test_labels=data.test_y, class_names=data.class_names
    )
    if offset + count > len(setups):
        raise ConfigError(
            f"trial_offset + trials = {offset + count} setups requested, but setups={path!r} "
            f"holds {len(setups)}; lower trials or trial_offset"
        )
    return [_from_setup(offset + i, setups[offset + i]) for i in range(count)]


def _from_setup(index: int, setup: Setup) -> FixedTrial:
    return FixedTrial(
        index,
        setup.target_index,
        setup.target_class,
        setup.base_class,
        tuple(setup.base_indices),
        index,
    )


def external_trials(
    folder: str,
    data: ImageData,
    offset: int,
    count: int,
    num_poisons: int,
    from_setups: list[FixedTrial] | None,
) -> list[FixedTrial]:
    """The trials of another tool's poison folders ``folder/<trial index>``.

    With a setups file the folder must hold that setup's bases and target; without one, the
    target is the test image whose 8-bit pixels equal the folder's target image, and the pair is
    the target's class and the poisons' label. Each folder must hold ``num_poisons`` poisons of
    one label, the base class (clean-label).
    """
    trials, folders = [], []
    for i in range(count):
        index = offset + i
        where = Path(folder).expanduser() / str(index)
        folders.append(str(where))
        trial = read_trial_poisons(where)
        found = len(trial.poisons)
        if found != num_poisons:
            raise ConfigError(
                f"{where} holds {found} poisons but attack.num_poisons={num_poisons}; expected "
                f"attack.num_poisons={found} (every trial of a job has the same count)"
            )
        labels = set(trial.poison_labels.tolist())
        bases = tuple(int(b) for b in trial.base_indices.tolist())
        if from_setups is not None:
            fixed = from_setups[i]
            if bases != fixed.base_indices:
                raise ConfigError(
                    f"{where}: its base indices are not those of setup {fixed.setup_index} of the "
                    "setups file; expected the folder the attack wrote for that setup"
                )
            _same_image(trial.target, data.test_x[fixed.target_index], where, fixed.target_index)
        else:
            target_index = _find_test_image(data, trial.target, where)
            base_label = min(labels)
            fixed = FixedTrial(
                index, target_index, int(data.test_y[target_index]), base_label, bases, None
            )
        if labels != {fixed.base_label}:
            raise ConfigError(
                f"{where}: poison labels {sorted(labels)} are not allowed for base class "
                f"{data.class_names[fixed.base_label]!r}; expected every poison labelled "
                f"{fixed.base_label} (clean-label)"
            )
        if int(trial.target_label) != fixed.target_label:
            raise ConfigError(
                f"{where}: target label {trial.target_label} is not the target's class "
                f"{fixed.target_label} ({data.class_names[fixed.target_label]!r})"
            )
        trials.append(fixed)
    # the one check of a setup against the dataset (a setups file's trials passed it already)
    if from_setups is None:
        check_setups(
            [Setup(t.target_label, t.target_index, t.base_label, t.base_indices) for t in trials],
            train_labels=data.train_y,
            test_labels=data.test_y,
            class_names=data.class_names,
            names=folders,
        )
    return trials


def _same_image(found: torch.Tensor, expected: torch.Tensor, where: Path, index: int) -> None:
    if found.shape != expected.shape or not torch.equal(quantize(found), quantize(expected)):
        raise ConfigError(
            f"{where}: its target image is not test image {index} of the setups file's setup"
        )


def _find_test_image(data: ImageData, target: torch.Tensor, where: Path) -> int:
    """The test index of the image whose 8-bit pixels equal ``target`` (the lowest, if several)."""
    if target.shape != data.test_x.shape[1:]:
        raise ConfigError(
            f"{where}: target image of shape {tuple(target.shape)} does not fit "
            f"{data.name} images {tuple(data.test_x.shape[1:])}"
        )
    wanted = quantize(target).flatten()
    for start in range(0, len(data.test_x), 2048):
        chunk = quantize(data.test_x[start : start + 2048]).flatten(1)
        hits = torch.nonzero((chunk == wanted).all(1)).flatten()
        if len(hits):
            return start + int(hits[0])
    raise ConfigError(
        f"{where}: its target image is none of the {data.name} test images; expected a test "
        "image (or target_selection=setups setups=PATH naming it)"
    )


def fixed_trials(settings: JobSettings, data: ImageData, task: Task) -> list[FixedTrial] | None:
    """The trials a setups file or external poisons fix, checked; None when neither does."""
    from_setups = None
    if settings.target_selection == "setups":
        from_setups = setups_trials(settings.setups, data, settings.trial_offset, settings.trials)
    trials = from_setups
    if from_setups is not None and settings.attack.name != "external":
        for trial in from_setups:
            if len(trial.base_indices) != settings.attack.num_poisons:
                raise ConfigError(
                    f"setup {trial.setup_index} of setups={settings.setups!r} has "
                    f"{len(trial.base_indices)} bases but attack.num_poisons="
                    f"{settings.attack.num_poisons}; expected attack.num_poisons="
                    f"{len(trial.base_indices)} (one poison per base)"
                )
    if settings.attack.name == "external":
        trials = external_trials(
            settings.attack.path,
            data,
            settings.trial_offset,
            settings.trials,
            settings.attack.num_poisons,
            from_setups,
        )
    if trials is not None:
        for trial in trials:
            for label, what in ((trial.target_label, "target"), (trial.base_label, "base")):
                if label not in task.classes:
                    raise ConfigError(
                        f"trial {trial.trial_index}: its {what} class "
                        f"{data.class_names[label]!r} is not a class of the victim task "
                        f"{list(task.names)}; expected dataset.task_classes=all (or a list "
                        "naming it)"
                    )
    return trials


def check_in_training_set(trials: list[FixedTrial], train_idx: torch.Tensor, victim: str) -> None:
    """Every base must be a training image of the victim (its poison replaces it)."""
    present = set(train_idx.tolist())
    for trial in trials:
        missing = [b for b in trial.base_indices if b not in present]
        if missing:
            raise ConfigError(
                f"trial {trial.trial_index}: base training image {missing[0]} is not in the "
                f"{victim} victim's training set ({len(present)} images), so no poison can "
                "replace it; expected bases drawn from the victim's training images (the "
                "end-to-end victim trains on the clean model's own; the transfer victim on "
                "dataset.train_per_class per class: try dataset.train_per_class=null)"
            )
