"""``python tests/reliability/held_frogs.py OVERRIDES...``: frogs whose job holds still mid-trial.

With ``FROGS_TEST_HOLD=PATH:N`` in the environment, the (N+1)-th trial of the process (across
every job of a multirun) writes ``PATH`` as soon as it starts and then waits to be killed. A kill
test waits for ``PATH`` and kills there: after exactly N complete records, inside a trial, at a
point the test controls instead of a race against the job's speed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import frogs.experiment
from frogs.cli import main


def hold_at(path: Path, trials_before: int) -> None:
    """Wrap ``frogs.experiment.run_trial`` so that call ``trials_before + 1`` blocks."""
    run_trial = frogs.experiment.run_trial
    calls = 0

    def held(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls > trials_before:
            path.write_text(str(calls))
            while True:
                time.sleep(60)
        return run_trial(*args, **kwargs)

    frogs.experiment.run_trial = held


if __name__ == "__main__":
    hold = os.environ.get("FROGS_TEST_HOLD")
    if hold:
        where, count = hold.rsplit(":", 1)
        hold_at(Path(where), int(count))
    sys.argv[0] = "frogs"
    main()
