"""Symplectic Euler (kick then drift)."""

from __future__ import annotations

from typing import ClassVar

from hnnlab.integrators.registry import register_integrator
from hnnlab.integrators.splitting import AbstractSplittingIntegrator


@register_integrator("symplectic_euler")
class SymplecticEuler(AbstractSplittingIntegrator):
    """Symplectic Euler, momentum first: ``p' = p + dt dp/dt(q)``, ``q' = q + dt dq/dt(p')``.

    Order 1, explicit, symplectic for a separable ``H = T(p) + V(q)`` (each substep is an exact shear
    flow). Not symmetric: its adjoint is the drift-first variant. Two half-field evaluations per step.
    """

    name: ClassVar[str] = "symplectic_euler"
    order: ClassVar[int] = 1
    symmetric: ClassVar[bool] = False
    kicks: ClassVar[tuple[float, ...]] = (1.0, 0.0)
    drifts: ClassVar[tuple[float, ...]] = (1.0,)
