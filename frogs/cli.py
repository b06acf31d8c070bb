"""The ``frogs`` command: a thin Hydra entry point around ``frogs.experiment.run.run``.

``frogs [overrides]`` runs one job (``-m`` for a multirun sweep); ``frogs pretrain [--out PATH]
[overrides]`` writes the clean model of a config as a checkpoint (``frogs.models.pretrain_cli``);
``frogs sweep-status DIR`` reports a sweep's progress; ``frogs migrate-ids DIR`` rewrites the
ids of records written under the earlier identity rule (``frogs.store.migrate``). Errors in
configuration or data print one line naming the bad value and exit with status 2, before any
heavy work.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig

from frogs.config.compose import CONFIG_DIR, error_line, register_schemas, to_settings
from frogs.config.plugins import search_path_override
from frogs.errors import FrogsError
from frogs.experiment.run import run
from frogs.store.report import summary_table

log = logging.getLogger("frogs")

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
    """Console-script entry: subcommands first, else the Hydra app.

    Hydra's own errors (an unknown config group option, a misspelt key, an output directory that
    cannot be created) become one ``frogs: error:`` line and exit status 2 as well; set
    ``HYDRA_FULL_ERROR=1`` for the full traceback instead.
    """
    if len(sys.argv) > 1 and sys.argv[1] == "sweep-status":
        from frogs.store.status import main as status_main

        raise SystemExit(status_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "migrate-ids":
        from frogs.store.migrate import main as migrate_main

        raise SystemExit(migrate_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "pretrain":
        from frogs.models.pretrain_cli import main as pretrain_main

        raise SystemExit(pretrain_main(sys.argv[2:]))
    sys.argv += search_path_override(sys.argv[1:])  # plugins' YAML folders (frogs.config.plugins)
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its own report
    try:
        hydra_main()
    except (HydraException, OSError) as exc:
        print(f"frogs: error: {error_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        del os.environ["HYDRA_FULL_ERROR"]
