"""Yoshida's fourth-order composition of leapfrog steps."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from hnnlab.integrators.base import AbstractIntegrator, VectorField
from hnnlab.integrators.leapfrog import leapfrog_substep
from hnnlab.integrators.registry import register_integrator

_CBRT2 = 2.0 ** (1.0 / 3.0)
W1 = 1.0 / (2.0 - _CBRT2)  # outer substeps
W0 = -_CBRT2 / (2.0 - _CBRT2)  # the (negative) middle substep; 2 W1 + W0 = 1


@register_integrator("yoshida4")
class Yoshida4(AbstractIntegrator):
    """Yoshida (1990) triple jump: ``S(w1 dt) S(w0 dt) S(w1 dt)`` with ``S`` the leapfrog step,
    ``w1 = 1 / (2 - 2^(1/3))``, ``w0 = -2^(1/3) / (2 - 2^(1/3))``.

    A symmetric composition of a symmetric second-order method whose weights satisfy
    ``2 w1 + w0 = 1`` and ``2 w1^3 + w0^3 = 0`` cancels the third-order error term: order 4,
    explicit, symmetric, symplectic for a separable ``H = T(p) + V(q)``. Nine half-field evaluations
    per step (the middle substep runs backwards in time, ``w0 < 0``).
    """

    name: ClassVar[str] = "yoshida4"
    order: ClassVar[int] = 4
    symplectic: ClassVar[bool] = True
    explicit: ClassVar[bool] = True
    symmetric: ClassVar[bool] = True
    requires_separable: ClassVar[bool] = True

    def _step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        x = leapfrog_substep(f, t, x, W1 * dt)
        x = leapfrog_substep(f, t + W1 * dt, x, W0 * dt)
        return leapfrog_substep(f, t + (W1 + W0) * dt, x, W1 * dt)
