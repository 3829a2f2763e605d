"""Explicit (forward) Euler: the simplest non-symplectic baseline."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.integrators.base import AbstractExplicitRK, VectorField
from hnnlab.integrators.registry import register_integrator


@register_integrator("euler")
class Euler(AbstractExplicitRK):
    """Forward Euler: ``x' = x + dt f(t, x)``.

    Order 1, explicit, not symplectic: on a conservative system its energy grows step after step
    (for the harmonic oscillator by the factor ``1 + (w dt)^2`` per step).
    """

    name: ClassVar[str] = "euler"
    order: ClassVar[int] = 1

    def _step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        return torch.add(x, f(t, x), alpha=dt)
