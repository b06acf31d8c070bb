"""The seed streams of a job, so that target choice, base choice, crafting and retraining never
share randomness.

Targets, bases and crafting draw one seed per (job seed, stream, trial). Retraining has one seed
set per job, not per trial: the clean-retrained control and every poisoned victim must start from
the same initialisation and see the same clean batches, so that they differ by the poisons alone.
"""

from __future__ import annotations

import numpy as np

from frogs.models.train import TrainSeeds

_STREAMS = {"targets": 1, "bases": 2, "craft": 3}


def stream_seed(seed: int, stream: str, index: int = 0) -> int:
    """An independent seed per (job seed, stream, trial) so streams never share randomness."""
    sequence = np.random.SeedSequence([seed, _STREAMS[stream], index])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1)


def retrain_seeds(seed: int) -> TrainSeeds:
    """The retraining stream of the job whose seed is ``seed``: the job seed itself for the
    initialisation and the batch order, the seed + 1 for the poisons' slots. These are the values
    retraining used before the stream had a name, kept so that every recorded outcome (the
    committed studies' included) stands; unlike the other streams they are not drawn from a
    ``SeedSequence``, which would change every retraining run."""
    return TrainSeeds(init=seed, order=seed, slots=seed + 1)
