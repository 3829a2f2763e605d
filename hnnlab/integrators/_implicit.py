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

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from hnnlab.errors import ConvergenceError, InvalidArgumentError
from hnnlab.integrators.base import AbstractIntegrator

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

    def _solve(
        self, G: Callable[[Tensor], Tensor], k0: Tensor, x: Tensor, t: Tensor | float, dt: float
    ) -> Tensor:
        """Solve ``K = G(K)`` from ``k0`` for a step of size ``dt`` from ``(t, x)``; returns ``G`` of the
        last iterate, whose update was within tolerance."""
        return fixed_point(
            G, k0, x=x, dt=dt, tol=self.effective_tol(x.dtype), max_iter=self.max_iter, name=self.name, t=t
        )


def fixed_point(
    G: Callable[[Tensor], Tensor],
    k0: Tensor,
    *,
    x: Tensor,
    dt: float,
    tol: float,
    max_iter: int,
    name: str,
    t: Tensor | float,
) -> Tensor:
    """Picard iteration ``K <- G(K)`` for stage derivatives ``K`` (any shape broadcastable with ``x``).

    Converged when ``dt * |G(K) - K| <= tol * (1 + |x|)`` everywhere.

    Raises:
        ConvergenceError: after ``max_iter`` iterations without convergence, or as soon as an update
            is NaN or infinite (the iteration diverged).
    """
    with torch.no_grad():
        scale = dt / (1.0 + x.detach().abs())  # converts a change of K into a relative change of the state
    k = k0
    residual = math.inf
    for iteration in range(1, max_iter + 1):
        k_new = G(k)
        with torch.no_grad():
            residual = float((k_new - k).abs().mul_(scale).amax()) if k.numel() else 0.0
        k = k_new
        if residual <= tol:
            return k
        if not math.isfinite(residual):
            raise ConvergenceError(
                f"{name}: the fixed-point iteration diverged (non-finite update) at iteration {iteration} of "
                f"max_iter={max_iter} in the step from t = {_time(t):.6g} (dt = {dt:g}); the iteration contracts "
                "only when dt times the Lipschitz constant of the vector field is small: reduce dt"
            )
    raise ConvergenceError(
        f"{name}: the fixed-point iteration did not converge within max_iter={max_iter} iterations in the step "
        f"from t = {_time(t):.6g} (dt = {dt:g}): the last update was {residual:.3g} relative to 1 + |x|, above "
        f"tol = {tol:.3g}. Reduce dt (the iteration contracts only when dt times the Lipschitz constant of the "
        "vector field is small), or raise max_iter or tol"
    )


def _time(t: Tensor | float) -> float:
    return float(t.detach().reshape(-1)[0]) if isinstance(t, Tensor) else float(t)
