"""The classical fourth-order Runge-Kutta method (a non-symplectic baseline)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from hnnlab.integrators.base import AbstractIntegrator, VectorField
from hnnlab.integrators.registry import register_integrator


@register_integrator("rk4")
class RK4(AbstractIntegrator):
    """Classical RK4. Order 4, explicit, not symplectic: its energy error drifts secularly."""

    name: ClassVar[str] = "rk4"
    order: ClassVar[int] = 4
    symplectic: ClassVar[bool] = False
    explicit: ClassVar[bool] = True
    symmetric: ClassVar[bool] = False
    requires_separable: ClassVar[bool] = False

    def _step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        k1 = f(t, x)
        k2 = f(t + 0.5 * dt, x + 0.5 * dt * k1)
        k3 = f(t + 0.5 * dt, x + 0.5 * dt * k2)
        k4 = f(t + dt, x + dt * k3)
        return x + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
