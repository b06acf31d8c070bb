"""Optional per-trial artefacts: poison images (tensors + PNG grid) and feature-space snapshots."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from frogs.data.task import Task
from frogs.store.atomic import atomic_write
from frogs.store.cache import save_tensors

MIN_CELL = 96  # pixels: small images (28x28, 32x32) are enlarged so a reader can judge them
PERTURBATION_GAIN = 10.0


def poison_grid(
    target: torch.Tensor, bases: torch.Tensor, watermarked: torch.Tensor, poisons: torch.Tensor
) -> torch.Tensor:
    """One image: rows target, base, crafting start, poison, |poison - base| x 10 (one column
    per poison), enlarged with nearest-neighbour pixels so that a labeller can look at it."""
    from torchvision.utils import make_grid

    columns = len(bases)
    perturbation = ((poisons - bases).abs() * PERTURBATION_GAIN).clamp(0, 1)
    rows = torch.cat(
        [target.unsqueeze(0).expand(columns, -1, -1, -1), bases, watermarked, poisons, perturbation]
    ).cpu()
    scale = max(1, -(-MIN_CELL // rows.shape[-1]))
    if scale > 1:
        rows = torch.nn.functional.interpolate(rows, scale_factor=scale, mode="nearest")
    return make_grid(rows, nrow=columns, padding=4, pad_value=1.0)


def save_trial_poisons(
    output_dir: Path,
    trial_index: int,
    target: torch.Tensor,
    bases: torch.Tensor,
    watermarked: torch.Tensor,
    poisons: torch.Tensor,
    task: Task,
) -> str:
    """Save target, bases, poisons as tensors and a PNG grid (``poison_grid``)."""
    from torchvision.utils import save_image

    relative = Path("poisons") / f"trial_{trial_index}.pt"
    tensors = {
        "target": target.cpu(),
        "bases": bases.cpu(),
        "watermarked": watermarked.cpu(),
        "poisons": poisons.cpu(),
        "target_label": torch.tensor(task.target_label),
        "base_label": torch.tensor(task.base_label),
    }
    save_tensors(output_dir / relative, tensors)
    grid = poison_grid(target, bases, watermarked, poisons)
    atomic_write(
        output_dir / relative.with_suffix(".png"),
        lambda handle: save_image(grid, handle, format="png"),
    )
    return os.fspath(relative)


def save_benchmark_poisons(
    output_dir: Path,
    trial_index: int,
    target: torch.Tensor,
    base_indices: torch.Tensor,
    poisons: torch.Tensor,
    task: Task,
) -> str:
    """Save a trial's poisons in the poisoning-benchmark's layout (``poison_format=benchmark``):
    ``poisons/benchmark/<trial index>/``, which its ``poison_test.py`` and the defenses that read
    its format load unchanged, and ``attack=external`` reads back. Labels are dataset classes."""
    from frogs.interchange.benchmark import write_trial_poisons

    relative = Path("poisons") / "benchmark" / str(trial_index)
    write_trial_poisons(
        output_dir / relative,
        poisons=poisons.cpu(),
        poison_labels=task.base_label,
        base_indices=base_indices.cpu(),
        target=target.cpu(),
        target_label=task.target_label,
    )
    return os.fspath(relative)


def save_trial_features(
    output_dir: Path,
    trial_index: int,
    victim,
    poisoned,
    target: torch.Tensor,
    poisons: torch.Tensor,
    sample: int,
) -> str:
    """Penultimate features of target, poisons and a class sample, clean vs poisoned (Fig. 3)."""
    task = victim.task
    generator = torch.Generator().manual_seed(trial_index)
    picks = {}
    for name, row in (("target_class", task.target_row), ("base_class", task.base_row)):
        idx = torch.nonzero(victim.data.train_y.cpu() == row).flatten()
        chosen = idx[torch.randperm(len(idx), generator=generator)[:sample]]
        picks[name] = victim.data.train_x[chosen]
    clean_weight, clean_bias = victim.evaluator.clean_head_parameters()
    views = {}
    with torch.no_grad():
        for view, features, weight, bias in (
            ("clean", victim.evaluator.feature_fn, clean_weight, clean_bias),
            ("poisoned", poisoned.features, poisoned.head_weight, poisoned.head_bias),
        ):
            views[view] = {
                "target": features(target.unsqueeze(0))[0].cpu(),
                "poisons": features(poisons).cpu(),
                **{name: features(images).cpu() for name, images in picks.items()},
                "head_weight": weight.cpu(),
                "head_bias": bias.cpu(),
            }
    relative = Path("features") / f"trial_{trial_index}.pt"
    save_tensors(
        output_dir / relative,
        {
            **views,
            "target_task_index": torch.tensor(task.target_row),
            "base_task_index": torch.tensor(task.base_row),
        },
    )
    return os.fspath(relative)
