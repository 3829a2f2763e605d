"""The integrator registry: ``get_integrator("leapfrog")`` or ``get_integrator("pkg.mod:MyMethod")``."""

from __future__ import annotations

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
    return INTEGRATORS.build(name_or_class_path, "option", **options)  # type: ignore[return-value]
