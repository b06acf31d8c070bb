"""Hydra glue: register the schemas, turn a composed DictConfig into typed, validated settings.

Only this module and ``frogs.cli`` import Hydra/OmegaConf.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from frogs.config.plugins import load_plugins, search_path_override
from frogs.config.registry import Registry, import_builtins
from frogs.config.settings import (
    JobSettings,
    validate,
)
from frogs.errors import ConfigError
from frogs.store.identity import job_folder_excluded_keys

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def option_registries() -> dict[str, Registry]:
    """The config groups whose options each have their own settings schema, by group name
    (built-ins and plugins loaded)."""
    from frogs.attacks import ATTACKS
    from frogs.data.datasets import DATASETS
    from frogs.defenses import DEFENSES
    from frogs.models.architectures import MODELS
    from frogs.victims import VICTIMS

    import_builtins("frogs.attacks")
    import_builtins("frogs.defenses")
    import_builtins("frogs.victims")
    load_plugins()
    return {
        "dataset": DATASETS,
        "model": MODELS,
        "attack": ATTACKS,
        "defense": DEFENSES,
        "victim": VICTIMS,
    }


def register_resolvers() -> None:
    """OmegaConf resolvers the YAML uses: ``${frogs_excluded_keys:}`` is Hydra's
    ``override_dirname.exclude_keys`` (conf/config.yaml), from the one list in
    ``frogs.store.records``."""
    OmegaConf.register_new_resolver("frogs_excluded_keys", job_folder_excluded_keys, replace=True)


def register_schemas() -> None:
    """Store the job schema and one schema per group option (``GROUP/base_NAME``, named in each
    option's YAML defaults list), so that every YAML composes against its option's dataclass and
    a key the option does not have fails at composition. A schema already stored is not stored
    again (Hydra copies a stored node on every load), so composing many jobs in one process
    converts each dataclass once."""
    register_resolvers()
    _store_once(None, "frogs_schema", JobSettings)
    for group, registry in option_registries().items():
        for name, schema in registry.schemas().items():
            _store_once(group, f"base_{name}", schema)


def _store_once(group: str | None, name: str, schema: type) -> None:
    """``ConfigStore.store`` unless the store holds what this function stored for that schema."""
    stored = _STORED.get((group, name))
    if stored is not None and stored[0] is schema and stored[1] is _stored_node(group, name):
        return
    ConfigStore.instance().store(group=group, name=name, node=writable_schema(schema))
    _STORED[(group, name)] = (schema, _stored_node(group, name))


def _stored_node(group: str | None, name: str) -> object | None:
    """The ConfigStore's entry for ``GROUP/NAME`` (not a copy), or None."""
    folder = ConfigStore.instance().repo
    for part in group.split("/") if group else ():
        folder = folder.get(part, {})
    return folder.get(f"{name}.yaml")


_STORED: dict[tuple[str | None, str], tuple[type, object]] = {}  # what _store_once stored


@cache
def writable_schema(schema: type) -> DictConfig:
    """A settings dataclass as a typed config that composition may write into: the settings are
    frozen (read-only once built), which OmegaConf would carry over to the config as read-only
    and so refuse every YAML value and override. Converted once per dataclass and shared: never
    changed in place (``OmegaConf.merge`` and ``ConfigStore.store`` copy it)."""
    node = OmegaConf.structured(schema)
    _clear_readonly(node)
    OmegaConf.set_readonly(node, False)
    return node


def _clear_readonly(node: DictConfig) -> None:
    """Drop the read-only flag a frozen dataclass gives its node and each nested one."""
    OmegaConf.set_readonly(node, None)
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            _clear_readonly(child)


def to_settings(cfg: DictConfig) -> JobSettings:
    """Turn a composed config into validated ``JobSettings``: each group option becomes the
    dataclass its ``name`` is registered with (an unknown name is one ConfigError line)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    options = {}
    for group, registry in option_registries().items():
        node = plain.pop(group, None) or {}
        if not node.get("name"):
            raise ConfigError(
                f"the config names no {group} option; choose one of "
                f"{', '.join(sorted(registry.schemas()))} ({group}=NAME)"
            )
        schema = registry.settings_class(node["name"])
        options[group] = OmegaConf.to_object(OmegaConf.merge(writable_schema(schema), node))
    settings = OmegaConf.to_object(OmegaConf.merge(writable_schema(JobSettings), plain))
    return validate(replace(settings, **options))


def compose_config(
    overrides: Sequence[str] = (),
    *,
    config_dir: str | Path = CONFIG_DIR,
    config_name: str = "config",
    return_hydra_config: bool = False,
) -> DictConfig:
    """The config that ``frogs [--config-dir DIR --config-name NAME] OVERRIDES`` composes, through
    Hydra's compose API (``return_hydra_config``: with the ``hydra`` node, e.g. a sweep's grid).
    Another ``config_dir`` (``sweeps/``) gets conf/ and the plugins' folders on its search path,
    as ``--config-dir`` does."""
    register_schemas()
    overrides = list(overrides)
    first = [] if Path(config_dir) == CONFIG_DIR else [CONFIG_DIR]
    search = search_path_override(overrides, first)
    with initialize_config_dir(str(config_dir), version_base="1.3"):
        return compose(
            config_name, overrides=overrides + search, return_hydra_config=return_hydra_config
        )


def compose_settings(
    overrides: Sequence[str] = (),
    *,
    config_dir: str | Path = CONFIG_DIR,
    config_name: str = "config",
) -> JobSettings:
    """The validated settings that ``frogs OVERRIDES`` would run with (``compose_config``), for
    commands and code that need a job's settings without running the Hydra app; ``config_dir``
    and ``config_name`` name another primary config (one job of a sweep file)."""
    return to_settings(compose_config(overrides, config_dir=config_dir, config_name=config_name))


def error_line(exc: BaseException) -> str:
    """A Hydra, OmegaConf or OS error as one line, with the OmegaConf cause Hydra wraps."""
    message = str(exc)
    if isinstance(exc.__cause__, OmegaConfBaseException):
        message += f"\n{exc.__cause__}"
    return _one_line(message)


def _one_line(text: str) -> str:
    """Hydra's multi-line report as one line: indented list items joined with commas."""
    parts: list[str] = []
    for line in text.split("Config search path:")[0].splitlines():
        if not line.strip():
            continue
        if line[0].isspace() and parts:
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line.strip()
        else:
            parts.append(line.strip().rstrip("."))
    return "; ".join(parts)
