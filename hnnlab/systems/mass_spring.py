"""Ideal mass-spring (harmonic oscillator)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.systems._params import interval
from hnnlab.systems.base import (
    AbstractSeparableHamiltonianSystem,
    check_sample_args,
    require_positive,
    uniform,
)
from hnnlab.systems.registry import register_system


@register_system("mass_spring")
@dataclass
class MassSpring(AbstractSeparableHamiltonianSystem):
    """Ideal mass-spring: ``H(q, p) = k q^2 / 2 + p^2 / (2 m)``.

    Defaults ``k = 2, m = 0.5`` give Greydanus et al. (2019)'s ``H = q^2 + p^2`` and the DeepMind
    suite's mass-spring. Exact solution: ``q(t) = A cos(w t + phi)`` with ``w = sqrt(k / m)``.

    Initial states: a direction uniform in ``[-1, 1]^2``, rescaled to radius ``r ~ U(radius)`` in the
    ``(q, p)`` plane (Greydanus et al. 2019).
    """

    name: ClassVar[str] = "mass_spring"
    dof: ClassVar[int] = 1
    k: float = 2.0
    m: float = 0.5
    radius: tuple[float, float] = (0.1, 1.0)

    def __post_init__(self) -> None:
        require_positive(self, k=self.k, m=self.m)
        self.radius = interval(self, "radius", self.radius, low=0.0)

    @property
    def omega(self) -> float:
        """Angular frequency ``sqrt(k / m)``."""
        return math.sqrt(self.k / self.m)

    def kinetic(self, p: Tensor) -> Tensor:
        return (p**2).sum(-1) / (2 * self.m)

    def potential(self, q: Tensor) -> Tensor:
        return self.k * (q**2).sum(-1) / 2

    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        return x[..., 1:] / self.m

    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        return -self.k * x[..., :1]

    def exact_solution(self, x0: Tensor, t: Tensor) -> Tensor:
        """States at times ``t`` (shape ``(T,)``) from ``x0`` (``(..., 2)``), shape ``(..., T, 2)``."""
        w = self.omega
        wt = (w * t).to(dtype=x0.dtype, device=x0.device)
        c, s = torch.cos(wt), torch.sin(wt)
        q0, p0 = x0[..., None, :1], x0[..., None, 1:]
        q = q0 * c[:, None] + p0 / (self.m * w) * s[:, None]
        p = p0 * c[:, None] - self.m * w * q0 * s[:, None]
        return torch.cat([q, p], dim=-1)

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        check_sample_args(n, generator)
        direction = uniform((n, 2), -1.0, 1.0, generator)
        r = uniform((n, 1), *self.radius, generator)
        return (direction / direction.norm(dim=-1, keepdim=True) * r).to(dtype=dtype, device=device)
