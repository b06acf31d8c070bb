"""``python tests/reliability/held_frogs.py OVERRIDES...``: frogs whose job holds still mid-trial.

With ``FROGS_TEST_HOLD=PATH:N`` in the environment, the (N+1)-th trial of the process (across
every job of a multirun) writes ``PATH`` as soon as it starts and then waits to be killed. A kill
test waits for ``PATH`` and kills there: after exactly N complete records, inside a trial, at a
point the test controls instead of a race against the job's speed. With
``FROGS_TEST_HOLD_PRETRAIN=PATH``, the clean model's pretraining writes ``PATH`` when it starts
and waits instead: a kill inside the cold-cache build, before anything is cached.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import frogs.experiment.run
import frogs.models.pretrain
from frogs.cli import main


def hold_at(path: Path, trials_before: int) -> None:
    """Wrap ``frogs.experiment.run.run_trial`` so that call ``trials_before + 1`` blocks."""
    run_trial = frogs.experiment.run.run_trial
    calls = 0

    def held(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls > trials_before:
            path.write_text(str(calls))
            while True:
                time.sleep(60)
        return run_trial(*args, **kwargs)

    frogs.experiment.run.run_trial = held


def hold_pretraining(path: Path) -> None:
    """Make ``frogs.models.pretrain._pretrain`` write ``path`` and block instead of training."""

    def held(*args, **kwargs):
        path.write_text("pretraining")
        while True:
            time.sleep(60)

    frogs.models.pretrain._pretrain = held


if __name__ == "__main__":
    hold = os.environ.get("FROGS_TEST_HOLD")
    if hold:
        where, count = hold.rsplit(":", 1)
        hold_at(Path(where), int(count))
    if os.environ.get("FROGS_TEST_HOLD_PRETRAIN"):
        hold_pretraining(Path(os.environ["FROGS_TEST_HOLD_PRETRAIN"]))
    sys.argv[0] = "frogs"
    main()
