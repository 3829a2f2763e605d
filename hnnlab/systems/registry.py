"""The system registry: ``get_system("pendulum", g=3.0)`` or ``get_system("pkg.mod:MySystem")``."""

from __future__ import annotations

import inspect
from typing import Any

from hnnlab._registry import Registry
from hnnlab.errors import InvalidArgumentError
from hnnlab.systems.base import AbstractSystem

SYSTEMS: Registry[type[AbstractSystem]] = Registry("system", AbstractSystem)
register_system = SYSTEMS.register


def get_system(name_or_class_path: str, **params: Any) -> AbstractSystem:
    """Build a system from a registered name or ``package.module:ClassName`` and its parameters.

    Raises:
        UnknownNameError: the name is not registered (the message lists the valid names).
        InvalidArgumentError: a parameter the system does not have, or a value it does not allow.
    """
    cls = SYSTEMS.get(name_or_class_path)
    signature = inspect.signature(cls)
    allowed = [p for p in signature.parameters if p not in ("self",)]
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise InvalidArgumentError(
            f"system {name_or_class_path!r} has no parameter {unknown[0]!r}; its parameters are: "
            f"{', '.join(allowed) or '(none)'}"
        )
    try:
        return cls(**params)
    except TypeError as exc:  # wrong types inside dataclass post-init arithmetic, etc.
        raise InvalidArgumentError(f"system {name_or_class_path!r}: {exc}") from None
