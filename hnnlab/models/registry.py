"""The model registry: ``get_model("hnn", dof=1)`` or ``get_model("pkg.mod:MyModel", dof=1)``."""

from __future__ import annotations

from typing import Any

from hnnlab._registry import Registry
from hnnlab.models.base import AbstractModel

MODELS: Registry[type[AbstractModel]] = Registry("model", AbstractModel)
register_model = MODELS.register


def get_model(name_or_class_path: str, **kwargs: Any) -> AbstractModel:
    """Build a model from a registered name or ``package.module:ClassName`` and its arguments.

    Raises:
        UnknownNameError: the name is not registered (the message lists the valid names).
        InvalidArgumentError: an argument the model does not have, or a value it does not allow.
    """
    return MODELS.build(name_or_class_path, "argument", **kwargs)  # type: ignore[return-value]
