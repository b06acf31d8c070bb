"""The ``frogs`` command: a thin Hydra entry point around ``frogs.experiment.run``.

``frogs [overrides]`` runs one job (``-m`` for a multirun sweep). Errors in configuration or data
print one line naming the bad value and exit with status 2, before any heavy work.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from frogs.config import register_schemas, to_settings
from frogs.errors import FrogsError
from frogs.experiment import run
from frogs.report import summary_table

log = logging.getLogger("frogs")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"

register_schemas()


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    """Run one job of trials into Hydra's output directory and print its table."""
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        settings = to_settings(cfg)
        records = run(settings, output_dir)
    except FrogsError as exc:
        log.error("%s", exc)
        print(f"frogs: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(summary_table(records, output_dir))


def main() -> None:
    """Console-script entry: subcommands first, else the Hydra app."""
    if len(sys.argv) > 1 and sys.argv[1] == "sweep-status":
        from frogs.status import main as status_main

        raise SystemExit(status_main(sys.argv[2:]))
    hydra_main()
