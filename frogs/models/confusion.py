"""Which pair of classes a clean model confuses most: the criterion behind a dataset's default task.

A clean-label poison can only move a target towards a base class whose features lie near the
target's; on a pair the clean model never confuses (p(base) 0 for every target) nothing within an
8/255 budget works. The criterion, fixed before any attack is run: the ordered pair
(target class, base class) with the largest off-diagonal entry of the clean model's confusion
matrix on the test split (test images that duplicate training images left out), i.e. the largest
fraction of target-class test images it labels as the base class. Ties go to the larger mean
p(base), then to the first pair in class order. CIFAR-10's bird -> dog, the paper's end-to-end
pair, is such a pair for its clean model.

    python -m frogs.models.confusion                      # the default dataset and clean model
    python -m frogs.models.confusion dataset=cifar10 model.checkpoint=../shared/models/...
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import confusion_matrix

from frogs.data.datasets import ImageData
from frogs.models.train import predict_in_batches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Confusion:
    """One ordered pair: the share of ``target`` test images labelled ``base`` and their mean
    p(base), over ``count`` test images of the target class."""

    target: str
    base: str
    rate: float
    mean_p_base: float
    count: int


def class_confusions(
    classify, data: ImageData, usable: torch.Tensor, classes: Sequence[int] | None = None
) -> list[Confusion]:
    """Every ordered pair of ``classes`` (default: all), most confused first (the module's
    criterion). ``classify`` maps a batch of images to logits over ``classes`` in that order;
    ``usable`` masks the test images that count."""
    if classes is None:
        classes = range(len(data.class_names))
    classes = list(classes)
    keep = usable & torch.isin(data.test_y, torch.tensor(classes))
    x, y = data.test_x[keep], data.test_y[keep]
    probs = torch.softmax(predict_in_batches(classify, x).float(), 1).cpu().numpy()
    rows = np.searchsorted(np.array(classes), y.numpy())
    predicted = probs.argmax(1)
    matrix = confusion_matrix(rows, predicted, labels=range(len(classes)), normalize="true")
    pairs = []
    for t, target in enumerate(classes):
        of_target = rows == t
        for b, base in enumerate(classes):
            if b == t:
                continue
            pairs.append(
                Confusion(
                    data.class_names[target],
                    data.class_names[base],
                    float(matrix[t, b]),
                    float(probs[of_target, b].mean()),
                    int(of_target.sum()),
                )
            )
    order = sorted(range(len(pairs)), key=lambda i: (-pairs[i].rate, -pairs[i].mean_p_base, i))
    return [pairs[i] for i in order]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: frogs overrides for the dataset and clean model; prints the top pairs."""
    from frogs.config.compose import compose_settings
    from frogs.data.datasets import load_dataset
    from frogs.experiment.prepare import cached_duplicates, resolve_device
    from frogs.models.pretrain import load_clean_model
    from frogs.store.cache import ArtifactCache

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="frogs overrides, e.g. dataset=cifar10")
    parser.add_argument("--top", type=int, default=5, help="pairs to print")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)  # as analysis.cli
    settings = compose_settings(args.overrides)
    device = resolve_device(settings.device)
    data = load_dataset(settings.dataset)
    cache = ArtifactCache(Path(settings.cache_dir).expanduser())
    clean = load_clean_model(data, settings.model, cache, device, progress=settings.progress)
    classes = clean.classes or tuple(range(len(data.class_names)))
    usable = ~cached_duplicates(data, cache)

    def classify(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return clean.model(batch.to(device))

    pairs = class_confusions(classify, data, usable, classes)
    print(f"{'target':>14} -> {'base':<14} {'labelled base':>13} {'mean p(base)':>12}  images")
    for pair in pairs[: args.top]:
        print(
            f"{pair.target:>14} -> {pair.base:<14} {pair.rate:>13.3f} {pair.mean_p_base:>12.3f}"
            f"  {pair.count}"
        )


if __name__ == "__main__":
    main()
