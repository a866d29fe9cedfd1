"""One registry type for every name -> entry table (coefficients, sources, rewards, hint sources,
answer formats), so each is filled by decorators where its entries are defined, and a bad name
gives one error type with the allowed names in its message.

    COEFFICIENTS = Registry[CoefficientFn]("gradient coefficient")

    @COEFFICIENTS.register("sft")
    def sft(...): ...

    COEFFICIENTS.get("stf")   # UnknownNameError: unknown gradient coefficient 'stf'; allowed: ...

A registry is a mutable mapping (``name in R``, ``sorted(R)``, ``R.items()``, ``R.pop(name)``);
``R.get(name)`` raises instead of returning None unless a default is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_MISSING: Any = object()


class UnknownNameError(KeyError, ValueError):
    """A name no registry entry has; a KeyError for mapping code and a ValueError for callers
    that validate input. The message names the kind of entry and the allowed names."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


class Registry(MutableMapping[str, T], Generic[T]):
    """``name -> entry`` for one kind of entry (``kind`` names it in errors); ``hint`` is added to
    the unknown-name message (e.g. how to use an entry that is not registered)."""

    def __init__(self, kind: str, *, hint: str = "") -> None:
        self.kind, self.hint = kind, hint
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding the decorated object under ``name`` (a name is registered once)."""

        def add(entry: T) -> T:
            self.add(name, entry)
            return entry

        return add

    def add(self, name: str, entry: T) -> None:
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    def get(self, name: str, default: Any = _MISSING) -> T:  # type: ignore[override]
        """The entry called ``name``; :class:`UnknownNameError` (or ``default``) when there is none."""
        if name in self._entries:
            return self._entries[name]
        if default is not _MISSING:
            return default
        raise UnknownNameError(f"unknown {self.kind} {name!r}; allowed: "
                               f"{', '.join(sorted(self._entries)) or '(none)'}{self.hint}")

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __setitem__(self, name: str, entry: T) -> None:
        self.add(name, entry)

    def __delitem__(self, name: str) -> None:
        self.get(name)
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"
