"""The Henon-Heiles system."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError
from hnnlab.systems._params import interval
from hnnlab.systems.base import (
    AbstractSeparableHamiltonianSystem,
    check_sample_args,
    require_positive,
    uniform,
)
from hnnlab.systems.registry import register_system


@register_system("henon_heiles")
@dataclass
class HenonHeiles(AbstractSeparableHamiltonianSystem):
    """Henon-Heiles: ``H = (px^2 + py^2) / 2 + (x^2 + y^2) / 2 + lam (x^2 y - y^3 / 3)``.

    State ``(x, y, px, py)``. In polar coordinates ``V = r^2 / 2 + lam r^3 sin(3 phi) / 3``. Below the
    escape energy ``1 / (6 lam^2)`` (the value of ``V`` at its three saddles, at distance ``1 / lam``
    from the origin) the component of ``{V < E}`` around the origin is bounded, and inside it the motion
    is a mix of regular and chaotic orbits (chaos dominates above ``E ~ 0.12`` for ``lam = 1``).

    Initial states: an energy ``E ~ U(energy_range)`` per sample (``energy_range`` strictly inside
    ``(0, 1 / (6 lam^2))``), a position uniform in the disk ``r < r_E`` (``r_E^2 / 2 - lam r_E^3 / 3 = E``,
    which encloses the bounded component) accepted when ``V(q) < E`` (rejection sampling), and a momentum
    of length ``sqrt(2 (E - V(q)))`` in a uniformly random direction: every sample has exactly the drawn
    energy and lies in the bounded region.
    """

    name: ClassVar[str] = "henon_heiles"
    dof: ClassVar[int] = 2
    lam: float = 1.0
    energy_range: tuple[float, float] = (0.05, 0.12)

    def __post_init__(self) -> None:
        require_positive(self, lam=self.lam)
        self.energy_range = interval(self, "energy_range", self.energy_range)
        low, high = self.energy_range
        if not 0 < low < high < self.escape_energy:
            raise InvalidArgumentError(
                f"HenonHeiles: parameter 'energy_range' must satisfy 0 < low < high < escape energy "
                f"1 / (6 lam^2) = {self.escape_energy:.6g} (orbits are unbounded above it), got {self.energy_range!r}"
            )

    @property
    def escape_energy(self) -> float:
        """``1 / (6 lam^2)``: above it orbits can leave through the saddles."""
        return 1.0 / (6.0 * self.lam**2)

    def kinetic(self, p: Tensor) -> Tensor:
        return 0.5 * (p**2).sum(-1)

    def potential(self, q: Tensor) -> Tensor:
        x, y = q[..., 0], q[..., 1]
        return 0.5 * (x**2 + y**2) + self.lam * (x**2 * y - y**3 / 3)

    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        return x[..., 2:]

    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        qx, qy = x[..., 0], x[..., 1]
        return torch.stack([-qx - 2 * self.lam * qx * qy, -qy - self.lam * (qx**2 - qy**2)], dim=-1)

    def state_names(self) -> list[str]:
        return ["x", "y", "px", "py"]

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        check_sample_args(n, generator)
        energy = uniform(n, *self.energy_range, generator)  # (n,)
        r_max = self._disk_radius(energy)  # (n,)
        q = torch.zeros(n, 2, dtype=torch.float64)
        pending = torch.ones(n, dtype=torch.bool)
        while bool(pending.any()):
            idx = pending.nonzero().squeeze(-1)
            rho = r_max[idx] * uniform(len(idx), 0.0, 1.0, generator).sqrt()
            phi = uniform(len(idx), 0.0, 2 * math.pi, generator)
            candidate = torch.stack([rho * torch.cos(phi), rho * torch.sin(phi)], dim=-1)  # (k, 2)
            accept = self.potential(candidate) < energy[idx]
            q[idx[accept]] = candidate[accept]
            pending[idx[accept]] = False
        speed = (2 * (energy - self.potential(q))).sqrt()  # (n,)
        direction = uniform(n, 0.0, 2 * math.pi, generator)
        p = torch.stack([speed * torch.cos(direction), speed * torch.sin(direction)], dim=-1)
        return torch.cat([q, p], dim=-1).to(dtype=dtype, device=device)

    def _disk_radius(self, energy: Tensor) -> Tensor:
        """The root ``r_E`` in ``(0, 1 / lam)`` of ``r^2 / 2 - lam r^3 / 3 = E``, by bisection (float64).

        ``r^2 / 2 - lam r^3 / 3`` is the minimum of ``V`` on the circle of radius ``r`` and increases on
        ``(0, 1 / lam)``, so ``{V < E}`` meets no circle of radius ``r_E <= r < 1 / lam``.
        """
        low = torch.zeros_like(energy)
        high = torch.full_like(energy, 1.0 / self.lam)
        for _ in range(60):
            mid = 0.5 * (low + high)
            below = 0.5 * mid**2 - self.lam * mid**3 / 3 < energy
            low, high = torch.where(below, mid, low), torch.where(below, high, mid)
        return high
