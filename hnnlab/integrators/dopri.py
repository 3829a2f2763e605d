"""Adaptive Dormand-Prince methods (dopri5, dopri8) with per-trajectory step sizes: high-accuracy ground truth."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from hnnlab.errors import ConvergenceError, InvalidArgumentError
from hnnlab.fields import restrict_rows
from hnnlab.integrators.base import AbstractExplicitRK, SolverState, VectorField
from hnnlab.integrators.registry import register_integrator

TOL_FLOOR_EPS = 64  # rtol and atol are floored at this many machine epsilons of the state dtype


class AbstractAdaptiveRK(AbstractExplicitRK):
    """An embedded explicit Runge-Kutta pair with a step-size controller that keeps one step size per trajectory.

    A step of size ``dt`` (one step of the loop, e.g. from one saved time to the next) is made of as many internal
    steps as each trajectory's error control needs for ``|error_i| <= atol + rtol * max(|x_i|, |x_i'|)`` in every
    component (the max-abs norm per trajectory); the last internal step of each trajectory ends exactly at
    ``t + dt``, so the result is that step's own solution, not an interpolant. Each trajectory has its own step
    size (as diffrax's controllers under ``vmap``): one stiff or blowing-up trajectory does not shrink the steps of
    the others (a field that differs between trajectories, driven by per-trajectory inputs, is restricted to the
    rows each internal step evaluates: :func:`hnnlab.fields.restrict_rows`). The controller is the standard one
    (Hairer, Norsett and Wanner, *Solving ODEs I*, II.4): the next step is ``h * clip(0.9 * err^(-1/order), 0.2,
    10)`` (never larger after a rejection), the first from Hairer's initial-step estimate. The Butcher tableaus
    are torchdiffeq's (a dependency), so the coefficients are those of its ``dopri5`` and ``dopri8``.

    The solver state between loop steps is ``(h, k)``: each trajectory's next step size ``(batch,)`` and its field
    at the current state ``(batch, 2 * dof)`` (the pairs are first-same-as-last), and the count of internal steps.

    A trajectory fails (``advance`` returns it as NaN and flagged; ``step`` raises
    :class:`~hnnlab.errors.ConvergenceError`) when its field is non-finite at an accepted state, its step size
    underflows, or it would exceed ``max_steps`` internal steps in one solve.

    Args:
        rtol, atol: tolerances, ``> 0``. A tolerance below what the state's dtype can resolve would
            make the step size underflow, so the tolerances used are floored at
            ``TOL_FLOOR_EPS * eps(dtype)`` (``7.6e-6`` in float32, ``1.4e-14`` in float64).
        max_steps: cap on a trajectory's internal steps over a whole solve (``None``: no cap): a stiff learned
            field can otherwise take tiny steps for hours.
        allow_nonseparable: accepted for a uniform interface (these methods need no separable H).

    Not symplectic: use them for reference trajectories, not for long conservative rollouts.
    Differentiable (backpropagation through the internal steps). Time is handled in float64.
    """

    tableau_name: ClassVar[str]
    adaptive: ClassVar[bool] = True
    safety: ClassVar[float] = 0.9
    ifactor: ClassVar[float] = 10.0
    dfactor: ClassVar[float] = 0.2

    def __init__(
        self, *, rtol: float = 1e-10, atol: float = 1e-10, max_steps: int | None = None,
        allow_nonseparable: bool = False,
    ) -> None:
        super().__init__(allow_nonseparable=allow_nonseparable)
        for key, value in (("rtol", rtol), ("atol", atol)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise InvalidArgumentError(f"{self.name}: {key} must be a finite number > 0, got {value!r}")
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
            raise InvalidArgumentError(f"{self.name}: max_steps must be an integer >= 1 or None, got {max_steps!r}")
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.max_steps = max_steps
        self._tableau = _tableau(self.tableau_name)

    def effective_tolerances(self, dtype: torch.dtype) -> tuple[float, float]:
        """``(rtol, atol)`` used for states of ``dtype``, each floored at ``TOL_FLOOR_EPS * eps(dtype)``."""
        floor = TOL_FLOOR_EPS * torch.finfo(dtype).eps
        return max(self.rtol, floor), max(self.atol, floor)

    def options(self) -> dict[str, Any]:
        return {"rtol": self.rtol, "atol": self.atol} | ({"max_steps": self.max_steps} if self.max_steps else {})

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "error_norm": "max_abs",
            "step_size_control": "per_trajectory",
            "effective_tolerances": {
                str(d).removeprefix("torch."): dict(zip(("rtol", "atol"), self.effective_tolerances(d), strict=True))
                for d in (torch.float32, torch.float64)
            },
        }

    def _step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        t0 = _time(t)
        flat = x.reshape(-1, x.shape[-1])
        new, _, failed = self.advance(f, t0, flat, dt, None)
        if bool(failed.any()):
            rtol, atol = self.effective_tolerances(x.dtype)
            raise ConvergenceError(
                f"{self.name}: the adaptive solve from t = {t0:.6g} to {t0 + dt:.6g} failed for "
                f"{int(failed.sum())} of {failed.numel()} states; the vector field may be non-finite or too stiff "
                f"for an explicit method at rtol={rtol:g}, atol={atol:g}"
            )
        return new.reshape(x.shape)

    def advance(
        self, f: VectorField, t: float, x: Tensor, dt: float, state: SolverState
    ) -> tuple[Tensor, SolverState, Tensor]:
        rtol, atol = self.effective_tolerances(x.dtype)
        n = x.shape[0]
        device = x.device
        t_end = t + dt
        if state is None:
            k = f(t, x)
            h = _initial_step(f, t, x, k, self.order, rtol, atol).clamp(max=dt)
            taken = torch.zeros(n, dtype=torch.long, device=device)
        else:
            h, k, taken = state
        time = torch.full((n,), t, dtype=torch.float64, device=device)  # (batch,)
        failed = ~(torch.isfinite(k).all(dim=-1) & torch.isfinite(x).all(dim=-1))  # frozen or non-finite rows
        y = x
        moving = torch.nonzero(~failed).squeeze(-1)  # rows still short of t_end
        underflow = 4 * torch.finfo(torch.float64).eps * max(abs(t_end), 1.0)
        while moving.numel():
            if self.max_steps is not None:  # a trajectory that needs a step beyond its budget fails
                over = taken[moving] >= self.max_steps
                failed = failed.index_put((moving,), failed[moving] | over)
                moving = moving[~over]
                if not moving.numel():
                    break
            ym, km, tm, hm = y[moving], k[moving], time[moving], h[moving]
            remaining = t_end - tm
            last = hm >= remaining * (1 - 1e-12)
            step = torch.where(last, remaining, hm)  # (m,)
            y_new, k_new, error = self._trial(restrict_rows(f, moving), tm, ym, km, step)
            scale = atol + rtol * torch.maximum(ym.abs(), y_new.abs())
            ratio = (error.abs() / scale).amax(dim=-1)  # (m,): the max-abs error norm of each trajectory
            finite = torch.isfinite(ratio) & torch.isfinite(k_new).all(dim=-1)
            accept = finite & (ratio <= 1.0)
            factor = (self.safety * ratio.clamp_min(1e-300).pow(-1.0 / self.order)).clamp(self.dfactor, self.ifactor)
            factor = torch.where(accept, factor, factor.clamp(max=1.0))
            factor = torch.where(finite, factor, torch.full_like(factor, self.dfactor))
            h_next = step * factor
            accepted_rows = moving[accept]
            y = _put(y, accepted_rows, y_new[accept])
            k = _put(k, accepted_rows, k_new[accept])
            time = time.index_put((moving,), torch.where(accept & last, t_end, torch.where(accept, tm + step, tm)))
            # after a step cut short by t_end, keep the longer controller step for the next solve
            h = h.index_put((moving,), torch.where(accept & last, torch.maximum(hm, h_next), h_next))
            taken = taken.index_put((moving,), taken[moving] + 1)
            bad = (h_next <= underflow) & ~(accept & last)
            failed = failed.index_put((moving,), failed[moving] | bad)
            done = (accept & last) | bad
            moving = moving[~done]
        if bool(failed.any()):
            y = torch.where(failed[:, None], math.nan, y)
        return y, (h, k, taken), failed

    def restart(self, f: VectorField, t: float, x: Tensor, state: SolverState) -> SolverState:
        """Keep each trajectory's step size and step count, and evaluate the field at ``(t, x)`` anew (the last
        stage of the previous step is its value before a jump)."""
        if state is None:
            return None
        h, _, taken = state
        return h, f(t, x), taken

    def row_stats(self, state: SolverState) -> dict[str, Tensor]:
        return {} if state is None else {"internal_steps": state[2]}

    def _trial(self, f: VectorField, t: Tensor, y: Tensor, k1: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One internal step of sizes ``h`` ``(m,)`` from ``y`` ``(m, width)`` with ``k1 = f(t, y)``: the new states,
        the field there (the last stage) and the embedded error estimate."""
        alpha, beta, c_error = self._tableau
        hh = h.to(y.dtype)[:, None]  # (m, 1)
        stages = [k1]
        for i, (a_i, row) in enumerate(zip(alpha, beta, strict=True)):
            increment = sum(b * s for b, s in zip(row, stages, strict=False) if b != 0.0)
            y_i = y + hh * increment
            stages.append(f(t + a_i * h, y_i))
            if i == len(alpha) - 1:
                y_new = y_i  # first same as last: the last stage is evaluated at the solution
        error = hh * sum(c * s for c, s in zip(c_error, stages, strict=True) if c != 0.0)
        return y_new, stages[-1], error


