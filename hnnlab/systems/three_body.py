"""Planar gravitational three-body problem in the bodies' absolute coordinates."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from hnnlab.systems._nbody import AbstractPlanarGravity, perpendicular, rotate
from hnnlab.systems._params import interval, require_nonnegative
from hnnlab.systems.base import check_sample_args, uniform
from hnnlab.systems.registry import register_system


@register_system("three_body")
@dataclass
class ThreeBody(AbstractPlanarGravity):
    """Three bodies under gravity: ``H = sum_i |p_i|^2 / (2 m_i) - sum_{i<j} G m_i m_j / |r_i - r_j|``.

    State ``(x1, y1, x2, y2, x3, y3, px1, ..., py3)`` with ``p_i = m_i v_i`` (absolute coordinates, as
    in Greydanus et al. 2019's dataset). Defaults ``m_i = 1, G = 1``. Conserves energy, linear momentum
    and angular momentum.

    Initial states (Greydanus et al. 2019): body 1 at a uniformly random direction and radius
    ``r ~ U(radius)``, bodies 2 and 3 at its 120 and 240 degree rotations; velocities tangential
    (counter-clockwise) with the speed ``omega r`` of the rotating equilateral (Lagrange) solution,
    ``omega^2 = G M / (3 sqrt(3) r^3)`` with ``M`` the total mass (``3^(-1/4) / sqrt(r)`` for the
    defaults; exact for equal masses), then each velocity component is multiplied by
    ``1 + velocity_noise * U(-1, 1)``.
    """

    name: ClassVar[str] = "three_body"
    n_bodies: ClassVar[int] = 3
    masses: tuple[float, ...] = (1.0, 1.0, 1.0)
    G: float = 1.0
    radius: tuple[float, float] = (0.9, 1.2)
    velocity_noise: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        self.radius = interval(self, "radius", self.radius, low=0.0)
        require_nonnegative(self, velocity_noise=self.velocity_noise)

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        check_sample_args(n, generator)
        direction = uniform((n, 2), -1.0, 1.0, generator)
        r = uniform((n, 1), *self.radius, generator)
        noise = uniform((n, 3, 2), -1.0, 1.0, generator)
        third = 2 * math.pi / 3
        r1 = direction / direction.norm(dim=-1, keepdim=True) * r  # (n, 2)
        positions = torch.stack([r1, rotate(r1, third), rotate(r1, 2 * third)], dim=-2)  # (n, 3, 2)
        omega = (self.G * sum(self.masses) / (3 * math.sqrt(3) * r**3)).sqrt()  # (n, 1)
        velocities = perpendicular(positions) * omega[..., None] * (1 + self.velocity_noise * noise)
        momenta = velocities * torch.tensor(self.masses, dtype=torch.float64)[:, None]  # (n, 3, 2)
        x = torch.cat([positions.flatten(-2), momenta.flatten(-2)], dim=-1)  # (n, 12)
        return x.to(dtype=dtype, device=device)
