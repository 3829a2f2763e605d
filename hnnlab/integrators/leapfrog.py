"""Leapfrog / Stormer-Verlet (kick-drift-kick)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from hnnlab.integrators.base import VectorField
from hnnlab.integrators.registry import register_integrator
from hnnlab.integrators.splitting import AbstractSplittingIntegrator, kick_drift

KICKS = (0.5, 0.5)
DRIFTS = (1.0,)


def leapfrog_substep(f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
    """One kick-drift-kick step (velocity Verlet): the building block of the composition methods.

    ``p_half = p + dt/2 dp/dt(q)``, ``q' = q + dt dq/dt(p_half)``, ``p' = p_half + dt/2 dp/dt(q')``.
    """
    return kick_drift(f, t, x, dt, KICKS, DRIFTS)[0]


@register_integrator("leapfrog")
class Leapfrog(AbstractSplittingIntegrator):
    """Stormer-Verlet / leapfrog, kick-drift-kick:
    ``p_half = p + dt/2 dp/dt(q)``, ``q' = q + dt dq/dt(p_half)``, ``p' = p_half + dt/2 dp/dt(q')``.

    Order 2, symplectic and time-reversible for a separable ``H = T(p) + V(q)``; three half-field
    evaluations per step, two in a rollout (the closing kick's force opens the next step).
    """

    name: ClassVar[str] = "leapfrog"
    order: ClassVar[int] = 2
    symmetric: ClassVar[bool] = True
    kicks: ClassVar[tuple[float, ...]] = KICKS
    drifts: ClassVar[tuple[float, ...]] = DRIFTS
