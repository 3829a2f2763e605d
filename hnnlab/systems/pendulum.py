"""Ideal pendulum."""

from __future__ import annotations

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


@register_system("pendulum")
@dataclass
class Pendulum(AbstractSeparableHamiltonianSystem):
    """Ideal pendulum: ``H(q, p) = p^2 / (2 m l^2) + m g l (1 - cos q)``.

    Defaults ``m = 0.5, l = 1, g = 6`` give Greydanus et al. (2019)'s ``H = 3 (1 - cos q) + p^2``;
    the DeepMind suite uses ``m = 0.5, l = 1, g = 3``.

    Initial states: a direction uniform in ``[-1, 1]^2`` rescaled to radius ``r ~ U(radius)``
    (Greydanus et al. 2019, ``r ~ U(1.3, 2.3)``).
    """

    name: ClassVar[str] = "pendulum"
    dof: ClassVar[int] = 1
    m: float = 0.5
    l: float = 1.0  # noqa: E741 - the literature's symbol
    g: float = 6.0
    radius: tuple[float, float] = (1.3, 2.3)

    def __post_init__(self) -> None:
        require_positive(self, m=self.m, l=self.l, g=self.g)
        self.radius = interval(self, "radius", self.radius, low=0.0)

    def kinetic(self, p: Tensor) -> Tensor:
        return (p**2).sum(-1) / (2 * self.m * self.l**2)

    def potential(self, q: Tensor) -> Tensor:
        return self.m * self.g * self.l * (1 - torch.cos(q)).sum(-1)

    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        return x[..., 1:] / (self.m * self.l**2)

    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        return -self.m * self.g * self.l * torch.sin(x[..., :1])

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        check_sample_args(n, generator)
        direction = uniform((n, 2), -1.0, 1.0, generator)
        r = uniform((n, 1), *self.radius, generator)
        return (direction / direction.norm(dim=-1, keepdim=True) * r).to(dtype=dtype, device=device)
