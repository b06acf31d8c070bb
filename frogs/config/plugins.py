"""Plugins: attacks, defenses and victims defined outside frogs.

A plugin is a Python module, named by an entry point of the group ``frogs.plugins`` in its
distribution's metadata, e.g. in ``pyproject.toml``::

    [project.entry-points."frogs.plugins"]
    my_attack = "my_package.my_attack"

Importing the module registers its options (``@ATTACKS.register("my_attack", MySettings)``, the
same decorator the built-ins use). Its YAML files live in a config folder laid out like
frogs' ``conf/`` (``attack/my_attack.yaml``, whose defaults list names ``base_my_attack``): the
module's ``FROGS_CONFIG_DIR`` if it defines one, else a ``conf`` folder beside the module. frogs
adds every such folder to Hydra's config search path, so ``frogs attack=my_attack`` composes,
runs and records it like a built-in. See README "Extending frogs".
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from frogs.errors import ConfigError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "frogs.plugins"


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin: its entry point's name, its module and its config folder (if any)."""

    name: str
    module: str
    config_dir: Path | None


@functools.cache
def load_plugins() -> tuple[Plugin, ...]:
    """Import every ``frogs.plugins`` entry point once; a plugin that fails to import is a
    ConfigError naming it (a half-loaded plugin would fail later and less clearly)."""
    plugins = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        try:
            module = importlib.import_module(point.value.split(":")[0])
        except Exception as exc:
            raise ConfigError(
                f"frogs plugin {point.name!r} ({point.value}) cannot be imported: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        config_dir = getattr(module, "FROGS_CONFIG_DIR", None)
        if config_dir is None and getattr(module, "__file__", None):
            beside = Path(module.__file__).resolve().parent / "conf"
            config_dir = beside if beside.is_dir() else None
        plugins.append(
            Plugin(point.name, module.__name__, Path(config_dir) if config_dir else None)
        )
        log.debug("loaded frogs plugin %s from %s", point.name, point.value)
    return tuple(plugins)


def search_path_override(overrides: list[str], first: Sequence[Path] = ()) -> list[str]:
    """The Hydra override that adds ``first`` and the plugins' config folders to the search path,
    unless the command line sets ``hydra.searchpath`` itself (then it is the user's to complete)."""
    plugins = [p.config_dir for p in load_plugins() if p.config_dir is not None]
    folders = [str(folder) for folder in (*first, *plugins)]
    if not folders or any(o.lstrip("+~").startswith("hydra.searchpath") for o in overrides):
        return []
    listed = ",".join(f"'file://{folder}'" for folder in folders)
    return [f"hydra.searchpath=[{listed}]"]
