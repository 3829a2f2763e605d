"""The two-stage Gauss-Legendre Runge-Kutta method (order 4, symplectic for any Hamiltonian)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.integrators._implicit import AbstractImplicitIntegrator
from hnnlab.integrators.base import VectorField
from hnnlab.integrators.registry import register_integrator

_R = math.sqrt(3.0) / 6.0
C = (0.5 - _R, 0.5 + _R)  # nodes: the Gauss points on [0, 1]
A = ((0.25, 0.25 - _R), (0.25 + _R, 0.25))
B = (0.5, 0.5)


@register_integrator("gauss_legendre4")
class GaussLegendre4(AbstractImplicitIntegrator):
    """Two-stage Gauss-Legendre (Hammer-Hollingsworth) collocation method:

    ``K_i = f(t + c_i dt, x + dt sum_j a_ij K_j)``, ``x' = x + dt (K_1 + K_2) / 2``, with
    ``c = 1/2 -+ sqrt(3)/6``, ``a = [[1/4, 1/4 - sqrt(3)/6], [1/4 + sqrt(3)/6, 1/4]]``.

    Order 4, symmetric, symplectic for every Hamiltonian (its coefficients satisfy
    ``b_i a_ij + b_j a_ji = b_i b_j``) and conserving quadratic invariants. The stages are found by
    fixed-point iteration from the explicit Euler predictor ``K_i = f(t, x)``, with the same ``tol`` /
    ``max_iter`` semantics as implicit midpoint (the solver is shared): ``1 + 2 * iterations`` field
    evaluations per step.
    """

    name: ClassVar[str] = "gauss_legendre4"
    order: ClassVar[int] = 4
    symplectic: ClassVar[bool] = True
    symmetric: ClassVar[bool] = True

    def _stages(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> tuple[Callable, Tensor]:
        t1, t2 = t + C[0] * dt, t + C[1] * dt

        def G(k: Tensor) -> Tensor:  # (2, ..., 2 * dof): the two stage derivatives, stacked
            k1, k2 = k[0], k[1]
            x1 = x + dt * (A[0][0] * k1 + A[0][1] * k2)
            x2 = x + dt * (A[1][0] * k1 + A[1][1] * k2)
            return torch.stack([f(t1, x1), f(t2, x2)])

        f0 = f(t, x)
        return G, torch.stack([f0, f0])

    def _update(self, x: Tensor, k: Tensor, dt: float) -> Tensor:
        return x + dt * (B[0] * k[0] + B[1] * k[1])
