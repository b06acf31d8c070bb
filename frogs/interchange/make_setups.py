"""Build a poisoning-benchmark setups file for a frogs dataset, the benchmark's way.

Each setup draws, from its own seeded stream: a target class and a different base class
uniformly, a target uniformly among that class's test images, and ``num_poisons`` distinct bases
among the base class's training images that the victim trains on (``train_per_class`` per class,
drawn as the transfer victim draws its training set, so that every poison has a base to
replace). The criterion is stated before any attack runs: uniform random pairs and images, as the
benchmark's own setups are.

    python -m frogs.interchange.make_setups dataset=cifar10 --out setups.pickle \
        --count 10 --poisons 25 --train-per-class 250
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np
import torch

from frogs.data.datasets import ImageData, per_class_subset
from frogs.errors import ConfigError
from frogs.interchange.benchmark import Setup, write_setups

log = logging.getLogger(__name__)


def random_setups(
    data: ImageData,
    *,
    count: int,
    num_poisons: int,
    train_per_class: int | None,
    subsample_seed: int = 0,
    seed: int = 0,
) -> list[Setup]:
    """``count`` setups of uniform random pairs, targets and bases (see the module docstring);
    ``train_per_class`` and ``subsample_seed`` are the victim's ``dataset.*`` knobs."""
    classes = list(range(len(data.class_names)))
    training = per_class_subset(data.train_y, classes, train_per_class, subsample_seed)
    setups = []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        target_class, base_class = (int(c) for c in rng.choice(classes, 2, replace=False))
        targets = torch.nonzero(data.test_y == target_class).flatten().numpy()
        bases = training[data.train_y[training] == base_class].numpy()
        if len(bases) < num_poisons:
            raise ConfigError(
                f"--poisons {num_poisons} is not allowed: class {data.class_names[base_class]!r} "
                f"has {len(bases)} training images in the victim's set; expected at most that"
            )
        setups.append(
            Setup(
                target_class,
                int(rng.choice(targets)),
                base_class,
                tuple(int(b) for b in rng.choice(bases, num_poisons, replace=False)),
            )
        )
    return setups


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: dataset overrides as for ``frogs``, then where and how many."""
    from frogs.config.compose import compose_settings
    from frogs.data.datasets import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="frogs overrides, e.g. dataset=cifar10")
    parser.add_argument("--out", required=True, help="the setups file to write")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--poisons", type=int, default=25)
    parser.add_argument("--train-per-class", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = compose_settings(args.overrides)
    data = load_dataset(settings.dataset)
    setups = random_setups(
        data,
        count=args.count,
        num_poisons=args.poisons,
        train_per_class=args.train_per_class,
        subsample_seed=settings.dataset.subsample_seed,
        seed=args.seed,
    )
    write_setups(args.out, setups)
    for i, s in enumerate(setups):
        print(
            f"setup {i}: target {s.target_index} ({data.class_names[s.target_class]}) <- "
            f"{len(s.base_indices)} bases of {data.class_names[s.base_class]}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
