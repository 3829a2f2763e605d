"""Time integrators: symplectic (explicit and implicit), non-symplectic baselines, adaptive adapters.

``get_integrator(name, **options).step(f, t, x, dt)``; names are listed by ``INTEGRATORS.names()``.
"""

from hnnlab.integrators import leapfrog as _leapfrog  # noqa: F401  (registers)
from hnnlab.integrators import rk4 as _rk4  # noqa: F401
from hnnlab.integrators.base import AbstractIntegrator as AbstractIntegrator
from hnnlab.integrators.registry import INTEGRATORS as INTEGRATORS, get_integrator as get_integrator

__all__ = ["AbstractIntegrator", "INTEGRATORS", "get_integrator"]
