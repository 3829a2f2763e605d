"""Adaptive Dormand-Prince solvers from torchdiffeq (dopri5, dopri8): high-accuracy ground truth."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from hnnlab.errors import ConvergenceError, InvalidArgumentError
from hnnlab.integrators.base import AbstractIntegrator, VectorField
from hnnlab.integrators.registry import register_integrator

TOL_FLOOR_EPS = 64  # rtol and atol are floored at this many machine epsilons of the state dtype


def max_abs_norm(scaled_error: Tensor) -> Tensor:
    """The step-size controller's error norm: the largest scaled error of any component of any sample."""
    return scaled_error.abs().amax()


class AbstractTorchdiffeqAdaptive(AbstractIntegrator):
    """One step of size ``dt`` = an adaptive ``torchdiffeq.odeint`` solve from ``t`` to ``t + dt``.

    Inside the step, the embedded Runge-Kutta pair ``method`` takes as many internal steps as its
    error control needs for ``|error_i| <= atol + rtol * |x_i|``. The error norm is the max-abs norm
    (``options=dict(norm=max_abs_norm)``), not torchdiffeq's default RMS norm: the RMS averages the
    error over every element of the state, the batch axis included, so in a batch of many easy
    trajectories the error of one hard trajectory is diluted by ``1 / sqrt(batch)`` and can exceed the
    tolerance. With the max norm the tolerance holds for every sample and every component. (The
    internal step sequence is still shared by the batch, so a hard sample makes the others more
    accurate, never less.)

    Args:
        rtol, atol: tolerances, ``> 0``. A tolerance below what the state's dtype can resolve would
            make the step size underflow, so the tolerances used are floored at
            ``TOL_FLOOR_EPS * eps(dtype)`` (``7.6e-6`` in float32, ``1.4e-14`` in float64).
        allow_nonseparable: accepted for a uniform interface (these methods need no separable H).

    Not symplectic: use them for reference trajectories, not for long conservative rollouts.
    Differentiable (backpropagation through the internal steps). Time is handled in float64.
    """

    method: ClassVar[str]
    symplectic: ClassVar[bool] = False
    explicit: ClassVar[bool] = True
    symmetric: ClassVar[bool] = False
    requires_separable: ClassVar[bool] = False
    adaptive: ClassVar[bool] = True

    def __init__(self, *, rtol: float = 1e-10, atol: float = 1e-10, allow_nonseparable: bool = False) -> None:
        super().__init__(allow_nonseparable=allow_nonseparable)
        for key, value in (("rtol", rtol), ("atol", atol)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise InvalidArgumentError(f"{self.name}: {key} must be a finite number > 0, got {value!r}")
        self.rtol = float(rtol)
        self.atol = float(atol)

    def effective_tolerances(self, dtype: torch.dtype) -> tuple[float, float]:
        """``(rtol, atol)`` used for states of ``dtype``, each floored at ``TOL_FLOOR_EPS * eps(dtype)``."""
        floor = TOL_FLOOR_EPS * torch.finfo(dtype).eps
        return max(self.rtol, floor), max(self.atol, floor)

    def options(self) -> dict[str, Any]:
        return {"rtol": self.rtol, "atol": self.atol}

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "error_norm": "max_abs",
            "effective_tolerances": {
                str(d).removeprefix("torch."): dict(zip(("rtol", "atol"), self.effective_tolerances(d), strict=True))
                for d in (torch.float32, torch.float64)
            },
        }

    def _step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        from torchdiffeq import odeint

        t0 = float(t.detach().reshape(-1)[0]) if isinstance(t, Tensor) else float(t)
        span = torch.tensor([t0, t0 + dt], dtype=torch.float64, device=x.device)  # (2,)
        rtol, atol = self.effective_tolerances(x.dtype)
        # step_t: the last internal step ends exactly at t + dt, so the result is that step's own
        # solution rather than a value of the (lower-order) dense-output interpolant.
        options = {"norm": max_abs_norm, "step_t": span[1:]}
        try:
            path = odeint(f, x, span, rtol=rtol, atol=atol, method=self.method, options=options)
        except AssertionError as exc:  # torchdiffeq reports step-size underflow and step caps this way
            raise ConvergenceError(
                f"{self.name}: the adaptive solve from t = {t0:.6g} to {t0 + dt:.6g} failed ({exc}); the vector "
                f"field may be non-finite or too stiff for an explicit method at rtol={rtol:g}, atol={atol:g}"
            ) from None
        return path[-1]  # (..., 2 * dof)


@register_integrator("dopri5")
class Dopri5(AbstractTorchdiffeqAdaptive):
    """Dormand-Prince 5(4), adaptive, order 5 (torchdiffeq ``method="dopri5"``)."""

    name: ClassVar[str] = "dopri5"
    method: ClassVar[str] = "dopri5"
    order: ClassVar[int] = 5


@register_integrator("dopri8")
class Dopri8(AbstractTorchdiffeqAdaptive):
    """Dormand-Prince 8(5,3), adaptive, order 8 (torchdiffeq ``method="dopri8"``)."""

    name: ClassVar[str] = "dopri8"
    method: ClassVar[str] = "dopri8"
    order: ClassVar[int] = 8
