"""Planar gravitational two-body problem in both bodies' absolute coordinates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from hnnlab.systems._nbody import AbstractPlanarGravity, perpendicular
from hnnlab.systems._params import interval, require_nonnegative
from hnnlab.systems.base import check_sample_args, normal, uniform
from hnnlab.systems.registry import register_system


@register_system("two_body")
@dataclass
class TwoBody(AbstractPlanarGravity):
    """Two bodies under gravity: ``H = |p_1|^2 / (2 m_1) + |p_2|^2 / (2 m_2) - G m_1 m_2 / |r_1 - r_2|``.

    State ``(x1, y1, x2, y2, px1, py1, px2, py2)`` with ``p_i = m_i v_i`` (absolute coordinates, as in
    Greydanus et al. 2019's dataset). Defaults ``m_1 = m_2 = 1, G = 1``. Conserves energy, linear
    momentum and angular momentum.

    Initial states (Greydanus et al. 2019): body 1 at ``r_1 ~ U(position_range)^2`` (each component),
    body 2 at ``-r_1``; velocities tangential (counter-clockwise) with the circular-orbit relative speed
    ``sqrt(G (m_1 + m_2) / |r_1 - r_2|)`` shared as ``v_1 = m_2 / M v_rel``, ``v_2 = -m_1 / M v_rel``
    (zero total momentum; ``1 / (2 sqrt|r_1|)`` each for the defaults), both scaled by one factor
    ``1 + orbit_noise * N(0, 1)`` per sample to make the orbits slightly elliptical.
    """

    name: ClassVar[str] = "two_body"
    n_bodies: ClassVar[int] = 2
    masses: tuple[float, ...] = (1.0, 1.0)
    G: float = 1.0
    position_range: tuple[float, float] = (0.5, 1.5)
    orbit_noise: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        self.position_range = interval(self, "position_range", self.position_range)
        require_nonnegative(self, orbit_noise=self.orbit_noise)

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        check_sample_args(n, generator)
        m1, m2 = self.masses
        total = m1 + m2
        r1 = uniform((n, 2), *self.position_range, generator)  # (n, 2): body 1; body 2 sits at -r1
        scale = 1 + self.orbit_noise * normal((n, 1), generator)  # (n, 1)
        distance = 2 * r1.norm(dim=-1, keepdim=True)
        v_rel = (self.G * total / distance).sqrt() * scale
        tangent = perpendicular(r1) / r1.norm(dim=-1, keepdim=True)
        v1, v2 = tangent * v_rel * m2 / total, -tangent * v_rel * m1 / total
        x = torch.cat([r1, -r1, m1 * v1, m2 * v2], dim=-1)  # (n, 8)
        return x.to(dtype=dtype, device=device)
