"""The implicit midpoint rule: symplectic for any Hamiltonian, separable or not."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.integrators._implicit import AbstractImplicitIntegrator
from hnnlab.integrators.base import VectorField
from hnnlab.integrators.registry import register_integrator


@register_integrator("implicit_midpoint")
class ImplicitMidpoint(AbstractImplicitIntegrator):
    """Implicit midpoint: ``x' = x + dt f(t + dt/2, (x + x') / 2)``, i.e. the one-stage Gauss-Legendre
    method ``K = f(t + dt/2, x + dt/2 K)``, ``x' = x + dt K``.

    Order 2, symmetric, symplectic for every Hamiltonian (no separability needed), and it conserves
    every quadratic invariant (angular momentum) exactly, up to the solve tolerance. ``K`` is found by
    fixed-point iteration from the explicit Euler predictor ``K_0 = f(t, x)`` (options ``tol``,
    ``max_iter``; see :mod:`hnnlab.integrators._implicit`): ``1 + iterations`` field evaluations per step.
    """

    name: ClassVar[str] = "implicit_midpoint"
    order: ClassVar[int] = 2
    symplectic: ClassVar[bool] = True
    symmetric: ClassVar[bool] = True

    def _stages(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> tuple[Callable, Tensor]:
        t_mid = t + 0.5 * dt

        def G(k: Tensor) -> Tensor:  # (..., 2 * dof) -> (..., 2 * dof)
            return f(t_mid, torch.add(x, k, alpha=0.5 * dt))

        return G, f(t, x)

    def _update(self, x: Tensor, k: Tensor, dt: float) -> Tensor:
        return torch.add(x, k, alpha=dt)
