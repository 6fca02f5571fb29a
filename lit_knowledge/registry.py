"""A small name -> object registry that answers a typo with 'did you mean ...'.

An entry is either the object itself (`@REG.register(name)`) or a "module:attr" string
(`REG.register_lazy(name, "pkg.module:Class")`) that `get` imports the first time the name is asked
for: a registry of heavy objects (the methods, which import torch and Lightning) stays cheap to list.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from lit_knowledge.errors import UserError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T | str] = {}
        self._lazy: set[str] = set()  # names whose entry is still a "module:attr" string

    def _add(self, name: str, obj) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self._add(name, obj)
            return obj

        return deco

    def register_lazy(self, name: str, target: str) -> None:
        """Register `name` as "module:attr", imported by the first `get(name)`."""
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: lazy target {target!r} must look like 'module:attr'")
        self._add(name, target)
        self._lazy.add(name)

    def check(self, name: str) -> None:
        """Raise the did-you-mean UserError for an unknown name, importing nothing."""
        if name not in self._items:
            raise UserError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}; "
                f"choose one of: {', '.join(sorted(self._items))}"
            )

    def get(self, name: str) -> T:
        self.check(name)
        if name in self._lazy:
            module, _, attr = self._items[name].partition(":")
            self._items[name] = getattr(importlib.import_module(module), attr)
            self._lazy.discard(name)
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
