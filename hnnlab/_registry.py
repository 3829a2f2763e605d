"""A small name -> class registry shared by systems, integrators and recipes.

Anything that takes a registered name also takes ``package.module:ClassName`` so that users can plug in
their own classes without registering them.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from hnnlab.errors import InvalidArgumentError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to classes (or factories) of one kind, e.g. ``"integrator"``."""

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator that registers ``cls`` under ``name``."""

        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} name {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name_or_path: str) -> T:
        """Return the entry for a registered name or a ``package.module:ClassName`` path."""
        if not isinstance(name_or_path, str):
            raise UnknownNameError(
                f"{self.kind} must be given as a string name, got {type(name_or_path).__name__}; "
                f"valid names: {', '.join(self.names())}, or 'package.module:ClassName'"
            )
        if name_or_path in self._entries:
            return self._entries[name_or_path]
        if ":" in name_or_path:
            return self._import(name_or_path)
        close = difflib.get_close_matches(name_or_path, self.names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"unknown {self.kind} {name_or_path!r}.{hint} Valid names: {', '.join(self.names())}, "
            "or 'package.module:ClassName' for your own class."
        )

    def build(self, name_or_path: str, noun: str = "parameter", /, **kwargs: object) -> object:
        """Construct the entry for ``name_or_path`` from keyword arguments, with clear errors.

        Keywords the constructor does not take are refused before it runs, with a message that lists the
        ones it takes (``noun`` names them: "parameter", "option", "argument"); a ``TypeError`` from the
        constructor (a missing required argument, a wrong type) becomes an :class:`InvalidArgumentError`.
        """
        cls = self.get(name_or_path)
        allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
        unknown = [k for k in kwargs if k not in allowed]
        if unknown:
            raise InvalidArgumentError(
                f"{self.kind} {name_or_path!r} has no {noun} {unknown[0]!r}; its {noun}s are: "
                f"{', '.join(allowed) or '(none)'}"
            )
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise InvalidArgumentError(f"{self.kind} {name_or_path!r}: {exc}") from None

    def _import(self, path: str) -> T:
        module_name, _, attr = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UnknownNameError(
                f"cannot import module {module_name!r} for {self.kind} {path!r}: {exc}"
            ) from None
        try:
            obj = getattr(module, attr)
        except AttributeError:
            raise UnknownNameError(
                f"module {module_name!r} has no attribute {attr!r} (from {self.kind} {path!r})"
            ) from None
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise UnknownNameError(
                f"{path!r} is not a subclass of {self.base.__module__}.{self.base.__qualname__}; "
                f"a custom {self.kind} must subclass it"
            )
        return obj
