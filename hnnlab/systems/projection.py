"""Projection of states back onto the constraint manifold ``{phi(x) = 0, G(x) v = 0}``, and long rollouts that
project every ``K`` steps.

The projected field (:func:`hnnlab.systems.constrained.projected_field`) keeps ``phi`` and ``G v`` constant in
continuous time; an integrator keeps them only to its own error (rk4: ``O(dt^4)`` per unit time, growing with the
horizon; implicit midpoint and Gauss-Legendre: to their solve tolerance). :func:`project_to_manifold` removes that
drift: positions by Newton steps on ``phi`` with the mass-weighted minimum-norm correction

    ``x <- x - M^-1 G^T (G M^-1 G^T)^-1 phi(x)``  (``G = G(x)`` at the current iterate),

then velocities onto the tangent space, ``v <- v - M^-1 G^T (G M^-1 G^T)^-1 G v`` (``p <- p - G^T (...)`` for
momenta), the same closed-form ``M``-orthogonal projection the field uses. Systems and CHNN/CLNN share it (they
share :class:`~hnnlab.systems.constrained.DistanceConstraints`).

Projection is not a symplectic map: a rollout that projects between steps is no longer a symplectic integrator,
whatever integrator it uses. :func:`solve_projected` runs the one loop (:func:`hnnlab.rollout.solve`) in segments
of ``project_every`` steps and projects between them; it writes no time loop of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from hnnlab.dynamics import split_state
from hnnlab.errors import InvalidArgumentError
from hnnlab.integrators.base import AbstractIntegrator
from hnnlab.rollout import Solution, check_count, solve, steps_to_save
from hnnlab.systems.constrained import DistanceConstraints, _check_nonsingular, _values_readable


def _multipliers(constraints: DistanceConstraints, x: Tensor, inverse_mass: Callable[[Tensor], Tensor],
                 rhs: Tensor, owner: str) -> tuple[Tensor, Tensor]:
    """``(M^-1 G^T y, G^T y)`` with ``y = (G M^-1 G^T)^-1 rhs`` at positions ``x``, ``rhs`` ``(..., C)``."""
    G = constraints.jacobian(x)  # (..., C, n)
    MiGt = inverse_mass(G)  # rows of M^-1 G^T
    A = G @ MiGt.transpose(-1, -2)
    L, info = torch.linalg.cholesky_ex(A)
    if _values_readable(A):
        _check_nonsingular(A, L, info, owner)
    y = torch.cholesky_solve(rhs.unsqueeze(-1), L)  # (..., C, 1)
    return (MiGt.transpose(-1, -2) @ y).squeeze(-1), (G.transpose(-1, -2) @ y).squeeze(-1)


def project_to_manifold(
    constraints: DistanceConstraints,
    x: Tensor,
    second: Tensor,
    inverse_mass: Callable[[Tensor], Tensor],
    *,
    canonical: bool,
    iterations: int = 3,
    owner: str = "project_to_manifold",
) -> tuple[Tensor, Tensor]:
    """Positions ``x`` and momenta (``canonical``) or velocities ``second`` ``(..., N d)`` projected onto
    ``{phi = 0, G M^-1 p = 0}`` (module docstring): ``iterations`` Newton steps on ``phi`` (quadratic convergence:
    a drift of ``1e-6`` is at round-off after two), then the tangent projection of the momenta or velocities.

    A state already on the manifold is returned unchanged to round-off. Not a symplectic map.

    Raises:
        InvalidArgumentError: the lengths are not known (no ``phi`` to project on), or ``iterations < 1``.
        SingularConstraintError: ``G M^-1 G^T`` is singular at some state.
    """
    iterations = check_count("iterations", iterations, minimum=1)
    if not constraints.lengths_known:
        raise InvalidArgumentError(
            f"{owner}: projecting onto the constraint manifold needs the constraint lengths, which were not given "
            "(only which bodies are linked)"
        )
    for _ in range(iterations):
        dx, _ = _multipliers(constraints, x, inverse_mass, constraints.phi(x), owner)
        x = x - dx
    v = inverse_mass(second) if canonical else second
    dv, dp = _multipliers(constraints, x, inverse_mass, constraints.velocity_constraint(x, v), owner)
    return x, (second - dp if canonical else second - dv)


def _constraints_of(f: Any) -> DistanceConstraints | None:
    """A constrained system's or model's constraints (``None``: a model without constraints)."""
    if hasattr(f, "constraint_set"):
        return f.constraint_set()
    if hasattr(f, "constraints") and hasattr(f, "inverse_mass"):
        return f.constraints
    raise InvalidArgumentError(
        f"projection needs a constrained system or model (AbstractConstrainedSystem, CHNN, CLNN), "
        f"got {type(f).__name__}"
    )


def project_states(f: Any, states: Tensor, *, iterations: int = 3) -> Tensor:
    """States ``(..., 2 N d)`` of a constrained system or model ``f`` (its coordinates: ``(x, p)`` or ``(x, v)``)
    projected onto its constraint manifold (:func:`project_to_manifold`, with ``f``'s mass). A model without
    constraints returns the states as they are."""
    constraints = _constraints_of(f)
    if constraints is None:
        return states
    x, second = split_state(states)
    x, second = project_to_manifold(constraints, x, second, f.inverse_mass, canonical=f.coordinates == "canonical",
                                    iterations=iterations, owner=type(f).__name__)
    return torch.cat([x, second], dim=-1)


def solve_projected(
    f: Any,
    integrator: AbstractIntegrator | str,
    x0: Tensor,
    dt: float,
    n_steps: int,
    save_every: int = 1,
    *,
    project_every: int,
    iterations: int = 3,
    **solve_kwargs: Any,
) -> Solution:
    """:func:`hnnlab.rollout.solve` of a constrained system or model ``f`` that projects the state onto the
    constraint manifold (:func:`project_states`) every ``project_every`` steps.

    The solve runs in segments of ``project_every`` steps (the last may be shorter), each one a call of
    :func:`~hnnlab.rollout.solve` from the projected end of the one before; the saved state at a segment's end is
    the projected one. ``project_every`` must be a multiple of ``save_every`` (the saved steps are those of one
    solve). A trajectory that goes bad is frozen as in :func:`~hnnlab.rollout.solve` (NaN from its first bad step;
    ``first_bad_step`` counts from the start); the others go on. Stats add up over the segments.

    Projection is not symplectic: with it, no integrator's map is symplectic (energy is not kept to a bounded
    oscillation by construction, and the audit's symplecticity check measures the step alone, without it).

    Raises:
        InvalidArgumentError: ``project_every`` is not an integer ``>= 1`` or not a multiple of ``save_every``;
            the arguments of :func:`~hnnlab.rollout.solve`.
    """
    project_every = check_count("project_every", project_every, minimum=1)
    save_every = check_count("save_every", save_every, minimum=1)
    n_steps = check_count("n_steps", n_steps, minimum=0)
    if project_every % save_every:
        raise InvalidArgumentError(
            f"project_every = {project_every} must be a multiple of save_every = {save_every} (the states saved "
            "in each segment are those of one solve)"
        )
    _constraints_of(f)
    n_steps = steps_to_save(n_steps, save_every)
    unbatched = isinstance(x0, Tensor) and x0.ndim == 1
    x = x0[None] if unbatched else x0
    t0 = float(solve_kwargs.pop("t0", 0.0))
    batch = x.shape[0]
    live = torch.arange(batch)
    ys = [x[:, None, :]]
    status = torch.zeros(batch, dtype=torch.int8)
    first_bad = torch.full((batch,), -1, dtype=torch.long)
    stats: dict[str, Any] = {}
    done = 0
    while done < n_steps or not stats:
        k = min(project_every, n_steps - done)
        part = solve(f, integrator, x[live], dt, k, save_every, t0=t0 + done * dt, **solve_kwargs)
        seg = torch.full((batch, part.ys.shape[1] - 1, x.shape[-1]), float("nan"), dtype=x.dtype, device=x.device)
        seg[live.to(x.device)] = part.ys[:, 1:]
        bad = ~part.ok
        status[live[bad]] = part.status[bad]
        first_bad[live[bad]] = part.first_bad_step[bad] + done
        _add_stats(stats, part.stats, live, batch)
        live = live[part.ok]
        end = part.ys[part.ok, -1]
        x = torch.full_like(x, float("nan"))
        if live.numel():
            x[live.to(x.device)] = project_states(f, end, iterations=iterations)
        if seg.shape[1]:
            seg[:, -1] = x
        ys.append(seg)
        done += k
        if not live.numel():
            break
    ys_all = torch.cat(ys, dim=1)
    if ys_all.shape[1] < n_steps // save_every + 1:  # every row went bad: the rest is NaN
        rest = n_steps // save_every + 1 - ys_all.shape[1]
        ys_all = torch.cat([ys_all, ys_all.new_full((batch, rest, x.shape[-1]), float("nan"))], dim=1)
    ts = t0 + torch.arange(n_steps // save_every + 1, dtype=torch.float64) * (dt * save_every)
    stats["steps"] = n_steps
    solution = Solution(ts=ts, ys=ys_all, status=status, first_bad_step=first_bad, stats=stats)
    if unbatched:
        solution.ys = solution.ys[0]
    return solution


def _add_stats(total: dict[str, Any], part: dict[str, Any], live: Tensor, batch: int) -> None:
    """Add one segment's stats to the totals: numbers add, per-trajectory tensors add into their rows."""
    for key, value in part.items():
        if isinstance(value, Tensor):
            row = total.setdefault(key, torch.zeros(batch, dtype=value.dtype))
            row[live] += value.cpu()
        elif value is None or total.get(key, 0) is None:
            total[key] = None
        else:
            total[key] = total.get(key, 0) + value


__all__ = ["project_states", "project_to_manifold", "solve_projected"]
