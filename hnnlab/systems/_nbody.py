"""Planar Newtonian gravity for ``n`` point masses in absolute coordinates (shared by two and three body)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.dynamics import split_state
from hnnlab.systems._params import float_tuple
from hnnlab.systems.base import AbstractSeparableHamiltonianSystem, require_positive


def gravitational_potential(q: Tensor, masses: Tensor, G: float) -> Tensor:
    """``V(q) = - sum_{i<j} G m_i m_j / |r_i - r_j|`` for ``q = (x_1, y_1, ..., x_n, y_n)``, shape ``(...,)``."""
    r = q.unflatten(-1, (-1, 2))  # (..., n, 2)
    i, j = torch.triu_indices(r.shape[-2], r.shape[-2], 1, device=q.device)
    distance = (r[..., i, :] - r[..., j, :]).norm(dim=-1)  # (..., n (n - 1) / 2)
    return -(G * masses[i] * masses[j] / distance).sum(-1)


def gravitational_forces(q: Tensor, masses: Tensor, G: float) -> Tensor:
    """``F_i = -dV/dr_i = sum_{j != i} G m_i m_j (r_j - r_i) / |r_j - r_i|^3``, laid out like ``q``."""
    r = q.unflatten(-1, (-1, 2))  # (..., n, 2)
    n = r.shape[-2]
    diff = r[..., None, :, :] - r[..., :, None, :]  # (..., n, n, 2): [i, j] = r_j - r_i
    dist2 = (diff**2).sum(-1)  # (..., n, n)
    same = torch.eye(n, dtype=torch.bool, device=q.device)
    inv_d3 = dist2.masked_fill(same, 1.0).pow(-1.5).masked_fill(same, 0.0)
    strength = G * masses[:, None] * masses[None, :] * inv_d3  # (..., n, n)
    return (strength[..., None] * diff).sum(-2).flatten(-2)


def rotate(v: Tensor, angle: float) -> Tensor:
    """Rotate planar vectors ``(..., 2)`` counter-clockwise by ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], dim=-1)


def perpendicular(v: Tensor) -> Tensor:
    """``(x, y) -> (-y, x)``: the counter-clockwise tangent of a position vector, same length."""
    return torch.stack([-v[..., 1], v[..., 0]], dim=-1)


class AbstractPlanarGravity(AbstractSeparableHamiltonianSystem):
    """``n`` bodies attracting each other in the plane, absolute coordinates.

    ``H(q, p) = sum_i |p_i|^2 / (2 m_i) - sum_{i<j} G m_i m_j / |r_i - r_j|`` with
    ``q = (x_1, y_1, ..., x_n, y_n)`` and ``p = (m_1 vx_1, m_1 vy_1, ..., m_n vy_n)``.

    Besides the energy it conserves the total linear momentum ``sum_i p_i`` (``"momentum_x"``,
    ``"momentum_y"``) and the angular momentum ``sum_i x_i py_i - y_i px_i`` (``"angular_momentum"``).

    Subclasses are dataclasses that set ``n_bodies`` and declare the fields ``masses`` (one per body)
    and ``G``, plus their initial-state sampling.
    """

    n_bodies: ClassVar[int]
    masses: tuple[float, ...]
    G: float

    def __post_init__(self) -> None:
        self.masses = float_tuple(self, "masses", self.masses, self.n_bodies, what="one mass per body")
        require_positive(self, masses=self.masses, G=self.G)

    @property
    def dof(self) -> int:
        return 2 * self.n_bodies

    def mass_tensor(self, like: Tensor) -> Tensor:
        """The masses ``(n_bodies,)`` in ``like``'s dtype and device."""
        return torch.tensor(self.masses, dtype=like.dtype, device=like.device)

    def kinetic(self, p: Tensor) -> Tensor:
        momenta = p.unflatten(-1, (-1, 2))  # (..., n, 2)
        return ((momenta**2).sum(-1) / (2 * self.mass_tensor(p))).sum(-1)

    def potential(self, q: Tensor) -> Tensor:
        return gravitational_potential(q, self.mass_tensor(q), self.G)

    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        _, p = split_state(x)
        return p / self.mass_tensor(x).repeat_interleave(2)

    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        q, _ = split_state(x)
        return gravitational_forces(q, self.mass_tensor(x), self.G)

    def invariants(self, x: Tensor) -> dict[str, Tensor]:
        q, p = split_state(x)
        return {
            "energy": self.energy(x),
            "momentum_x": p[..., 0::2].sum(-1),
            "momentum_y": p[..., 1::2].sum(-1),
            "angular_momentum": (q[..., 0::2] * p[..., 1::2] - q[..., 1::2] * p[..., 0::2]).sum(-1),
        }

    def state_names(self) -> list[str]:
        bodies = range(1, self.n_bodies + 1)
        return [f"{c}{i}" for i in bodies for c in ("x", "y")] + [f"{c}{i}" for i in bodies for c in ("px", "py")]
