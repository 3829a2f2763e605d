"""Damped harmonic oscillator: the non-conservative negative case of the conservation audit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.systems._params import interval
from hnnlab.systems.base import AbstractSystem, check_sample_args, require_positive, uniform
from hnnlab.systems.registry import register_system


@register_system("damped_oscillator")
@dataclass
class DampedOscillator(AbstractSystem):
    """Linearly damped oscillator: ``dq/dt = p / m``, ``dp/dt = -k q - gamma p / m``.

    Energy ``E = k q^2 / 2 + p^2 / (2 m)`` decays: ``dE/dt = -gamma p^2 / m^2 <= 0``. The flow is not
    Hamiltonian (it contracts phase-space volume at the rate ``gamma / m``), so the system declares
    ``conservative = False`` and ``is_separable = False``. Exact solution ``x(t) = exp(A t) x0`` with
    ``A = [[0, 1 / m], [-k, -gamma / m]]`` (under-, critically and over-damped alike).

    Defaults ``k = 2, m = 0.5`` are the ideal mass-spring's (Greydanus et al. 2019) and ``gamma = 0.1``;
    initial states as the mass-spring's: a direction in ``[-1, 1]^2`` rescaled to ``r ~ U(radius)``.
    """

    name: ClassVar[str] = "damped_oscillator"
    dof: ClassVar[int] = 1
    is_separable: ClassVar[bool] = False
    conservative: ClassVar[bool] = False
    k: float = 2.0
    m: float = 0.5
    gamma: float = 0.1
    radius: tuple[float, float] = (0.1, 1.0)

    def __post_init__(self) -> None:
        require_positive(self, k=self.k, m=self.m, gamma=self.gamma)
        self.radius = interval(self, "radius", self.radius, low=0.0)

    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        return x[..., 1:] / self.m

    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        return -self.k * x[..., :1] - self.gamma * x[..., 1:] / self.m

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        return torch.cat([self.dq_dt(t, x), self.dp_dt(t, x)], dim=-1)

    def energy(self, x: Tensor) -> Tensor:
        return 0.5 * self.k * x[..., 0] ** 2 + x[..., 1] ** 2 / (2 * self.m)

    def energy_rate(self, x: Tensor) -> Tensor:
        """``dE/dt = -gamma p^2 / m^2`` along the flow, shape ``(...,)``."""
        return -self.gamma * x[..., 1] ** 2 / self.m**2

    def exact_solution(self, x0: Tensor, t: Tensor) -> Tensor:
        """States at times ``t`` (``(T,)``) from ``x0`` (``(..., 2)``), shape ``(..., T, 2)``.

        ``exp(A t)`` in float64, returned in ``x0``'s dtype and device.
        """
        A = torch.tensor([[0.0, 1.0 / self.m], [-self.k, -self.gamma / self.m]], dtype=torch.float64)
        times = torch.as_tensor(t, dtype=torch.float64).cpu().reshape(-1)
        propagators = torch.linalg.matrix_exp(A * times[:, None, None])  # (T, 2, 2)
        x = x0.to(torch.float64).cpu()
        return torch.einsum("tij,...j->...ti", propagators, x).to(dtype=x0.dtype, device=x0.device)

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        check_sample_args(n, generator)
        direction = uniform((n, 2), -1.0, 1.0, generator)
        r = uniform((n, 1), *self.radius, generator)
        return (direction / direction.norm(dim=-1, keepdim=True) * r).to(dtype=dtype, device=device)
