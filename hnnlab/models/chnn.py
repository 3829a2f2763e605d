"""Constrained Hamiltonian and Lagrangian networks (Finzi, Wang, Wilson 2020) in Cartesian coordinates.

``N`` bodies in ``d`` dimensions, positions ``x`` ``(..., N d)`` flattened body by body, with a learned constant mass
matrix and a learned potential, ``H(x, p) = p^T M^-1 p / 2 + V_theta(x)``. The rigid links (distance constraints
between bodies and to fixed points) are not learned: they are given, and the vector field is projected onto the
tangent space of the constraint manifold by the same code as the analytic constrained systems
(:func:`hnnlab.systems.constrained.projected_field`), so the learned flow keeps ``phi(x) = 0`` and ``G M^-1 p = 0``
exactly in continuous time and up to the integrator's error in a rollout.

The mass matrix is ``M = M_b (x) I_d`` with a body-level ``N x N`` matrix ``M_b = L L^T``, ``L`` lower triangular
with a softplus diagonal: positive definite by construction, isotropic (the kinetic energy does not depend on the
direction of motion, as for point masses and for Finzi's rigid bodies built from linked masses), ``N (N + 1) / 2``
parameters instead of ``(N d)(N d + 1) / 2``, and it contains the point masses ``M_b = diag(m)`` exactly. It starts
at ``M_b = I``. ``M^-1 u`` is a Cholesky solve with ``L`` (never an inverse).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hnnlab.dynamics import input_gradient, split_state
from hnnlab.errors import InvalidArgumentError
from hnnlab.models.base import AbstractModel
from hnnlab.models.mlp import check_positive_int, scalar_output
from hnnlab.models.registry import register_model
from hnnlab.systems.constrained import (
    AbstractConstrainedSystem,
    DistanceConstraints,
    check_on_manifold,
    projected_field,
)


class AbstractConstrainedModel(AbstractModel):
    """What CHNN and CLNN share: the constraints, the mass matrix ``M_b (x) I_d``, the potential network.

    Args:
        dof: ``N d``, the number of position coordinates; states are ``(..., 2 * dof)``.
        spatial_dim: ``d``, the dimension each body moves in (``dof`` must be a multiple of it).
        pairs: rigid links ``[i, j, length]`` between bodies ``i`` and ``j`` (numbered from 0).
        fixed: links ``[i, point, length]`` of body ``i`` to a fixed ``point`` (``d`` numbers).
            Lengths may be left out (``[i, j]``, ``[i, point]``; all or none): the projection needs only the
            constraints' Jacobian, which does not depend on them; the on-manifold check then checks
            ``d phi/dt = 0`` only. No constraints at all: the unconstrained ``H = p^T M^-1 p / 2 + V(x)``.
        hidden, activation, orthogonal_init: the default potential network ``MLP(dof, hidden, 1, ...)``.
        potential_net: a module mapping ``(..., dof)`` to ``(...,)`` or ``(..., 1)`` used as ``V`` instead.
    """

    is_separable: ClassVar[bool] = False  # the projection couples x and p: dx/dt depends on x, dp/dt on p

    def __init__(
        self,
        dof: int,
        spatial_dim: int = 1,
        pairs: Sequence[Sequence[Any]] = (),
        fixed: Sequence[Sequence[Any]] = (),
        hidden: Sequence[int] = (200, 200),
        activation: str = "tanh",
        orthogonal_init: bool = True,
        potential_net: nn.Module | None = None,
    ) -> None:
        super().__init__(dof)
        architecture = {"hidden": hidden, "activation": activation, "orthogonal_init": orthogonal_init}
        self.spatial_dim = check_positive_int("spatial_dim", spatial_dim)
        if self.dof % self.spatial_dim:
            raise InvalidArgumentError(
                f"{type(self).__name__}: dof = {self.dof} is not a whole number of bodies of spatial_dim = "
                f"{self.spatial_dim} coordinates each (dof must be n_bodies * spatial_dim)"
            )
        self.n_bodies = self.dof // self.spatial_dim
        self.constraints = _constraints(self.n_bodies, self.spatial_dim, pairs, fixed, type(self).__name__)
        n = self.n_bodies
        self.mass_diagonal = nn.Parameter(torch.full((n,), _softplus_inverse(1.0)))  # M_b = I at the start
        self.mass_lower = nn.Parameter(torch.zeros(n * (n - 1) // 2)) if n > 1 else None
        self.potential_net = self.network(potential_net, self.dof, 1, architecture)

    # -- the mass matrix --------------------------------------------------------------------------
    def mass_cholesky(self) -> Tensor:
        """``L`` with ``M_b = L L^T``, ``(N, N)``, lower triangular with a positive (softplus) diagonal."""
        n = self.n_bodies
        L = torch.diag(F.softplus(self.mass_diagonal))
        if self.mass_lower is not None:
            rows, cols = torch.tril_indices(n, n, offset=-1, device=L.device)
            L = L.index_put((rows, cols), self.mass_lower)
        return L

    def body_mass_matrix(self) -> Tensor:
        """``M_b = L L^T`` ``(N, N)``; the full mass matrix is ``M_b (x) I_d``."""
        L = self.mass_cholesky()
        return L @ L.T

    def mass_matrix(self) -> Tensor:
        """``M = M_b (x) I_d``, ``(N d, N d)``."""
        return torch.kron(self.body_mass_matrix(), torch.eye(self.spatial_dim, dtype=self.mass_diagonal.dtype,
                                                             device=self.mass_diagonal.device))

    def _bodies(self, u: Tensor) -> Tensor:  # (..., N d) -> (..., N, d)
        return u.reshape(*u.shape[:-1], self.n_bodies, self.spatial_dim)

    def inverse_mass(self, u: Tensor) -> Tensor:
        """``M^-1 u`` for ``u`` ``(..., N d)``: a Cholesky solve with ``L`` on each of the ``d`` axes."""
        L = self.mass_cholesky().to(u.dtype)
        return torch.cholesky_solve(self._bodies(u), L).reshape(u.shape)  # (..., N, d) solved, flattened

    def apply_mass(self, v: Tensor) -> Tensor:
        """``M v`` for ``v`` ``(..., N d)``."""
        return (self.body_mass_matrix().to(v.dtype) @ self._bodies(v)).reshape(v.shape)

    # -- the potential ----------------------------------------------------------------------------
    def potential(self, x: Tensor) -> Tensor:
        """``V_theta(x)``, ``(..., N d) -> (...,)``."""
        return scalar_output(self.potential_net(x), x, what="potential_net")

    # -- constraints ------------------------------------------------------------------------------
    @abc.abstractmethod
    def positions_and_velocities(self, x: Tensor) -> Tensor:
        """States as ``(x, v)`` (the paper's Cartesian coordinates), shape of ``x``; ``v = M^-1 p`` with this
        model's mass for canonical states."""

    def constraint_violation(self, x: Tensor) -> Tensor:
        """``max(|phi|, |G v|)`` per state ``(...,)`` (``|G v|`` only when the lengths are not known); a diagnostic,
        without a graph."""
        with torch.no_grad():
            q, v = split_state(self.positions_and_velocities(self.check_state(x, differentiate=False)))
        if self.constraints is None:
            return torch.zeros(q.shape[:-1], dtype=q.dtype, device=q.device)
        velocity = self.constraints.velocity_constraint(q, v).abs().amax(-1)
        return self.constraints.violation(q, v) if self.constraints.lengths_known else velocity

    def check_on_manifold(self, x: Tensor, tol: float = 1e-8) -> None:
        """Refuse states off the constraint manifold by more than ``tol``, naming the size of the violation."""
        q, v = split_state(self.positions_and_velocities(self.check_state(x, differentiate=False)))
        if self.constraints is not None:
            check_on_manifold(self.constraints, q, v, tol, type(self).__name__)

    def _projected(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """``(x', p')`` of ``H`` at positions ``q`` and momenta ``p`` ``(..., N d)``, projected."""
        dV = input_gradient(self.potential, q)
        if self.constraints is None:
            return self.inverse_mass(p), -dV
        return projected_field(self.constraints, q, p, self.inverse_mass, dV, owner=type(self).__name__)

    @classmethod
    def for_system(cls, system: AbstractConstrainedSystem, *, known_lengths: bool = True,
                   **kwargs: Any) -> AbstractConstrainedModel:
        """A model with ``system``'s constraint structure (its lengths too unless ``known_lengths=False``)."""
        c = system.constraint_set()
        keep = (lambda entry: list(entry)) if known_lengths else (lambda entry: list(entry[:2]))
        pairs = [keep(entry) for entry in c.pairs]
        fixed = [keep((i, list(point), length)) for i, point, length in c.fixed]
        return cls(system.dof, spatial_dim=c.d, pairs=pairs, fixed=fixed, **kwargs)


@register_model("chnn")
class CHNN(AbstractConstrainedModel):
    """Constrained Hamiltonian neural network (Finzi et al. 2020) on canonical states ``(x, p)``, ``(..., 2 N d)``:

        ``H(x, p) = p^T M^-1 p / 2 + V_theta(x)``,  ``(x', p') = P(x, p) (M^-1 p, -grad V_theta)``,

    ``P`` the projection onto the tangent space of ``{phi(x) = 0, G(x) M^-1 p = 0}`` with the multipliers in
    closed form (:mod:`hnnlab.systems.constrained`). ``H`` is conserved by the projected flow; implicit midpoint and
    Gauss-Legendre keep ``phi`` and ``G M^-1 p`` (quadratic invariants of the field) to their solve tolerance. The
    field is not separable (explicit splitting methods are refused). Arguments: see the module and
    :class:`AbstractConstrainedModel`.

    The momentum constraint ``G M^-1 p = 0`` involves the learned mass: a state whose momenta came from the true mass
    is on the learned manifold only once ``M`` is learned. Its positions stay on ``phi = const`` regardless
    (``G x' = 0`` at every state); :meth:`momenta` maps velocities to this model's momenta.
    """

    name: ClassVar[str] = "chnn"
    coordinates: ClassVar[str] = "canonical"

    def positions_and_velocities(self, x: Tensor) -> Tensor:
        q, p = split_state(x)
        return torch.cat([q, self.inverse_mass(p)], dim=-1)

    def momenta(self, xv: Tensor) -> Tensor:
        """States ``(x, v)`` ``(..., 2 * dof)`` to this model's canonical states ``(x, M v)``."""
        q, v = split_state(xv)
        return torch.cat([q, self.apply_mass(v)], dim=-1)

    def hamiltonian(self, x: Tensor) -> Tensor:
        """``H`` of states ``(..., 2 * dof)``, shape ``(...,)``."""
        q, p = split_state(x)
        return 0.5 * (p * self.inverse_mass(p)).sum(-1) + self.potential(q)

    def energy(self, x: Tensor) -> Tensor:
        return self.hamiltonian(self.check_state(x, differentiate=False))

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        q, p = split_state(self.check_state(x))
        return torch.cat(self._projected(q, p), dim=-1)


@register_model("clnn")
class CLNN(AbstractConstrainedModel):
    """Constrained Lagrangian neural network (Finzi et al. 2020) on states ``(x, v)`` (positions and velocities,
    the paper's Cartesian coordinates), ``(..., 2 N d)``:

        ``L(x, v) = v^T M v / 2 - V_theta(x)``,  ``M v' = -grad V_theta - G^T lambda``,  ``G v' = -(dG/dt) v``,

    the constrained Euler-Lagrange equations, solved as the projected field of ``H`` at ``p = M v`` (the same
    projection as :class:`CHNN`; ``v' = M^-1 p'``). Energy ``E = v^T M v / 2 + V_theta(x)``. Arguments: see the
    module and :class:`AbstractConstrainedModel`.
    """

    name: ClassVar[str] = "clnn"
    coordinates: ClassVar[str] = "lagrangian"

    def positions_and_velocities(self, x: Tensor) -> Tensor:
        return x

    def lagrangian(self, x: Tensor) -> Tensor:
        """``L = v^T M v / 2 - V`` of states ``(..., 2 * dof)``, shape ``(...,)``."""
        q, v = split_state(x)
        return 0.5 * (v * self.apply_mass(v)).sum(-1) - self.potential(q)

    def energy(self, x: Tensor) -> Tensor:
        q, v = split_state(self.check_state(x, differentiate=False))
        return 0.5 * (v * self.apply_mass(v)).sum(-1) + self.potential(q)

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        q, v = split_state(self.check_state(x))
        dx, dp = self._projected(q, self.apply_mass(v))
        return torch.cat([dx, self.inverse_mass(dp)], dim=-1)


def _softplus_inverse(y: float) -> float:
    return y + math.log(-math.expm1(-y))


def _constraints(
    n_bodies: int, d: int, pairs: Sequence[Sequence[Any]], fixed: Sequence[Sequence[Any]], owner: str
) -> DistanceConstraints | None:
    """The :class:`DistanceConstraints` of the constructor's ``pairs`` and ``fixed`` (``None`` if both are empty),
    refusing entries of the wrong form before DistanceConstraints checks the bodies, points and lengths."""
    def entries(values: Sequence[Sequence[Any]], key: str, form: str) -> list[tuple[Any, ...]]:
        if isinstance(values, str) or not isinstance(values, Sequence):
            raise InvalidArgumentError(f"{owner}: {key} must be a list of {form}, got {values!r}")
        out = []
        for entry in values:
            if isinstance(entry, str) or not isinstance(entry, Sequence) or len(entry) not in (2, 3):
                raise InvalidArgumentError(f"{owner}: every entry of {key} must be {form}, got {entry!r}")
            out.append((*entry, None) if len(entry) == 2 else tuple(entry))
        return out

    pair_entries = entries(pairs, "pairs", "[i, j, length] or [i, j] (bodies numbered from 0)")
    fixed_entries = entries(fixed, "fixed", "[i, point, length] or [i, point] (point: spatial_dim numbers)")
    if not pair_entries and not fixed_entries:
        return None
    for i, point, _ in fixed_entries:
        if isinstance(point, str) or not isinstance(point, Sequence):
            raise InvalidArgumentError(f"{owner}: the fixed point of body {i} must be {d} numbers, got {point!r}")
    try:
        return DistanceConstraints(
            n_bodies, d,
            pairs=tuple((i, j, length) for i, j, length in pair_entries),
            fixed=tuple((i, tuple(float(v) for v in point), length) for i, point, length in fixed_entries),
        )
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{owner} (dof = {n_bodies * d}, {n_bodies} bodies of spatial_dim {d}): {exc}") \
            from None
