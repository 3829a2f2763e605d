"""The classical fourth-order Runge-Kutta method (a non-symplectic baseline)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.integrators.base import AbstractExplicitRK, VectorField
from hnnlab.integrators.registry import register_integrator


@register_integrator("rk4")
class RK4(AbstractExplicitRK):
    """Classical RK4: ``k1 = f(t, x)``, ``k2 = f(t + dt/2, x + dt/2 k1)``, ``k3 = f(t + dt/2, x + dt/2 k2)``,
    ``k4 = f(t + dt, x + dt k3)``, ``x' = x + dt (k1 + 2 k2 + 2 k3 + k4) / 6``.

    Order 4, explicit, not symplectic: on a conservative system its energy error drifts secularly.
    """

    name: ClassVar[str] = "rk4"
    order: ClassVar[int] = 4

    def _step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        half = 0.5 * dt
        k1 = f(t, x)
        k2 = f(t + half, torch.add(x, k1, alpha=half))
        k3 = f(t + half, torch.add(x, k2, alpha=half))
        k4 = f(t + dt, torch.add(x, k3, alpha=dt))
        slope = torch.add(k1, k2 + k3, alpha=2.0) + k4  # k1 + 2 k2 + 2 k3 + k4
        return torch.add(x, slope, alpha=dt / 6.0)