def _put(target: Tensor, rows: Tensor, values: Tensor) -> Tensor:
    return target.index_put((rows,), values) if rows.numel() else target


def _time(t: Tensor | float) -> float:
    return float(t.detach().reshape(-1)[0]) if isinstance(t, Tensor) else float(t)


def _initial_step(f: VectorField, t: float, x: Tensor, k: Tensor, order: int, rtol: float, atol: float) -> Tensor:
    """Hairer's starting step size per trajectory (*Solving ODEs I*, II.4), ``(batch,)`` in float64."""
    scale = atol + rtol * x.abs()
    d0 = (x / scale).abs().amax(dim=-1).double()
    d1 = (k / scale).abs().amax(dim=-1).double()
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp_min(1e-300))
    x1 = x + h0.to(x.dtype)[:, None] * k
    k1 = f(t + h0, x1)
    d2 = ((k1 - k) / scale).abs().amax(dim=-1).double() / h0
    dmax = torch.maximum(d1, d2)
    h1 = torch.where(
        dmax <= 1e-15, torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3),
        (0.01 / dmax.clamp_min(1e-300)).pow(1.0 / (order + 1)),
    )
    h = torch.minimum(100 * h0, h1)
    return torch.where(torch.isfinite(h), h, torch.full_like(h, 1e-6))


