"""A line of ``n`` masses coupled by springs between two fixed walls."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from hnnlab.dynamics import split_state
from hnnlab.errors import InvalidArgumentError
from hnnlab.systems._params import require_count, require_nonnegative
from hnnlab.systems.base import (
    AbstractSeparableHamiltonianSystem,
    check_sample_args,
    require_positive,
    uniform,
)
from hnnlab.systems.registry import register_system


@register_system("coupled_oscillators")
@dataclass
class CoupledOscillators(AbstractSeparableHamiltonianSystem):
    """``n`` equal masses in a line, each held at its rest position by a spring ``k`` and joined to its
    neighbours (the two end masses to fixed walls) by springs ``coupling``:

    ``H = sum_i p_i^2 / (2 m) + k sum_i q_i^2 / 2 + coupling sum_{i=0}^{n} (q_{i+1} - q_i)^2 / 2``,
    with ``q_0 = q_{n+1} = 0`` (fixed ends); that is ``H = |p|^2 / (2 m) + q^T K q / 2`` with
    ``K = k I + coupling tridiag(-1, 2, -1)``.

    Normal modes (the eigen-decomposition of ``K``, in closed form): shapes
    ``u_j(i) = sqrt(2 / (n + 1)) sin(i j pi / (n + 1))`` and frequencies
    ``w_j^2 = (k + 4 coupling sin^2(j pi / (2 (n + 1)))) / m``, ``i, j = 1..n``; each mode is a harmonic
    oscillator, which gives :meth:`exact_solution`. ``k = 0`` is the classic fixed-end chain.

    Initial states: ``q, p ~ U(-amplitude, amplitude)`` componentwise.
    """

    name: ClassVar[str] = "coupled_oscillators"
    n: int = 3
    m: float = 1.0
    k: float = 1.0
    coupling: float = 1.0
    amplitude: float = 1.0

    def __post_init__(self) -> None:
        self.n = require_count(self, "n", self.n)
        require_positive(self, m=self.m, amplitude=self.amplitude)
        require_nonnegative(self, k=self.k, coupling=self.coupling)
        if self.k == 0 and self.coupling == 0:
            raise InvalidArgumentError(
                "CoupledOscillators: parameters 'k' and 'coupling' cannot both be 0 (the masses would be free)"
            )

    @property
    def dof(self) -> int:
        return self.n

    def stiffness_matrix(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """``K = k I + coupling tridiag(-1, 2, -1)``, ``(n, n)``."""
        eye = torch.eye(self.n, dtype=dtype)
        off = torch.diag(torch.ones(self.n - 1, dtype=dtype), 1)
        return self.k * eye + self.coupling * (2 * eye - off - off.T)

    def normal_modes(self) -> tuple[Tensor, Tensor]:
        """``(frequencies (n,), shapes (n, n))`` in float64; column ``j`` of ``shapes`` is mode ``j``."""
        j = torch.arange(1, self.n + 1, dtype=torch.float64)
        angle = j * math.pi / (self.n + 1)
        frequencies = ((self.k + 4 * self.coupling * torch.sin(angle / 2) ** 2) / self.m).sqrt()
        shapes = math.sqrt(2 / (self.n + 1)) * torch.sin(j[:, None] * angle[None, :])  # (i, j)
        return frequencies, shapes

    def kinetic(self, p: Tensor) -> Tensor:
        return (p**2).sum(-1) / (2 * self.m)

    def potential(self, q: Tensor) -> Tensor:
        stretch = torch.diff(F.pad(q, (1, 1)), dim=-1)  # (..., n + 1): q_{i+1} - q_i with fixed ends
        return 0.5 * self.k * (q**2).sum(-1) + 0.5 * self.coupling * (stretch**2).sum(-1)

    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        return x[..., self.n :] / self.m

    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        q = x[..., : self.n]
        padded = F.pad(q, (1, 1))  # (..., n + 2)
        laplacian = padded[..., :-2] - 2 * q + padded[..., 2:]
        return -self.k * q + self.coupling * laplacian

    def exact_solution(self, x0: Tensor, t: Tensor) -> Tensor:
        """States at times ``t`` (``(T,)``) from ``x0`` (``(..., 2 n)``), shape ``(..., T, 2 n)``.

        Computed in float64 mode by mode, returned in ``x0``'s dtype and device.
        """
        w, U = self.normal_modes()  # (n,), (n, n)
        q0, p0 = split_state(x0.to(torch.float64).cpu())
        a0, b0 = q0 @ U, p0 @ U  # (..., n): modal coordinates and momenta
        wt = torch.as_tensor(t, dtype=torch.float64).cpu().reshape(-1, 1) * w  # (T, n)
        c, s = torch.cos(wt), torch.sin(wt)
        a = a0[..., None, :] * c + b0[..., None, :] / (self.m * w) * s  # (..., T, n)
        b = b0[..., None, :] * c - self.m * w * a0[..., None, :] * s
        return torch.cat([a @ U.T, b @ U.T], dim=-1).to(dtype=x0.dtype, device=x0.device)

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        check_sample_args(n, generator)
        return uniform((n, 2 * self.dof), -self.amplitude, self.amplitude, generator, dtype=dtype, device=device)
