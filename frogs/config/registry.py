"""One registry per kind of thing (dataset, model, attack, defense, victim): a name maps to one
builder and, for the groups whose options have their own knobs, to that option's settings schema.

The schemas are Hydra structured configs: ``frogs.config.compose.register_schemas`` stores each
one as ``GROUP/base_NAME`` so that the option's YAML names it in its defaults list, and
``frogs.config.compose.to_settings`` builds the option's dataclass from its ``name``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

from frogs.errors import ConfigError

T = TypeVar("T", bound=Callable)


def import_builtins(package: str) -> None:
    """Import every module of ``package`` (``frogs.attacks``, ``frogs.defenses``), so that each
    built-in option registers itself: a new built-in is a new module, with no list to extend."""
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{module.name}")


class Registry(Generic[T]):
    """A named table of builders, filled by the ``@registry.register("name")`` decorator."""

    def __init__(self, kind: str, default_schema: type | None = None) -> None:
        """``default_schema``: the settings of an option registered without its own (a dataset
        or model with no knobs beyond the group's)."""
        self.kind = kind
        self.default_schema = default_schema
        self._items: dict[str, T] = {}
        self._schemas: dict[str, type] = {}

    def register(self, name: str, settings: type | None = None) -> Callable[[T], T]:
        """Register a builder under ``name``; ``settings`` is the option's settings dataclass."""

        def add(builder: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = builder
            if settings is not None:
                self._schemas[name] = settings
            return builder

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def settings_class(self, name: str) -> type:
        """The settings dataclass of option ``name`` (a ConfigError naming the known ones)."""
        self.get(name)
        try:
            return self._schemas[name]
        except KeyError:
            if self.default_schema is not None:
                return self.default_schema
            raise ConfigError(f"{self.kind} {name!r} has no settings schema") from None

    def schemas(self) -> dict[str, type]:
        """Every registered option's settings dataclass, by name."""
        return {name: self.settings_class(name) for name in self._items}

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
