"""Per-trajectory inputs ``u(t)`` sampled on a time grid, and the vector fields they drive.

A driven system ``dx/dt = f(t, x, u(t))`` (a port-Hamiltonian system or network with an input map ``G(x)``) is
integrated from inputs stored as samples ``u_bk = u_b(t_k)`` of every trajectory ``b`` on a grid ``t_0 < ... <
t_N``, with a rule between samples (:class:`InputSignal`):

- ``"zoh"`` (zero-order hold): ``u(t) = u_k`` on ``[t_k, t_{k+1})``: piecewise constant, it jumps at the samples;
- ``"linear"``: ``u(t) = u_k + (t - t_k) (u_{k+1} - u_k) / (t_{k+1} - t_k)`` on ``[t_k, t_{k+1}]``: continuous, with
  kinks at the samples.

Before ``t_0`` and after ``t_N`` both hold the end value.

Why this design (it is correct for every integrator). Two things go wrong when the inputs are simply a function of
time called from inside the field:

1. *Which trajectory is a row?* The rollout loop steps only its live rows once some trajectories are frozen, replays
   a few rows to find a failure, and the adaptive methods (dopri5, dopri8) evaluate, at each internal step, only the
   rows that have not reached the end of the step yet, each at its own time. A field given ``(t, x)`` cannot tell
   which trajectory's inputs belong to which row.
2. *Which side of a jump?* A zero-order hold jumps at every sample time ``t_k``. An RK4 step ending at ``t_k``
   evaluates its last stage there, and must see the left value ``u_{k-1}`` (the input of the step) for the method to
   keep its order; the next step's first stage at the same time must see ``u_k``; the first-same-as-last methods
   (dopri, the splitting methods) would even carry the left value into the next step.

Both are solved by binding instead of guessing. :class:`DrivenField` is a
:class:`~hnnlab.fields.AbstractRowField`: the loop (:func:`hnnlab.rollout.solve`) binds it to each step
``[t, t + dt]`` and to the whole-batch rows it steps (:func:`hnnlab.fields.bind_step`), and an integrator that
evaluates a subset of rows restricts it (:func:`hnnlab.fields.restrict_rows`), so row ``i`` always uses its own
trajectory's samples. A bound field evaluates the one *piece* of the input that covers its step (the interval
``[t_k, t_{k+1}]`` holding the step's midpoint), at every stage time, including the step's ends: within a step the
input is a polynomial in ``t`` (a constant or a line), so every method keeps its order, explicit, implicit or
adaptive. A step may not straddle a sample time (refused: the step size must divide the grid's spacing, as
``save_every`` steps per saved interval do). Where a zero-order hold jumps, the loop restarts the integrator's solver
state (``restart``: the kept last-stage value or force is recomputed), so no value of one piece is used on the next.
The cost is an object per step and, for a zero-order hold, one field evaluation per sample interval.

Unbound (called directly, e.g. for derivatives at saved states), a :class:`DrivenField` uses the right-continuous
value at each time: ``u_k`` at ``t_k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError
from hnnlab.fields import AbstractRowField, AbstractVectorField, describe_field

INTERPOLATIONS: tuple[str, ...] = ("zoh", "linear")
_JUMP_TOL = 1e-6  # a time within this fraction of the step size of a sample time is that sample time


@dataclass(frozen=True)
class InputSignal:
    """Inputs of a batch of trajectories sampled on one time grid.

    Attributes:
        t: sample times ``(n_times,)``, strictly increasing, float64.
        values: samples ``(batch, n_times, n_inputs)``.
        interpolation: ``"zoh"`` or ``"linear"`` (see the module docstring).
    """

    t: Tensor
    values: Tensor
    interpolation: str = "zoh"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise InvalidArgumentError(
                f"interpolation must be one of {', '.join(map(repr, INTERPOLATIONS))}, got {self.interpolation!r}"
            )
        t, values = self.t, self.values
        if not isinstance(t, Tensor) or t.ndim != 1 or t.numel() < 1:
            raise InvalidArgumentError(f"input times must be a 1-D tensor with at least one time, got {_shape(t)}")
        if not isinstance(values, Tensor) or values.ndim != 3 or values.shape[1] != t.numel():
            raise InvalidArgumentError(
                f"input values must have shape (batch, n_times, n_inputs) with n_times = {t.numel()} (the times "
                f"given), got {_shape(values)}"
            )
        if not values.is_floating_point() or not bool(torch.isfinite(values).all()):
            raise InvalidArgumentError("input values must be finite floating-point numbers")
        t = t.to(torch.float64)
        if not bool(torch.isfinite(t).all()) or (t.numel() > 1 and not bool((torch.diff(t) > 0).all())):
            raise InvalidArgumentError("input times must be finite and strictly increasing")
        object.__setattr__(self, "t", t.cpu())

    @property
    def n_traj(self) -> int:
        return self.values.shape[0]

    @property
    def n_inputs(self) -> int:
        return self.values.shape[-1]

    def piece_of(self, t: float, dt: float) -> int:
        """The piece of the input that covers the step ``[t, t + dt]``: ``k`` for ``[t_k, t_{k+1}]``, ``-1`` before
        ``t_0`` and ``n_times - 1`` after the last sample (constant end values). Refuses a step that straddles a
        sample time."""
        grid = self.t
        tol = _JUMP_TOL * dt
        inside = (grid > t + tol) & (grid < t + dt - tol)
        if bool(inside.any()):
            sample = float(grid[inside][0])
            raise InvalidArgumentError(
                f"the input sample at t = {sample:.6g} lies inside the integrator step [{t:.6g}, {t + dt:.6g}]: "
                "inputs are piecewise between their samples, so a step must not straddle one; use a step size that "
                "divides the spacing of the input's times (save_every steps per saved interval)"
            )
        return int(torch.searchsorted(grid, torch.tensor(t + 0.5 * dt, dtype=torch.float64), right=True)) - 1

    def jumps_at(self, t: float, dt: float) -> bool:
        """Whether the input may jump at ``t``: a zero-order hold at one of its interior sample times."""
        if self.interpolation != "zoh" or self.t.numel() < 2:
            return False
        return bool(((self.t[1:] - t).abs() <= _JUMP_TOL * dt).any())

    def resample(self, t: Tensor) -> InputSignal:
        """The same inputs sampled at the times ``t`` ``(n_new,)`` (right-continuous values, the same interpolation):
        ``values[:, j] = u(t_j)``. Exact when ``t`` refines the sample grid (every sample time inside ``[t_0, t_N]``
        is one of ``t``), as a rollout saved every integrator step on a dataset's input grid is; between coarser
        times a zero-order hold's jumps are lost."""
        tt = torch.as_tensor(t, dtype=torch.float64).cpu().reshape(-1)  # (n_new,)
        grid, values = self.t, self.values  # (n_times,), (batch, n_times, n_inputs)
        n_times, device = grid.numel(), values.device
        k = torch.searchsorted(grid, tt, right=True) - 1  # (n_new,): the piece holding each time
        below, above = k < 0, k >= n_times - 1
        k = k.clamp(0, max(n_times - 2, 0))
        left = values[:, k.to(device)]  # (batch, n_new, n_inputs)
        if n_times == 1:
            out = left
        elif self.interpolation == "zoh":
            out = torch.where(above.to(device)[None, :, None], values[:, -1:], left)
        else:
            frac = (tt - grid[k]) / (grid[k + 1] - grid[k])  # (n_new,)
            frac = torch.where(below, 0.0, torch.where(above, 1.0, frac))
            right = values[:, (k + 1).to(device)]
            out = left + frac.to(dtype=values.dtype, device=device)[None, :, None] * (right - left)
        return InputSignal(tt, out, self.interpolation)

    def evaluate(self, t: Tensor | float, rows: Tensor | None = None, piece: int | None = None) -> Tensor:
        """``u(t)`` of the trajectories ``rows`` (``None``: all), ``(n_rows, n_inputs)``.

        ``t`` is one time or one per row ``(n_rows,)``. With ``piece`` (from :meth:`piece_of`) every time is
        evaluated on that piece (one-sided at its ends); without it, at the piece that holds it (right-continuous).
        """
        values = self.values if rows is None else self.values[rows.to(self.values.device)]  # (n, n_times, n_inputs)
        n, n_times = values.shape[0], values.shape[1]
        tt = torch.as_tensor(t, dtype=torch.float64).to(self.t.device).reshape(-1)  # (1,) or (n,)
        if piece is None:
            k = torch.searchsorted(self.t, tt, right=True) - 1  # (1,) or (n,)
        else:
            k = torch.full_like(tt, piece, dtype=torch.long)
        below, above = k < 0, k >= n_times - 1
        k = k.clamp(0, max(n_times - 2, 0)).expand(n)  # (n,)
        idx = torch.arange(n, device=values.device)
        left = values[idx, k.to(values.device)]  # (n, n_inputs)
        if n_times == 1:
            return left
        if self.interpolation == "zoh":
            u = torch.where(above.expand(n).to(values.device)[:, None], values[:, -1], left)
            return u
        t0, t1 = self.t[k], self.t[k + 1]
        frac = ((tt.expand(n) - t0) / (t1 - t0))  # (n,) float64
        frac = torch.where(below.expand(n), 0.0, torch.where(above.expand(n), 1.0, frac))
        right = values[idx, (k + 1).to(values.device)]
        return left + frac.to(dtype=values.dtype, device=values.device)[:, None] * (right - left)


