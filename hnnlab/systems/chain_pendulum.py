"""Planar chain of ``n`` pendulum links, in Lagrangian ``(theta, omega)`` and canonical ``(theta, p)`` form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from hnnlab.dynamics import split_state
from hnnlab.errors import InvalidArgumentError
from hnnlab.systems._mechanical import HamiltonianForm, LagrangianForm
from hnnlab.systems._params import float_tuple, require_count
from hnnlab.systems.base import (
    AbstractHamiltonianSystem,
    AbstractLagrangianSystem,
    check_sample_args,
    normal,
    require_positive,
    uniform,
)
from hnnlab.systems.registry import register_system


@dataclass
class _ChainPendulumParameters:
    """Parameters, mass matrix, potential and sampling shared by both forms.

    Link ``k`` (``k = 1..n``) is a massless rod of length ``l_k`` with a point mass ``m_k`` at its end,
    hanging from the end of link ``k - 1`` (link 1 from a fixed pivot); ``theta_k`` is its angle from
    the downward vertical. With the tail masses ``mu_k = sum_{j >= k} m_j``:

    ``M_ij(theta) = mu_max(i, j) l_i l_j cos(theta_i - theta_j)`` (``T = omega^T M omega / 2``),
    ``V(theta) = -g sum_k mu_k l_k cos(theta_k)``.
    """

    n: int = 2
    masses: tuple[float, ...] | None = None
    lengths: tuple[float, ...] | None = None
    g: float = 1.0
    angle_scale: float = 1.0
    velocity_scale: float = 1.0

    def __post_init__(self) -> None:
        self.n = require_count(self, "n", self.n)
        ones = (1.0,) * self.n
        self.masses = float_tuple(
            self, "masses", ones if self.masses is None else self.masses, self.n, what="one per link"
        )
        self.lengths = float_tuple(
            self, "lengths", ones if self.lengths is None else self.lengths, self.n, what="one per link"
        )
        require_positive(
            self,
            masses=self.masses,
            lengths=self.lengths,
            g=self.g,
            angle_scale=self.angle_scale,
            velocity_scale=self.velocity_scale,
        )

    @classmethod
    def with_random_parameters(
        cls, n: int, generator: torch.Generator, low: float = 0.6, high: float = 1.4, **params: Any
    ):
        """A chain whose masses and lengths are drawn once from ``U(low, high)`` (Finzi et al. 2020).

        The masses are drawn first, then the lengths, in float64 from ``generator``; ``params`` sets the
        other fields (``g``, ``angle_scale``, ...).
        """
        check_sample_args(n, generator)
        if not 0 < low < high < float("inf"):
            raise InvalidArgumentError(
                f"{cls.__name__}.with_random_parameters: need 0 < low < high, got low={low!r}, high={high!r}"
            )
        masses = uniform(n, low, high, generator)
        lengths = uniform(n, low, high, generator)
        return cls(n=n, masses=tuple(masses.tolist()), lengths=tuple(lengths.tolist()), **params)

    @property
    def dof(self) -> int:
        return self.n

    def _constants(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``C_ij = mu_max(i, j) l_i l_j`` ``(n, n)`` and ``g mu_k l_k`` ``(n,)`` in ``like``'s dtype/device."""
        m = torch.tensor(self.masses, dtype=like.dtype, device=like.device)
        l = torch.tensor(self.lengths, dtype=like.dtype, device=like.device)
        tail = m.flip(0).cumsum(0).flip(0)  # (n,): mu_k
        k = torch.arange(self.n, device=like.device)
        coupling = tail[torch.maximum(k[:, None], k[None, :])] * l[:, None] * l[None, :]  # (n, n)
        return coupling, self.g * tail * l

    def mass_matrix(self, q: Tensor) -> Tensor:
        """``M(theta)``, ``(..., n) -> (..., n, n)``, symmetric positive definite."""
        coupling, _ = self._constants(q)
        return coupling * torch.cos(q[..., :, None] - q[..., None, :])

    def potential(self, q: Tensor) -> Tensor:
        """``V(theta)``, ``(..., n) -> (...,)``."""
        _, weight = self._constants(q)
        return -(weight * torch.cos(q)).sum(-1)

    def velocities_to_momenta(self, q: Tensor, omega: Tensor) -> Tensor:
        """``p = M(theta) omega``, ``(..., n)``."""
        return (self.mass_matrix(q) @ omega.unsqueeze(-1)).squeeze(-1)

    def momenta_to_velocities(self, q: Tensor, p: Tensor) -> Tensor:
        """``omega = M(theta)^-1 p`` by a batched linear solve, ``(..., n)``."""
        return torch.linalg.solve(self.mass_matrix(q), p.unsqueeze(-1)).squeeze(-1)

    def _sine_coupling_and_torques(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """``S_ij = mu_max(i, j) l_i l_j sin(theta_i - theta_j)`` ``(..., n, n)`` and the gravity torques
        ``g mu_i l_i sin(theta_i)`` ``(..., n)``."""
        coupling, weight = self._constants(q)
        S = coupling * torch.sin(q[..., :, None] - q[..., None, :])  # (..., n, n)
        return S, weight * torch.sin(q)

    def _sample_lagrangian(self, n: int, generator: torch.Generator) -> Tensor:
        """``theta ~ angle_scale N(0, 1)``, ``omega ~ velocity_scale N(0, 1)`` (Finzi et al. 2020), ``(n, 2 dof)``."""
        theta = self.angle_scale * normal((n, self.dof), generator)
        omega = self.velocity_scale * normal((n, self.dof), generator)
        return torch.cat([theta, omega], dim=-1)

    def _names(self, second: str) -> list[str]:
        links = range(1, self.n + 1)
        return [f"theta{k}" for k in links] + [f"{second}{k}" for k in links]


@register_system("chain_pendulum")
@dataclass
class ChainPendulum(_ChainPendulumParameters, LagrangianForm, AbstractLagrangianSystem):
    """Chain of ``n`` point-mass pendulum links, Lagrangian form, state ``(theta_1..n, omega_1..n)``.

    Angles are measured from the downward vertical. With ``mu_k = sum_{j >= k} m_j``:

    ``L = sum_ij mu_max(i, j) l_i l_j cos(theta_i - theta_j) omega_i omega_j / 2
    + g sum_k mu_k l_k cos(theta_k)``.

    Euler-Lagrange: ``M(theta) omega' = -S(theta) omega^2 - g mu l sin(theta)`` with
    ``S_ij = mu_max(i, j) l_i l_j sin(theta_i - theta_j)``; solved batched for ``omega'``.
    ``n = 1`` is the ideal pendulum, ``n = 2`` the double pendulum.

    Defaults follow Finzi et al. (2020): ``g = 1`` (their potential is ``sum_k m_k y_k``), initial angles
    and angular velocities ``~ N(0, 1)``; their masses and lengths ``~ U(0.6, 1.4)`` come from
    :meth:`with_random_parameters` (the plain defaults are all 1).
    """

    name: ClassVar[str] = "chain_pendulum"

    def accelerations(self, x: Tensor) -> Tensor:
        q, omega = split_state(x)
        S, gravity = self._sine_coupling_and_torques(q)
        rhs = -(S @ (omega**2).unsqueeze(-1)).squeeze(-1) - gravity
        return torch.linalg.solve(self.mass_matrix(q), rhs.unsqueeze(-1)).squeeze(-1)

    def hamiltonian_form(self) -> ChainPendulumHamiltonian:
        """The same chain in canonical coordinates."""
        return ChainPendulumHamiltonian(**self.params())

    def state_names(self) -> list[str]:
        return self._names("omega")


@register_system("chain_pendulum_hamiltonian")
@dataclass
class ChainPendulumHamiltonian(_ChainPendulumParameters, HamiltonianForm, AbstractHamiltonianSystem):
    """Chain of ``n`` point-mass pendulum links, canonical form, state ``(theta_1..n, p_1..n)``.

    Angles are measured from the downward vertical; ``p = M(theta) omega`` with
    ``M_ij = mu_max(i, j) l_i l_j cos(theta_i - theta_j)`` and ``mu_k = sum_{j >= k} m_j``:

    ``H = p^T M(theta)^-1 p / 2 - g sum_k mu_k l_k cos(theta_k)``.

    Not separable (``M`` depends on ``theta``). Hamilton's equations with ``omega = M^-1 p``:
    ``theta' = omega``, ``p_i' = -omega_i sum_j S_ij omega_j - g mu_i l_i sin(theta_i)`` with
    ``S_ij = mu_max(i, j) l_i l_j sin(theta_i - theta_j)``.

    Initial states are :class:`ChainPendulum`'s (same generator, same physical states, ``p = M omega``).
    """

    name: ClassVar[str] = "chain_pendulum_hamiltonian"

    def hamiltonian(self, x: Tensor) -> Tensor:
        q, p = split_state(x)
        return 0.5 * (p * self.momenta_to_velocities(q, p)).sum(-1) + self.potential(q)

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        q, p = split_state(x)
        omega = self.momenta_to_velocities(q, p)
        S, gravity = self._sine_coupling_and_torques(q)
        dp = -omega * (S @ omega.unsqueeze(-1)).squeeze(-1) - gravity
        return torch.cat([omega, dp], dim=-1)

    def lagrangian_form(self) -> ChainPendulum:
        """The same chain in Lagrangian coordinates."""
        return ChainPendulum(**self.params())

    def state_names(self) -> list[str]:
        return self._names("p")
