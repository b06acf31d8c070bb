"""Independent seed streams of a job: one per (job seed, stream, trial), so that target
choice, base choice and crafting never share randomness."""

from __future__ import annotations

import numpy as np

_STREAMS = {"targets": 1, "bases": 2, "craft": 3}


def stream_seed(seed: int, stream: str, index: int = 0) -> int:
    """An independent seed per (job seed, stream, trial) so streams never share randomness."""
    sequence = np.random.SeedSequence([seed, _STREAMS[stream], index])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1)