class DrivenField(AbstractRowField):
    """The vector field ``x -> f(t_b + t, x, u_b(t))`` of a batch of trajectories ``b`` driven by their own inputs.

    ``field`` declares ``n_inputs > 0`` and provides ``field_with_inputs(t, x, u)`` (a port-Hamiltonian system or
    network, :class:`~hnnlab.systems.AbstractPortHamiltonianSystem`, :class:`~hnnlab.models.PortHamiltonianNN`);
    ``inputs`` holds one row of samples per trajectory, in the order of the states it will be given. Use it wherever
    a field goes: ``solve(DrivenField(system, inputs), "rk4", x0, dt, n_steps, save_every)``.

    ``t_start`` ``(n_traj,)`` (optional) gives every trajectory its own time origin: the loop's time ``t`` is then
    local (``inputs`` are sampled on local times, from 0) and ``field`` sees the absolute time ``t_b + t``. This is
    how windows cut from different times of a trajectory are integrated in one batch from ``t = 0`` (the rollout
    loss). With ``t_start`` the inputs may be ``None``, for a time-dependent field that takes none
    (``field(t_b + t, x)``, a learned force ``F(t)``).

    Declares the field's ``dof`` and coordinates; not separable (what a driven damped field rarely is), not
    conservative.
    """

    is_separable: ClassVar[bool] = False
    conservative: ClassVar[bool] = False
    has_energy: ClassVar[bool] = False

    def __init__(self, field: Any, inputs: InputSignal | None, *, t_start: Tensor | None = None,
                 rows: Tensor | None = None, piece: int | None = None) -> None:
        n_inputs = field.n_inputs if isinstance(field, AbstractVectorField) else 0
        if t_start is not None and (not isinstance(t_start, Tensor) or t_start.ndim != 1
                                    or not bool(torch.isfinite(t_start).all())):
            raise InvalidArgumentError(
                f"t_start must be a finite 1-D tensor, one time origin per trajectory, got {_shape(t_start)}"
            )
        if inputs is None and t_start is None:
            raise InvalidArgumentError("a DrivenField needs inputs (an InputSignal), or t_start for a field without")
        if inputs is None and n_inputs:
            raise InvalidArgumentError(
                f"{describe_field(field)} takes n_inputs = {n_inputs} inputs, but a DrivenField without inputs was "
                "asked for (inputs=None)"
            )
        if inputs is not None and n_inputs < 1:
            raise InvalidArgumentError(
                f"{describe_field(field)} takes no inputs (n_inputs = 0): a DrivenField needs a field with "
                "n_inputs > 0 and field_with_inputs(t, x, u)"
            )
        if inputs is not None and not isinstance(inputs, InputSignal):
            raise InvalidArgumentError(f"inputs must be an InputSignal, got {type(inputs).__name__}")
        if inputs is not None and inputs.n_inputs != n_inputs:
            raise InvalidArgumentError(
                f"{describe_field(field)} takes n_inputs = {n_inputs} inputs, but the input signal has "
                f"{inputs.n_inputs} (values of shape {tuple(inputs.values.shape)})"
            )
        if inputs is not None and t_start is not None and t_start.numel() != inputs.n_traj:
            raise InvalidArgumentError(
                f"t_start must have one time per trajectory of the inputs ({inputs.n_traj}), got {t_start.numel()}"
            )
        self.field = field
        self.inputs = inputs
        self.t_start = t_start
        self.rows = rows
        self.piece = piece
        self.dof = field.dof
        self.coordinates = field.coordinates

    @property
    def n_traj(self) -> int:
        return self.inputs.n_traj if self.inputs is not None else self.t_start.numel()

    def __call__(self, t: Tensor | float, x: Tensor) -> Tensor:
        """``dx/dt`` at states ``(n_rows, 2 * dof)`` (row ``i`` is trajectory ``rows[i]``) and time ``t`` (one, or
        one per row)."""
        n = self.n_traj if self.rows is None else self.rows.numel()
        if x.ndim != 2 or x.shape[0] != n:
            raise InvalidArgumentError(
                f"a DrivenField over {n} trajectories needs states of shape ({n}, 2 * dof), one row per trajectory "
                f"in the order of its inputs; got {tuple(x.shape)}"
            )
        time = t
        if self.t_start is not None:  # absolute time per row, (n,)
            origin = self.t_start if self.rows is None else self.t_start[self.rows.to(self.t_start.device)]
            time = origin + torch.as_tensor(t, dtype=origin.dtype, device=origin.device)
        if self.inputs is None:
            return self.field(time, x)
        u = self.inputs.evaluate(t, self.rows, self.piece).to(dtype=x.dtype, device=x.device)  # (n, n_inputs)
        return self.field.field_with_inputs(time, x, u)

    def energy(self, x: Tensor) -> Tensor | None:
        return None

    def bind(self, rows: Tensor | None, t: float, dt: float) -> DrivenField:
        piece = None if self.inputs is None else self.inputs.piece_of(t, dt)
        return DrivenField(self.field, self.inputs, t_start=self.t_start, rows=rows, piece=piece)

    def restrict(self, rows: Tensor) -> DrivenField:
        current = self.rows if self.rows is not None else torch.arange(self.n_traj)
        return DrivenField(self.field, self.inputs, t_start=self.t_start, rows=current[rows.to(current.device)],
                           piece=self.piece)

    def jumps_at(self, t: float, dt: float) -> bool:
        return self.inputs is not None and self.inputs.jumps_at(t, dt)


def _shape(value: object) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__

