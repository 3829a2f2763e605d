"""The model registry: ``get_model("hnn", dof=1)`` or ``get_model("pkg.mod:MyModel", dof=1)``."""

from __future__ import annotations

import inspect
from typing import Any

from hnnlab._registry import Registry
from hnnlab.errors import InvalidArgumentError
from hnnlab.models.base import AbstractModel

MODELS: Registry[type[AbstractModel]] = Registry("model", AbstractModel)
register_model = MODELS.register


def get_model(name_or_class_path: str, **kwargs: Any) -> AbstractModel:
    """Build a model from a registered name or ``package.module:ClassName`` and its arguments.

    Raises:
        UnknownNameError: the name is not registered (the message lists the valid names).
        InvalidArgumentError: an argument the model does not have, or a value it does not allow.
    """
    cls = MODELS.get(name_or_class_path)
    allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        raise InvalidArgumentError(
            f"model {name_or_class_path!r} has no argument {unknown[0]!r}; its arguments are: {', '.join(allowed)}"
        )
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a missing required argument such as dof
        raise InvalidArgumentError(f"model {name_or_class_path!r}: {exc}") from None
