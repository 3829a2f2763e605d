"""The fixed-point solver shared by the implicit Runge-Kutta methods (implicit midpoint, Gauss-Legendre).

An implicit Runge-Kutta step needs stage derivatives ``K`` that solve ``K = G(K)``. Both methods here
iterate ``K <- G(K)`` (Picard iteration) from an explicit Euler predictor ``K_0 = f(t, x)`` until the
change the last iteration made to the state, ``dt * |K_new - K|``, is at most ``tol * (1 + |x|)`` in
every component of every sample. The iteration contracts when ``dt`` times the Lipschitz constant of
``f`` is small (``dt L / 2 < 1`` for implicit midpoint); when it does not converge within ``max_iter``
iterations, :class:`~hnnlab.errors.ConvergenceError` says so: never a silent, unconverged step.

The iterations are ordinary tensor operations, so gradients flow through them (differentiation by
unrolling); the convergence test itself is computed without a graph.

Float32: a ``tol`` below what the state's dtype can resolve would never be met, so the tolerance
actually used is ``max(tol, TOL_FLOOR_EPS * eps(dtype))`` (``16 * 1.2e-7 = 1.9e-6`` in float32,
``16 * 2.2e-16 = 3.6e-15`` in float64); :meth:`AbstractImplicitIntegrator.describe` reports both.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from hnnlab.errors import ConvergenceError, InvalidArgumentError
from hnnlab.integrators.base import AbstractIntegrator, SolverState, VectorField

TOL_FLOOR_EPS = 16  # the tolerance floor, in units of the state dtype's machine epsilon


class AbstractImplicitIntegrator(AbstractIntegrator):
    """An implicit method whose stage equations are solved by fixed-point iteration.

    Args:
        tol: relative tolerance of the iteration, ``> 0``: it stops when the last update changed
            the new state by at most ``tol * (1 + |x|)`` componentwise (floored per dtype, see above).
            The default, ``1e-14``, iterates to (near) round-off in float64: a solve stopped earlier
            leaves an ``O(tol)`` error in every step that is neither symplectic nor symmetric, and over
            long rollouts it accumulates into drift of energy and angular momentum (Hairer, Lubich and
            Wanner, *Geometric Numerical Integration*, VIII.6). Loosen it for speed in training.
        max_iter: iteration cap, ``>= 1``; reaching it without convergence raises ``ConvergenceError``.
        allow_nonseparable: accepted for a uniform interface (implicit methods need no separable H).
    """

    explicit: ClassVar[bool] = False
    requires_separable: ClassVar[bool] = False

    def __init__(self, *, tol: float = 1e-14, max_iter: int = 100, allow_nonseparable: bool = False) -> None:
        super().__init__(allow_nonseparable=allow_nonseparable)
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not math.isfinite(tol) or tol <= 0:
            raise InvalidArgumentError(f"{self.name}: tol must be a finite number > 0, got {tol!r}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise InvalidArgumentError(f"{self.name}: max_iter must be an integer >= 1, got {max_iter!r}")
        self.tol = float(tol)
        self.max_iter = max_iter

    def effective_tol(self, dtype: torch.dtype) -> float:
        """The tolerance used for states of ``dtype``: ``max(tol, TOL_FLOOR_EPS * eps(dtype))``."""
        return max(self.tol, TOL_FLOOR_EPS * torch.finfo(dtype).eps)

    def options(self) -> dict[str, Any]:
        return {"tol": self.tol, "max_iter": self.max_iter}

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "effective_tol": {
                str(d).removeprefix("torch."): self.effective_tol(d) for d in (torch.float32, torch.float64)
            },
        }

    @abc.abstractmethod
    def _stages(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> tuple[Callable, Tensor]:
        """The stage map ``G`` and the predictor ``K_0`` of a step from ``(t, x)``."""

    @abc.abstractmethod
    def _update(self, x: Tensor, k: Tensor, dt: float) -> Tensor:
        """The new state from the solved stage derivatives ``k``."""

    def _step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        G, k0 = self._stages(f, t, x, dt)
        k, failure = fixed_point(G, k0, x=x, dt=dt, tol=self.effective_tol(x.dtype), max_iter=self.max_iter)
        if failure is not None:
            raise ConvergenceError(failure.message(self.name, t, dt))
        return self._update(x, k, dt)

    def advance(
        self, f: VectorField, t: float, x: Tensor, dt: float, state: SolverState
    ) -> tuple[Tensor, SolverState, Tensor]:
        """One step; the trajectories whose iteration diverged or did not converge are returned as NaN and
        flagged in ``failed`` ``(batch,)``, and the others are stepped as by :meth:`step`."""
        G, k0 = self._stages(f, t, x, dt)
        k, failure = fixed_point(G, k0, x=x, dt=dt, tol=self.effective_tol(x.dtype), max_iter=self.max_iter)
        x_new = self._update(x, k, dt)
        if failure is None:
            return x_new, None, torch.zeros(x.shape[:-1], dtype=torch.bool, device=x.device)
        return torch.where(failure.rows[..., None], math.nan, x_new), None, failure.rows


@dataclass
class FixedPointFailure:
    """Which trajectories of a batch a fixed-point iteration failed on, and why.

    ``rows`` ``(batch...,)`` is ``True`` where the iteration diverged (a non-finite update) or had not
    converged after ``max_iter`` iterations.
    """

    rows: Tensor
    diverged_at: int | None  # the iteration of the first non-finite update, None if none diverged
    residual: float  # the largest last update among the unconverged, finite rows
    tol: float
    max_iter: int

    def message(self, name: str, t: Tensor | float, dt: float) -> str:
        if self.diverged_at is not None:
            return (
                f"{name}: the fixed-point iteration diverged (non-finite update) at iteration {self.diverged_at} of "
                f"max_iter={self.max_iter} in the step from t = {_time(t):.6g} (dt = {dt:g}); the iteration "
                "contracts only when dt times the Lipschitz constant of the vector field is small: reduce dt"
            )
        return (
            f"{name}: the fixed-point iteration did not converge within max_iter={self.max_iter} iterations in the "
            f"step from t = {_time(t):.6g} (dt = {dt:g}): the last update was {self.residual:.3g} relative to "
            f"1 + |x|, above tol = {self.tol:.3g}. Reduce dt (the iteration contracts only when dt times the "
            "Lipschitz constant of the vector field is small), or raise max_iter or tol"
        )


def fixed_point(
    G: Callable[[Tensor], Tensor],
    k0: Tensor,
    *,
    x: Tensor,
    dt: float,
    tol: float,
    max_iter: int,
) -> tuple[Tensor, FixedPointFailure | None]:
    """Picard iteration ``K <- G(K)`` for stage derivatives ``K`` (``x``'s shape, or stages stacked in front).

    A trajectory (a row of ``x``, all its components and stages) has converged when
    ``dt * |G(K) - K| <= tol * (1 + |x|)`` in every entry. The iteration goes on until every trajectory
    whose updates are finite has converged, or ``max_iter`` iterations; a trajectory whose update turns
    non-finite is given up at once (diverged). Returns ``G`` of the last iterate and ``None``, or, when some
    trajectory diverged or did not converge, a :class:`FixedPointFailure` naming them.
    """
    with torch.no_grad():
        scale = dt / (1.0 + x.detach().abs())  # converts a change of K into a relative change of the state
    k = k0
    row_shape = x.shape[:-1]
    diverged = torch.zeros(row_shape, dtype=torch.bool, device=x.device)
    diverged_at: int | None = None
    residual = math.inf
    for iteration in range(1, max_iter + 1):
        k_new = G(k)
        with torch.no_grad():
            change = (k_new - k).abs().mul_(scale)  # (stages..., *row_shape, width)
            per_row = change.amax(dim=-1) if change.numel() else change.sum(dim=-1)
            while per_row.ndim > len(row_shape):
                per_row = per_row.amax(dim=0)
            bad = ~torch.isfinite(per_row)
            if bool(bad.any()):
                diverged_at = iteration if diverged_at is None else diverged_at
                diverged |= bad
            live = per_row.masked_fill(diverged, 0.0)
            residual = float(live.amax()) if live.numel() else 0.0
        k = k_new
        if residual <= tol:
            break
    else:
        with torch.no_grad():
            unconverged = live > tol
        return k, FixedPointFailure(unconverged | diverged, diverged_at, residual, tol, max_iter)
    if diverged_at is None:
        return k, None
    return k, FixedPointFailure(diverged, diverged_at, residual, tol, max_iter)


def _time(t: Tensor | float) -> float:
    return float(t.detach().reshape(-1)[0]) if isinstance(t, Tensor) else float(t)
