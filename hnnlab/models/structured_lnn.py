"""Structured Lagrangian network ``L = q_dot^T M(q) q_dot / 2 - V(q)`` with a positive-definite mass matrix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hnnlab.dynamics import check_backend, euler_lagrange_accelerations
from hnnlab.errors import InvalidArgumentError
from hnnlab.models.base import AbstractModel
from hnnlab.models.lnn import resolve_solve_dtype
from hnnlab.models.mlp import scalar_output
from hnnlab.models.registry import register_model


@register_model("structured_lnn")
class StructuredLNN(AbstractModel):
    """Lagrangian network with the structure of a mechanical system (the Lagrangian counterpart of
    :class:`SeparableHNN`; the form of Lutter et al. 2019's Deep Lagrangian Networks):

        ``L_theta(q, q_dot) = q_dot^T M_theta(q) q_dot / 2 - V_theta(q)``,
        ``M_theta(q) = C(q) C(q)^T + eps I``,

    with ``C`` lower-triangular, its diagonal ``softplus(.) > 0``, so the mass matrix ``d2L/dq_dot2 =
    M_theta(q)`` is symmetric positive definite for every state and every weight: the Euler-Lagrange
    solve

        ``q_dd = M_theta(q)^-1 (dL/dq - d2L/(dq_dot dq) q_dot)``

    never meets the singular mass matrices a general :class:`LNN` can learn. The energy is
    ``E = q_dot^T M_theta q_dot / 2 + V_theta(q)``, conserved exactly by the learned flow.

    Args:
        dof: degrees of freedom; states are ``(q, q_dot)``, ``(..., 2 * dof)``.
        hidden, activation, orthogonal_init: the default networks ``MLP(dof, hidden, dof (dof + 1) / 2)``
            for the entries of ``C`` and ``MLP(dof, hidden, 1)`` for ``V``.
        eps: ``eps > 0`` added to the diagonal of ``M`` (a floor on its eigenvalues).
        mass_net, potential_net: modules used instead of the default networks, mapping ``q`` ``(..., dof)``
            to the ``dof (dof + 1) / 2`` entries of ``C`` (the diagonal first, then the strictly lower
            part row by row; the diagonal goes through softplus) and to ``V`` ``(...,)`` or ``(..., 1)``.
        solve_dtype: ``None`` (the state's dtype), ``"float32"`` or ``"float64"`` for the linear solve.
        backend: ``"autograd"`` or ``"func"``, as for :class:`LNN`.
    """

    name: ClassVar[str] = "structured_lnn"
    coordinates: ClassVar[str] = "lagrangian"
    is_separable: ClassVar[bool] = False

    def __init__(
        self,
        dof: int,
        hidden: Sequence[int] = (200, 200),
        activation: str = "softplus",
        orthogonal_init: bool = False,
        eps: float = 1e-3,
        mass_net: nn.Module | None = None,
        potential_net: nn.Module | None = None,
        solve_dtype: str | None = None,
        backend: str = "autograd",
    ) -> None:
        super().__init__(dof)
        architecture = {"hidden": hidden, "activation": activation, "orthogonal_init": orthogonal_init}
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not (math.isfinite(eps) and eps > 0):
            raise InvalidArgumentError(f"eps must be a finite number > 0, got {eps!r}")
        check_backend(backend)
        self.eps = float(eps)
        self.solve_dtype = resolve_solve_dtype(solve_dtype)
        self.backend = backend
        n_entries = self.dof * (self.dof + 1) // 2
        self.mass_net = self.network(mass_net, self.dof, n_entries, architecture, bias_last=True)
        self.potential_net = self.network(potential_net, self.dof, 1, architecture)
        # Where each entry of C comes from in (diagonal, strictly lower part, 0): (dof, dof) indices.
        index = torch.full((self.dof, self.dof), n_entries, dtype=torch.long)
        index[range(self.dof), range(self.dof)] = torch.arange(self.dof)
        rows, cols = torch.tril_indices(self.dof, self.dof, offset=-1)
        index[rows, cols] = torch.arange(self.dof, n_entries)
        self.register_buffer("_factor_index", index, persistent=False)

    def cholesky_factor(self, q: Tensor) -> Tensor:
        """``C(q)``, lower-triangular with a positive diagonal, ``(..., dof) -> (..., dof, dof)``."""
        entries = self.mass_net(q)  # (..., dof (dof + 1) / 2)
        n_entries = self.dof * (self.dof + 1) // 2
        if entries.shape != (*q.shape[:-1], n_entries):
            raise InvalidArgumentError(
                f"mass_net must map (..., {self.dof}) to (..., {n_entries}) entries of the Cholesky factor; "
                f"for input shape {tuple(q.shape)} it returned shape {tuple(entries.shape)}"
            )
        padded = torch.cat(
            [F.softplus(entries[..., : self.dof]), entries[..., self.dof :], torch.zeros_like(entries[..., :1])], dim=-1
        )
        return padded[..., self._factor_index]  # (..., dof, dof); no in-place writes, so vmap-able

    def mass_matrix(self, q: Tensor) -> Tensor:
        """``M_theta(q) = C C^T + eps I``, symmetric positive definite, ``(..., dof, dof)``."""
        c = self.cholesky_factor(q)
        eye = torch.eye(self.dof, dtype=q.dtype, device=q.device)
        return c @ c.transpose(-1, -2) + self.eps * eye

    def potential(self, q: Tensor) -> Tensor:
        """``V_theta(q)``, ``(..., dof) -> (...,)``."""
        return scalar_output(self.potential_net(q), q, what="potential_net")

    def kinetic(self, x: Tensor) -> Tensor:
        """``T = q_dot^T M_theta(q) q_dot / 2`` of states ``(..., 2 * dof)``, shape ``(...,)``."""
        q, v = x[..., : self.dof], x[..., self.dof :]
        # |C^T q_dot|^2 / 2 + eps |q_dot|^2 / 2 = q_dot^T M q_dot / 2, without forming M.
        ctv = (self.cholesky_factor(q) * v[..., :, None]).sum(-2)  # (..., dof): C^T q_dot
        return 0.5 * (ctv.square().sum(-1) + self.eps * v.square().sum(-1))

    def lagrangian(self, x: Tensor) -> Tensor:
        """``L_theta = T - V`` of states ``(..., 2 * dof)``, shape ``(...,)``."""
        return self.kinetic(x) - self.potential(x[..., : self.dof])

    def accelerations(self, x: Tensor) -> Tensor:
        """``q_dd`` of states ``(..., 2 * dof)``, shape ``(..., dof)``."""
        return euler_lagrange_accelerations(
            self.lagrangian, self.check_state(x), solve_dtype=self.solve_dtype, backend=self.backend
        )

    def energy(self, x: Tensor) -> Tensor:
        x = self.check_state(x, differentiate=False)
        return self.kinetic(x) + self.potential(x[..., : self.dof])

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        x = self.check_state(x)
        return torch.cat([x[..., self.dof :], self.accelerations(x)], dim=-1)
