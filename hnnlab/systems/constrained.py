"""Point masses in ``d`` dimensions with holonomic distance constraints ``Phi(x) = 0``, in Cartesian coordinates.

The state is ``(x, p)`` (canonical) or ``(x, v)`` (Lagrangian) with ``x, p, v`` the ``N`` bodies' positions,
momenta and velocities flattened body by body, ``(..., N * d)`` each; the mass matrix is a constant
``M = diag(m) (x) I_d``. Each constraint ``c`` fixes a distance, between two bodies or from a body to a fixed point:

    ``phi_c(x) = |r_c|^2 - l_c^2`` with ``r_c = x_i - x_j`` (or ``x_i - a_c``),

written once as an incidence matrix ``D`` (``C x N``, ``+1`` at ``i``, ``-1`` at ``j``) and offsets ``a``.
The dynamics are Hamilton's equations of ``H = p^T M^-1 p / 2 + V(x)`` projected onto the tangent space of the
phase-space constraint manifold ``Psi(z) = (phi(x), G(x) M^-1 p) = 0`` (``G = dphi/dx``), the explicit-constraint
form of Finzi, Wang and Wilson (2020):

    ``z' = P(z) J grad H``, ``P = I - J DPsi^T (DPsi J DPsi^T)^-1 DPsi``,

with the multipliers solved in closed form: ``DPsi J DPsi^T = [[0, A], [-A, B]]`` with ``A = G M^-1 G^T``, so one
Cholesky factorisation of the ``C x C`` matrix ``A`` solves it. On the manifold this is the Lagrange-multiplier
form ``p' = -grad V - G^T lambda``. A singular ``A`` (constraints that do not fix independent directions, such
as two links collinear in a degenerate way) raises :class:`SingularConstraintError`, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from hnnlab.dynamics import split_state
from hnnlab.errors import InvalidArgumentError
from hnnlab.systems.base import AbstractSystem
from hnnlab.systems.chain_pendulum import ChainPendulum, _ChainPendulumParameters
from hnnlab.systems.registry import register_system


class SingularConstraintError(InvalidArgumentError):
    """The constraint Jacobian has dependent rows at a state: the multipliers are not determined."""


class ConstraintViolationError(InvalidArgumentError):
    """A state that is off the constraint manifold by more than the tolerance."""


@dataclass(frozen=True)
class DistanceConstraints:
    """Distance constraints between ``n_bodies`` point masses in ``d`` dimensions, written once.

    Args:
        n_bodies, d: the bodies and their dimension.
        pairs: ``(i, j, length)``: ``|x_i - x_j| = length``.
        fixed: ``(i, point, length)``: ``|x_i - point| = length`` with ``point`` a sequence of ``d`` numbers.

    A length may be ``None`` (all or none): the structure without the lengths. The projected field needs only
    the Jacobian ``G``, which does not depend on them (a learned model whose lengths are not known); then
    :meth:`phi` is refused and :meth:`squared_distances` measures drift relative to a first state.
    """

    n_bodies: int
    d: int
    pairs: tuple[tuple[int, int, float], ...] = ()
    fixed: tuple[tuple[int, tuple[float, ...], float], ...] = ()

    def __post_init__(self) -> None:
        for key in ("n_bodies", "d"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"DistanceConstraints: {key} must be an integer >= 1, got {value!r}")
        bodies = range(self.n_bodies)
        for i, j, length in self.pairs:
            if i not in bodies or j not in bodies or i == j:
                raise InvalidArgumentError(
                    f"DistanceConstraints: pair ({i}, {j}) must name two different bodies in 0..{self.n_bodies - 1}"
                )
            _check_length(length, f"pair ({i}, {j})", allow_none=True)
        for i, point, length in self.fixed:
            if i not in bodies:
                raise InvalidArgumentError(
                    f"DistanceConstraints: fixed-point body {i} is not in 0..{self.n_bodies - 1}"
                )
            if len(point) != self.d:
                raise InvalidArgumentError(
                    f"DistanceConstraints: the fixed point of body {i} has {len(point)} coordinates; d = {self.d}"
                )
            _check_length(length, f"fixed point of body {i}", allow_none=True)
        if not self.pairs and not self.fixed:
            raise InvalidArgumentError("DistanceConstraints: need at least one pair or fixed-point constraint")
        unknown = [c[2] is None for c in (*self.pairs, *self.fixed)]
        if any(unknown) and not all(unknown):
            raise InvalidArgumentError("DistanceConstraints: give every constraint's length or none of them")

    @property
    def lengths_known(self) -> bool:
        """Whether the lengths were given (else only the structure: :meth:`phi` is refused)."""
        return (self.pairs or self.fixed)[0][2] is not None

    @property
    def count(self) -> int:
        """Number of constraints ``C``."""
        return len(self.pairs) + len(self.fixed)

    def tensors(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Incidence ``D`` ``(C, N)``, offsets ``a`` ``(C, d)`` and lengths ``l`` ``(C,)`` (NaN where not given)
        in ``like``'s dtype and device (built there: nothing crosses devices)."""
        D = [[0.0] * self.n_bodies for _ in range(self.count)]
        a = [[0.0] * self.d for _ in range(self.count)]
        for c, (i, j, _) in enumerate(self.pairs):
            D[c][i], D[c][j] = 1.0, -1.0
        for k, (i, point, _) in enumerate(self.fixed):
            D[len(self.pairs) + k][i] = 1.0
            a[len(self.pairs) + k] = [float(v) for v in point]
        lengths = [math.nan if c[2] is None else float(c[2]) for c in (*self.pairs, *self.fixed)]
        D_, a_, l_ = (torch.tensor(v, dtype=like.dtype, device=like.device) for v in (D, a, lengths))
        return D_, a_, l_

    def _bodies(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.n_bodies * self.d:
            raise InvalidArgumentError(
                f"DistanceConstraints: positions must have last dimension n_bodies * d = {self.n_bodies * self.d}, "
                f"got shape {tuple(x.shape)}"
            )
        return x.reshape(*x.shape[:-1], self.n_bodies, self.d)

    def squared_distances(self, x: Tensor) -> Tensor:
        """``|D x - a|^2`` (each constrained distance squared), ``(..., N d) -> (..., C)``."""
        D, a, _ = self.tensors(x)
        return ((D @ self._bodies(x) - a) ** 2).sum(-1)

    def phi(self, x: Tensor) -> Tensor:
        """``phi(x) = |D x - a|^2 - l^2``, ``(..., N d) -> (..., C)``."""
        if not self.lengths_known:
            raise InvalidArgumentError(
                "DistanceConstraints: phi needs the lengths, which were not given (only the structure); "
                "measure drift against a first state with squared_distances"
            )
        return self.squared_distances(x) - self.tensors(x)[2] ** 2

    def velocity_constraint(self, x: Tensor, v: Tensor) -> Tensor:
        """``d phi / dt = G(x) v = 2 (D x - a) . (D v)``, ``(..., C)``."""
        D, a, _ = self.tensors(x)
        return 2 * ((D @ self._bodies(x) - a) * (D @ self._bodies(v))).sum(-1)

    def jacobian(self, x: Tensor) -> Tensor:
        """``G = dphi/dx``, ``(..., C, N d)``: ``G[c, (n, k)] = 2 D[c, n] r_c[k]``."""
        D, a, _ = self.tensors(x)
        r = D @ self._bodies(x) - a  # (..., C, d)
        G = 2 * D[:, :, None] * r[..., :, None, :]  # (..., C, N, d)
        return G.reshape(*G.shape[:-2], -1)

    def velocity_jacobian(self, v: Tensor) -> Tensor:
        """``d(G(x) v)/dx = 2 D[c, n] (D v)_c``, ``(..., C, N d)`` (independent of ``x``)."""
        D, _, _ = self.tensors(v)
        w = D @ self._bodies(v)
        K = 2 * D[:, :, None] * w[..., :, None, :]
        return K.reshape(*K.shape[:-2], -1)

    def violation(self, x: Tensor, v: Tensor) -> Tensor:
        """``max_c max(|phi_c|, |G v|_c)`` per state, ``(...,)``."""
        return torch.maximum(self.phi(x).abs().amax(-1), self.velocity_constraint(x, v).abs().amax(-1))


def _check_length(length: Any, what: str, *, allow_none: bool = False) -> None:
    if length is None and allow_none:
        return
    if isinstance(length, bool) or not isinstance(length, int | float) or not (math.isfinite(length) and length > 0):
        raise InvalidArgumentError(
            f"DistanceConstraints: the length of the {what} must be finite and > 0, got {length!r}"
        )


def projected_field(
    constraints: DistanceConstraints,
    x: Tensor,
    p: Tensor,
    inverse_mass: Callable[[Tensor], Tensor],
    dV: Tensor,
    *,
    owner: str,
) -> tuple[Tensor, Tensor]:
    """``(x', p') = P J grad H`` for ``H = p^T M^-1 p / 2 + V(x)`` (module docstring), batched.

    Args:
        constraints: the constraints.
        x, p: positions and momenta ``(..., N d)``.
        inverse_mass: ``u -> M^-1 u`` on ``(..., N d)`` (and on ``(..., C, N d)`` row by row).
        dV: ``grad V(x)`` ``(..., N d)``.
        owner: the class name, for the error message.

    Raises:
        SingularConstraintError: ``A = G M^-1 G^T`` is not positive definite at some state.
    """
    v = inverse_mass(p)
    G = constraints.jacobian(x)  # (..., C, n)
    K = constraints.velocity_jacobian(v)  # (..., C, n)
    MiGt = inverse_mass(G)  # (..., C, n): rows of M^-1 G^T
    A = G @ MiGt.transpose(-1, -2)  # (..., C, C)
    B = K @ MiGt.transpose(-1, -2) - MiGt @ K.transpose(-1, -2)
    L, info = torch.linalg.cholesky_ex(A)
    if _values_readable(A):
        _check_nonsingular(A, L, info, owner)
    f_x, f_p = v, -dV
    # r = DPsi J grad H; DPsi = [[G, 0], [K, G M^-1]].
    r1 = (G @ f_x.unsqueeze(-1)).squeeze(-1)
    r2 = (K @ f_x.unsqueeze(-1) + MiGt @ f_p.unsqueeze(-1)).squeeze(-1)
    y2 = torch.cholesky_solve(r1.unsqueeze(-1), L)
    y1 = torch.cholesky_solve(B @ y2 - r2.unsqueeze(-1), L)
    # f - J DPsi^T y with DPsi^T y = (G^T y1 + K^T y2, M^-1 G^T y2) and J (a, b) = (b, -a).
    dx = f_x - (MiGt.transpose(-1, -2) @ y2).squeeze(-1)
    dp = f_p + (G.transpose(-1, -2) @ y1 + K.transpose(-1, -2) @ y2).squeeze(-1)
    return dx, dp


def _values_readable(t: Tensor) -> bool:
    """Whether ``t``'s values can be read (not on the ``meta`` device, not inside a ``torch.func`` transform such
    as ``vmap``, where a data-dependent check cannot run; the singularity check then runs on the untransformed
    evaluation)."""
    return t.device.type != "meta" and not torch._C._functorch.is_functorch_wrapped_tensor(t)


def _check_nonsingular(A: Tensor, L: Tensor, info: Tensor, owner: str) -> None:
    """Raise :class:`SingularConstraintError` where ``A = G M^-1 G^T`` ``(..., C, C)`` is not numerically positive
    definite (a Cholesky pivot below ``1e3 eps`` of its largest diagonal entry)."""
    scale = A.diagonal(dim1=-2, dim2=-1).amax(-1).clamp_min(torch.finfo(A.dtype).tiny)
    pivots = L.diagonal(dim1=-2, dim2=-1) ** 2
    bad = (info != 0) | (pivots.amin(-1) < 1e3 * torch.finfo(A.dtype).eps * scale) | ~torch.isfinite(A).all(-1).all(-1)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise SingularConstraintError(
            f"{owner}: the constraint Jacobian is singular at state {index} (the constraints do not fix independent "
            "directions there, e.g. two links collinear in a degenerate way or of zero length); the multipliers are "
            "undetermined"
        )


def check_on_manifold(constraints: DistanceConstraints, x: Tensor, v: Tensor, tol: float, owner: str) -> None:
    """Refuse positions ``x`` and velocities ``v`` ``(..., N d)`` whose violation ``max(|phi|, |G v|)`` exceeds
    ``tol``, naming its size (only ``|G v|`` when the lengths are not known)."""
    x, v = x.detach().to(torch.float64), v.detach().to(torch.float64)
    velocity = constraints.velocity_constraint(x, v).abs().amax(-1)
    worst = float((constraints.violation(x, v) if constraints.lengths_known else velocity).max())
    if not worst <= tol:
        what = "max |phi| and |d phi/dt|" if constraints.lengths_known else "max |d phi/dt|; lengths not given"
        raise ConstraintViolationError(
            f"{owner}: the state is off the constraint manifold by {worst:.3g} ({what}); allowed: {tol:g}"
        )


class AbstractConstrainedSystem(AbstractSystem):
    """Point masses with distance constraints and a potential ``V(x)``, in Cartesian coordinates.

    Subclasses provide ``masses`` (one per body), :meth:`constraint_set` (a :class:`DistanceConstraints`),
    :meth:`potential` and :meth:`potential_gradient`, and :meth:`sample_initial_states`; ``coordinates`` selects
    the state ``(x, p)`` (``"canonical"``) or ``(x, v)`` (``"lagrangian"``). ``dof = N d``.
    """

    spatial_dim: ClassVar[int] = 2

    # -- what subclasses provide ------------------------------------------------------------------
    def constraint_set(self) -> DistanceConstraints:
        raise NotImplementedError

    def body_masses(self) -> tuple[float, ...]:
        raise NotImplementedError

    def potential(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def potential_gradient(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------------
    @property
    def dof(self) -> int:
        return len(self.body_masses()) * self.spatial_dim

    def _mass_vector(self, like: Tensor) -> Tensor:
        """``diag(M)`` ``(N d,)``."""
        m = torch.tensor(self.body_masses(), dtype=like.dtype, device=like.device)
        return m.repeat_interleave(self.spatial_dim)

    def inverse_mass(self, u: Tensor) -> Tensor:
        """``M^-1 u`` for ``u`` ``(..., N d)``."""
        return u / self._mass_vector(u)

    def positions_and_momenta(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(x, p)`` of states in this system's coordinates."""
        q, second = split_state(x)
        return (q, second) if self.coordinates == "canonical" else (q, second * self._mass_vector(second))

    def positions_and_velocities(self, x: Tensor) -> Tensor:
        """States as ``(x, v)`` (the paper's Cartesian coordinates), shape of ``x``."""
        q, second = split_state(x)
        return x if self.coordinates == "lagrangian" else torch.cat([q, self.inverse_mass(second)], dim=-1)

    def constraint_violation(self, x: Tensor) -> Tensor:
        """``max(|phi|, |G v|)`` per state, ``(...,)``."""
        q, v = split_state(self.positions_and_velocities(x))
        return self.constraint_set().violation(q, v)

    def check_on_manifold(self, x: Tensor, tol: float = 1e-8) -> None:
        """Refuse states whose constraint violation exceeds ``tol``, naming its size."""
        self.check_state(x)
        q, v = split_state(self.positions_and_velocities(x))
        check_on_manifold(self.constraint_set(), q, v, tol, type(self).__name__)

    def energy(self, x: Tensor) -> Tensor:
        q, p = self.positions_and_momenta(x)
        return 0.5 * (p * self.inverse_mass(p)).sum(-1) + self.potential(q)

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        q, p = self.positions_and_momenta(x)
        dx, dp = projected_field(self.constraint_set(), q, p, self.inverse_mass, self.potential_gradient(q),
                                 owner=type(self).__name__)
        return torch.cat([dx, dp if self.coordinates == "canonical" else self.inverse_mass(dp)], dim=-1)

    def state_names(self) -> list[str]:
        axes = "xyzw"[: self.spatial_dim]
        names = [f"{a}{k}" for k in range(1, len(self.body_masses()) + 1) for a in axes]
        second = "p" if self.coordinates == "canonical" else "v"
        return names + [f"{second}{n}" for n in names]


@dataclass
class _CartesianChainParameters(_ChainPendulumParameters):
    """The chain pendulum of :mod:`hnnlab.systems.chain_pendulum` with its bodies in the plane: body ``k`` at
    ``x_k = x_{k-1} + l_k (sin theta_k, -cos theta_k)`` (``x_0`` the pivot at the origin), ``V = g sum m_k y_k``.
    Parameters, random draw (:meth:`with_random_parameters`) and initial states are the angle chain's: the same
    generator gives the same chain and the same physical states."""

    spatial_dim: ClassVar[int] = 2

    @property
    def dof(self) -> int:
        return 2 * self.n

    def body_masses(self) -> tuple[float, ...]:
        return tuple(self.masses)

    def constraint_set(self) -> DistanceConstraints:
        lengths = tuple(self.lengths)
        pairs = tuple((k - 1, k, lengths[k]) for k in range(1, self.n))
        return DistanceConstraints(self.n, 2, pairs=pairs, fixed=((0, (0.0, 0.0), lengths[0]),))

    def potential(self, x: Tensor) -> Tensor:
        m = torch.tensor(self.masses, dtype=x.dtype, device=x.device)
        return self.g * (m * x[..., 1::2]).sum(-1)

    def potential_gradient(self, x: Tensor) -> Tensor:
        m = torch.tensor(self.masses, dtype=x.dtype, device=x.device)
        grad = torch.zeros_like(x)
        grad[..., 1::2] = self.g * m
        return grad

    def from_angles(self, state: Tensor) -> Tensor:
        """Angle states ``(theta, omega)`` ``(..., 2 n)`` to this system's Cartesian states ``(..., 4 n)``."""
        theta, omega = split_state(state)
        l = torch.tensor(self.lengths, dtype=state.dtype, device=state.device)
        s, c = torch.sin(theta), torch.cos(theta)
        pos = torch.stack([l * s, -l * c], dim=-1).cumsum(-2)  # (..., n, 2)
        vel = torch.stack([l * c * omega, l * s * omega], dim=-1).cumsum(-2)
        v = vel.flatten(-2)
        second = v if self.coordinates == "lagrangian" else v * self._mass_vector(v)
        return torch.cat([pos.flatten(-2), second], dim=-1)

    def to_angles(self, x: Tensor) -> Tensor:
        """Cartesian states ``(..., 4 n)`` to angle states ``(theta, omega)`` ``(..., 2 n)``; angles in
        ``(-pi, pi]`` unwrapped along the time axis ``-2`` when ``x`` has one (``(batch, time, 4 n)``)."""
        q, v = split_state(self.positions_and_velocities(x))
        pos = q.reshape(*q.shape[:-1], self.n, 2)
        vel = v.reshape(*v.shape[:-1], self.n, 2)
        rel = pos - torch.cat([torch.zeros_like(pos[..., :1, :]), pos[..., :-1, :]], dim=-2)
        rel_v = vel - torch.cat([torch.zeros_like(vel[..., :1, :]), vel[..., :-1, :]], dim=-2)
        theta = torch.atan2(rel[..., 0], -rel[..., 1])
        l2 = (rel**2).sum(-1)
        omega = (rel[..., 0] * rel_v[..., 1] - rel[..., 1] * rel_v[..., 0]) / l2  # (r x r') / |r|^2
        if theta.ndim >= 3:
            jumps = torch.diff(theta, dim=-2)
            fix = torch.round(jumps / (2 * math.pi)) * 2 * math.pi
            theta = theta - torch.cat([torch.zeros_like(theta[..., :1, :]), fix.cumsum(-2)], dim=-2)
        return torch.cat([theta, omega], dim=-1)

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        from hnnlab.systems.base import check_sample_args, normal

        check_sample_args(n, generator)  # the angle chain's draw (ChainPendulum._sample_lagrangian), in order
        theta = self.angle_scale * normal((n, self.n), generator)
        omega = self.velocity_scale * normal((n, self.n), generator)
        return self.from_angles(torch.cat([theta, omega], dim=-1)).to(dtype=dtype, device=device)

    def angle_system(self) -> ChainPendulum:
        """The same chain in angle coordinates (Lagrangian form)."""
        return ChainPendulum(**self.params())


@register_system("chain_pendulum_cartesian")
@dataclass
class CartesianChainPendulum(_CartesianChainParameters, AbstractConstrainedSystem):
    """Chain of ``n`` point-mass pendulum links in Cartesian coordinates, canonical state ``(x, p)``, ``(..., 4 n)``.

    Bodies ``k = 1..n`` at ``x_k`` in the plane (the pivot at the origin), ``p_k = m_k x_k'``; constraints
    ``|x_1| = l_1``, ``|x_k - x_{k-1}| = l_k``; ``H = sum |p_k|^2 / (2 m_k) + g sum m_k y_k``, projected onto the
    constraint manifold (:mod:`hnnlab.systems.constrained`). The same chain as :class:`ChainPendulum` with the
    same parameters (:meth:`from_angles`, :meth:`to_angles` convert).
    """

    name: ClassVar[str] = "chain_pendulum_cartesian"
    coordinates: ClassVar[str] = "canonical"


@register_system("chain_pendulum_cartesian_lagrangian")
@dataclass
class CartesianChainPendulumLagrangian(_CartesianChainParameters, AbstractConstrainedSystem):
    """:class:`CartesianChainPendulum` with the state ``(x, v)`` (positions and velocities, the paper's
    coordinates), ``v = M^-1 p``."""

    name: ClassVar[str] = "chain_pendulum_cartesian_lagrangian"
    coordinates: ClassVar[str] = "lagrangian"


@register_system("coupled_pendulums_cartesian")
@dataclass
class CoupledPendulumsCartesian(AbstractConstrainedSystem):
    """Finzi et al.'s coupled pendulums: ``n`` pendulums hanging from pivots ``(spacing k, 0)``, bobs ``x_k`` tied
    to their pivots by rods of length ``l`` and to their neighbours by springs of stiffness ``k_spring`` and rest
    length ``spacing``; canonical state ``(x, p)``, ``(..., 4 n)``.

    ``H = sum |p_k|^2 / (2 m) + g m sum y_k + k_spring / 2 sum (|x_{k+1} - x_k| - spacing)^2``.
    """

    name: ClassVar[str] = "coupled_pendulums_cartesian"
    coordinates: ClassVar[str] = "canonical"
    n: int = 3
    m: float = 1.0
    l: float = 1.0
    spacing: float = 1.0
    k_spring: float = 5.0
    g: float = 1.0
    angle_scale: float = 0.5

    def __post_init__(self) -> None:
        from hnnlab.systems._params import require_count
        from hnnlab.systems.base import require_positive

        self.n = require_count(self, "n", self.n)
        require_positive(self, m=self.m, l=self.l, spacing=self.spacing, k_spring=self.k_spring, g=self.g,
                         angle_scale=self.angle_scale)

    def body_masses(self) -> tuple[float, ...]:
        return (float(self.m),) * self.n

    def _pivots(self, like: Tensor) -> Tensor:
        return torch.stack([self.spacing * torch.arange(self.n, dtype=like.dtype, device=like.device),
                            torch.zeros(self.n, dtype=like.dtype, device=like.device)], dim=-1)

    def constraint_set(self) -> DistanceConstraints:
        fixed = tuple((k, (self.spacing * k, 0.0), float(self.l)) for k in range(self.n))
        return DistanceConstraints(self.n, 2, fixed=fixed)

    def _spring(self, x: Tensor) -> Tensor:
        pos = x.reshape(*x.shape[:-1], self.n, 2)
        return (pos[..., 1:, :] - pos[..., :-1, :]).norm(dim=-1) - self.spacing

    def potential(self, x: Tensor) -> Tensor:
        return self.g * self.m * x[..., 1::2].sum(-1) + 0.5 * self.k_spring * (self._spring(x) ** 2).sum(-1)

    def potential_gradient(self, x: Tensor) -> Tensor:
        pos = x.reshape(*x.shape[:-1], self.n, 2)
        diff = pos[..., 1:, :] - pos[..., :-1, :]
        dist = diff.norm(dim=-1, keepdim=True)
        force = self.k_spring * (dist - self.spacing) * diff / dist  # (..., n - 1, 2): d/dx_{k+1}
        grad = torch.zeros_like(pos)
        grad[..., 1:, :] += force
        grad[..., :-1, :] -= force
        grad[..., :, 1] += self.g * self.m
        return grad.flatten(-2)

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        from hnnlab.systems.base import check_sample_args, normal

        check_sample_args(n, generator)
        theta = self.angle_scale * normal((n, self.n), generator)
        omega = self.angle_scale * normal((n, self.n), generator)
        rel = torch.stack([self.l * torch.sin(theta), -self.l * torch.cos(theta)], dim=-1)
        vel = torch.stack([self.l * torch.cos(theta) * omega, self.l * torch.sin(theta) * omega], dim=-1)
        pos = rel + self._pivots(rel)
        return torch.cat([pos.flatten(-2), self.m * vel.flatten(-2)], dim=-1).to(dtype=dtype, device=device)


__all__: Sequence[str] = (
    "AbstractConstrainedSystem",
    "CartesianChainPendulum",
    "CartesianChainPendulumLagrangian",
    "ConstraintViolationError",
    "CoupledPendulumsCartesian",
    "DistanceConstraints",
    "SingularConstraintError",
    "check_on_manifold",
    "projected_field",
)
