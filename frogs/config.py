"""Hydra glue: register the schemas, turn a composed DictConfig into typed, validated settings.

Only this module and ``frogs.cli`` import Hydra/OmegaConf.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from frogs.settings import JobSettings, validate


def register_schemas() -> None:
    """Store the job schema so that every YAML composes against it (typos fail at composition)."""
    ConfigStore.instance().store(name="frogs_schema", node=JobSettings)


def to_settings(cfg: DictConfig) -> JobSettings:
    """Turn a composed config into validated ``JobSettings``."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(JobSettings), plain))
    return validate(settings)
