"""Separable Hamiltonian neural network ``H = T(p) + V(q)``, optionally with a known mass matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from hnnlab.dynamics import input_gradient
from hnnlab.errors import InvalidArgumentError
from hnnlab.fields import AbstractSeparableField
from hnnlab.models.base import AbstractModel
from hnnlab.models.mlp import scalar_output
from hnnlab.models.registry import register_model


@register_model("separable_hnn")
class SeparableHNN(AbstractModel, AbstractSeparableField):
    """Separable Hamiltonian neural network: ``H_theta(q, p) = T_theta(p) + V_theta(q)`` and

        ``dq/dt = dT/dp``,  ``dp/dt = -dV/dq``.

    Separability makes explicit symplectic integrators (leapfrog, Yoshida, Forest-Ruth) symplectic
    for the learned system, and each half of the field needs only one of the two networks
    (:meth:`dq_dt`, :meth:`dp_dt`).

    With a known mass matrix ``M`` the kinetic energy is fixed, ``T(p) = p^T M^-1 p / 2``, and only
    ``V`` is learned; then ``dq/dt = M^-1 p`` exactly.

    Args:
        dof: degrees of freedom; states are ``(..., 2 * dof)``.
        hidden, activation, orthogonal_init: the default networks ``MLP(dof, hidden, 1, ...)``.
        mass_matrix: ``dof`` numbers (a diagonal ``M``) or ``dof * dof`` numbers, flat or nested
            row by row (a full symmetric positive-definite ``M``); ``None`` learns ``T``.
        kinetic_net, potential_net: modules mapping ``(..., dof)`` to ``(...,)`` or ``(..., 1)`` used
            instead of the default networks.
    """

    name: ClassVar[str] = "separable_hnn"
    coordinates: ClassVar[str] = "canonical"
    is_separable: ClassVar[bool] = True

    def __init__(
        self,
        dof: int,
        hidden: Sequence[int] = (200, 200),
        activation: str = "tanh",
        orthogonal_init: bool = True,
        mass_matrix: Sequence[float] | Sequence[Sequence[float]] | None = None,
        kinetic_net: nn.Module | None = None,
        potential_net: nn.Module | None = None,
    ) -> None:
        super().__init__(dof)
        architecture = {"hidden": hidden, "activation": activation, "orthogonal_init": orthogonal_init}
        if mass_matrix is not None and kinetic_net is not None:
            raise InvalidArgumentError(
                "give at most one of mass_matrix (a known kinetic energy) and kinetic_net (a learned one)"
            )
        self.kinetic_net: nn.Module | None = None
        if mass_matrix is not None:
            # M^-1 kept in float64 and cast to the state's dtype at use, so float64 models stay exact.
            self.register_buffer("inverse_mass", _inverse_mass(mass_matrix, self.dof))  # (dof, dof)
        else:
            self.register_buffer("inverse_mass", None)
            self.kinetic_net = self.network(kinetic_net, self.dof, 1, architecture)
        self.potential_net = self.network(potential_net, self.dof, 1, architecture)

    def kinetic(self, p: Tensor) -> Tensor:
        """``T(p)``, ``(..., dof) -> (...,)``."""
        if self.inverse_mass is not None:
            return 0.5 * (p * self._velocity(p)).sum(-1)
        return scalar_output(self.kinetic_net(p), p, what="kinetic_net")

    def potential(self, q: Tensor) -> Tensor:
        """``V(q)``, ``(..., dof) -> (...,)``."""
        return scalar_output(self.potential_net(q), q, what="potential_net")

    def hamiltonian(self, x: Tensor) -> Tensor:
        """``H = T(p) + V(q)`` of states ``(..., 2 * dof)``, shape ``(...,)``."""
        return self.kinetic(x[..., self.dof :]) + self.potential(x[..., : self.dof])

    def energy(self, x: Tensor) -> Tensor:
        return self.hamiltonian(self.check_state(x, differentiate=False))

    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        """``dT/dp``, ``(..., dof)``."""
        p = self.check_state(x)[..., self.dof :]
        if self.inverse_mass is not None:
            return self._velocity(p)
        return input_gradient(self.kinetic, p)

    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        """``-dV/dq``, ``(..., dof)``."""
        q = self.check_state(x)[..., : self.dof]
        return -input_gradient(self.potential, q)

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        return torch.cat([self.dq_dt(t, x), self.dp_dt(t, x)], dim=-1)

    def _velocity(self, p: Tensor) -> Tensor:
        return p @ self.inverse_mass.to(p.dtype)  # (..., dof); M^-1 is symmetric


def _inverse_mass(mass_matrix: Sequence[float] | Sequence[Sequence[float]], dof: int) -> Tensor:
    """``M^-1`` ``(dof, dof)`` in float64 from a diagonal or a full symmetric positive-definite ``M``."""
    try:
        m = torch.as_tensor(mass_matrix, dtype=torch.float64)
    except (TypeError, ValueError):
        m = None
    if m is not None and m.numel() == dof and m.ndim <= 1:
        m = torch.diag(m.reshape(dof))
    elif m is not None and m.numel() == dof * dof and m.ndim in (1, 2):
        m = m.reshape(dof, dof)
    else:
        raise InvalidArgumentError(
            f"mass_matrix must hold dof = {dof} numbers (a diagonal) or dof * dof = {dof * dof} numbers "
            f"(a full matrix, flat or nested), got {mass_matrix!r}"
        )
    chol, info = torch.linalg.cholesky_ex(m)
    if not bool(torch.isfinite(m).all()) or not torch.equal(m, m.T) or int(info) != 0:
        raise InvalidArgumentError(
            f"mass_matrix must be symmetric positive definite (a diagonal needs every entry > 0), got {mass_matrix!r}"
        )
    return torch.cholesky_inverse(chol)
