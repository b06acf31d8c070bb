"""Hydra glue: register the schemas, turn a composed DictConfig into typed, validated settings.

Only this module and ``frogs.cli`` import Hydra/OmegaConf.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from frogs.settings import JobSettings, validate

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


def register_schemas() -> None:
    """Store the job schema so that every YAML composes against it (typos fail at composition)."""
    ConfigStore.instance().store(name="frogs_schema", node=JobSettings)


def to_settings(cfg: DictConfig) -> JobSettings:
    """Turn a composed config into validated ``JobSettings``."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(JobSettings), plain))
    return validate(settings)


def compose_settings(overrides: Sequence[str] = ()) -> JobSettings:
    """The validated settings that ``frogs OVERRIDES`` would run with (Hydra's compose API), for
    commands and code that need a job's settings without running the Hydra app."""
    register_schemas()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return to_settings(compose("config", overrides=list(overrides)))
