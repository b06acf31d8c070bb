"""One registry per kind of thing (dataset, model, attack, victim): a name maps to one builder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from frogs.errors import ConfigError

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    """A named table of builders, filled by the ``@registry.register("name")`` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(builder: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = builder
            return builder

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
