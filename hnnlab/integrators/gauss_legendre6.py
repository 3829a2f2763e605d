"""The three-stage Gauss-Legendre Runge-Kutta method (order 6, symplectic for any Hamiltonian)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.integrators._implicit import AbstractImplicitIntegrator
from hnnlab.integrators.base import VectorField
from hnnlab.integrators.registry import register_integrator

_S = math.sqrt(15.0)
C = (0.5 - _S / 10, 0.5, 0.5 + _S / 10)  # nodes: the Gauss points on [0, 1]
A = (
    (5 / 36, 2 / 9 - _S / 15, 5 / 36 - _S / 30),
    (5 / 36 + _S / 24, 2 / 9, 5 / 36 - _S / 24),
    (5 / 36 + _S / 30, 2 / 9 + _S / 15, 5 / 36),
)
B = (5 / 18, 4 / 9, 5 / 18)


@register_integrator("gauss_legendre6")
class GaussLegendre6(AbstractImplicitIntegrator):
    """Three-stage Gauss-Legendre collocation method (Butcher 1964; Hairer, Lubich and Wanner, *Geometric
    Numerical Integration*, II.1.3): ``K_i = f(t + c_i dt, x + dt sum_j a_ij K_j)``,
    ``x' = x + dt sum_i b_i K_i``, with nodes ``c = 1/2 - sqrt(15)/10, 1/2, 1/2 + sqrt(15)/10`` and
    weights ``b = (5/18, 4/9, 5/18)``.

    Order 6, symmetric, symplectic for every Hamiltonian (``b_i a_ij + b_j a_ji = b_i b_j``), conserving
    quadratic invariants. The stages are found by fixed-point iteration from ``K_i = f(t, x)`` with the
    ``tol`` / ``max_iter`` semantics of the other implicit methods: ``1 + 3 * iterations`` field evaluations per
    step.
    """

    name: ClassVar[str] = "gauss_legendre6"
    order: ClassVar[int] = 6
    symplectic: ClassVar[bool] = True
    symmetric: ClassVar[bool] = True

    def _stages(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> tuple[Callable, Tensor]:
        times = tuple(t + c * dt for c in C)

        def G(k: Tensor) -> Tensor:  # (3, ..., 2 * dof): the three stage derivatives, stacked
            return torch.stack([
                f(times[i], x + dt * (A[i][0] * k[0] + A[i][1] * k[1] + A[i][2] * k[2])) for i in range(3)
            ])

        f0 = f(t, x)
        return G, torch.stack([f0, f0, f0])

    def _update(self, x: Tensor, k: Tensor, dt: float) -> Tensor:
        return x + dt * (B[0] * k[0] + B[1] * k[1] + B[2] * k[2])
