"""The integrator registry: ``get_integrator("leapfrog")`` or ``get_integrator("pkg.mod:MyMethod")``."""

from __future__ import annotations

import inspect
from typing import Any

from hnnlab._registry import Registry
from hnnlab.errors import InvalidArgumentError
from hnnlab.integrators.base import AbstractIntegrator

INTEGRATORS: Registry[type[AbstractIntegrator]] = Registry("integrator", AbstractIntegrator)
register_integrator = INTEGRATORS.register


def get_integrator(name_or_class_path: str | AbstractIntegrator, **options: Any) -> AbstractIntegrator:
    """Build an integrator by name with its options (``tol``, ``max_iter``, ``allow_nonseparable``, ...).

    An :class:`AbstractIntegrator` instance is returned unchanged (options are then not allowed).
    """
    if isinstance(name_or_class_path, AbstractIntegrator):
        if options:
            raise InvalidArgumentError("options cannot be given together with an integrator instance")
        return name_or_class_path
    cls = INTEGRATORS.get(name_or_class_path)
    allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise InvalidArgumentError(
            f"integrator {name_or_class_path!r} has no option {unknown[0]!r}; its options are: "
            f"{', '.join(allowed)}"
        )
    return cls(**options)