def _tableau(name: str) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...], tuple[float, ...]]:
    """``(nodes, rows, error weights)`` of torchdiffeq's tableau ``name`` as Python floats; the methods here are
    first-same-as-last (the last row is the solution's weights, at node 1)."""
    from torchdiffeq._impl import dopri5, dopri8

    table = {"dopri5": dopri5._DORMAND_PRINCE_SHAMPINE_TABLEAU, "dopri8": dopri8._DOPRI8_TABLEAU}[name]
    alpha = tuple(float(a) for a in table.alpha)
    beta = tuple(tuple(float(b) for b in row) for row in table.beta)
    c_error = tuple(float(c) for c in table.c_error)
    if alpha[-1] != 1.0 or beta[-1] != tuple(float(c) for c in table.c_sol[:-1]) or float(table.c_sol[-1]) != 0.0:
        raise RuntimeError(f"torchdiffeq's {name} tableau is not first-same-as-last")  # pragma: no cover
    return alpha, beta, c_error


@register_integrator("dopri5")
class Dopri5(AbstractAdaptiveRK):
    """Dormand-Prince 5(4), adaptive, order 5 (torchdiffeq ``method="dopri5"``)."""

    name: ClassVar[str] = "dopri5"
    tableau_name: ClassVar[str] = "dopri5"
    order: ClassVar[int] = 5


@register_integrator("dopri8")
class Dopri8(AbstractAdaptiveRK):
    """Dormand-Prince 8(5,3), adaptive, order 8 (torchdiffeq ``method="dopri8"``)."""

    name: ClassVar[str] = "dopri8"
    tableau_name: ClassVar[str] = "dopri8"
    order: ClassVar[int] = 8
