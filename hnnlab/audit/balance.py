"""The energy balance of an open system along saved trajectories: what a driven, damped system must satisfy instead
of conservation.

For a port-Hamiltonian system (:class:`hnnlab.systems.AbstractPortHamiltonianSystem`)

    H(x(t)) - H(x(0)) = integral_0^t P(s, x(s)) ds,    P = -grad H^T R grad H + grad H^T (F + G u),

along every solution. Given trajectories saved on a grid (a rollout of the true system, or of a learned model, judged
by the true system's ``H`` and power), :func:`energy_balance` integrates ``P`` along them by the trapezoidal rule and
compares with the change of ``H``: a trajectory that loses exactly the energy it should is ``balanced``, one that
loses or gains energy it should not is ``unbalanced``. The quadrature's own error is estimated by Richardson
extrapolation (the same rule on every other saved point) and allowed for, so that a coarse save grid is not
mistaken for an unbalanced trajectory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError

DEFAULT_BALANCE_TOLERANCE = 1e-3  # relative residual above which a trajectory is unbalanced


@dataclass
class BalanceAudit:
    """The energy-balance section of an audit.

    Attributes:
        max_relative_residual: ``max_b max_k |dH_bk - W_bk| / scale_b``, with ``W`` the integrated power and
            ``scale_b = max_k max(|dH_bk|, int_0^t_k |P|)`` (floored at ``eps * |H_b0|``).
        residual_per_trajectory: the same per trajectory, ``(n_traj,)`` as a list.
        quadrature_error: the largest estimated quadrature error, relative to the same scale.
        dissipated: mean over trajectories of the energy the dissipation removed by the last time (``<= 0``).
        injected: mean over trajectories of the energy the force and the inputs injected by the last time.
        tolerance: the relative residual allowed (beyond the quadrature error).
        verdict: ``"balanced"`` or ``"unbalanced"``; ``unbalanced`` lists the trajectories that are.
    """

    max_relative_residual: float
    residual_per_trajectory: list[float]
    quadrature_error: float
    dissipated: float
    injected: float
    tolerance: float
    verdict: str
    unbalanced: list[int]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _cumulative_trapezoid(y: Tensor, t: Tensor) -> Tensor:
    """``int_{t_0}^{t_k} y`` for every ``k`` along the last axis, ``(..., n_times)`` (0 at ``k = 0``)."""
    dt = torch.diff(t)
    areas = 0.5 * (y[..., 1:] + y[..., :-1]) * dt
    return torch.cat([torch.zeros_like(y[..., :1]), torch.cumsum(areas, dim=-1)], dim=-1)


def energy_balance(
    system: object, states: Tensor, t: Tensor, *, tolerance: float = DEFAULT_BALANCE_TOLERANCE,
    inputs: Tensor | None = None, interpolation: str = "linear",
) -> BalanceAudit:
    """Check ``H(t) - H(0) = int_0^t P`` along ``states`` ``(n_traj, n_times, 2 * dof)`` saved at ``t`` ``(n_times,)``.

    ``system`` provides ``energy(x)``, ``dissipated_power(x)`` and ``injected_power(t, x, u)``
    (:class:`~hnnlab.systems.AbstractPortHamiltonianSystem` does). With ``inputs`` ``(n_traj, n_times, n_inputs)``
    (the per-trajectory inputs the trajectories were driven by, sampled at ``t``) the injected power uses them
    instead of the system's own ``u(t)``; with a zero-order hold (``interpolation="zoh"``) each interval's
    trapezoid takes the interval's own input at both of its ends. Computed in float64.
    """
    from hnnlab.systems.port_hamiltonian import AbstractPortHamiltonianSystem

    if not isinstance(system, AbstractPortHamiltonianSystem):
        raise InvalidArgumentError(
            f"energy_balance needs a port-Hamiltonian system (dissipation, force and inputs in closed form), got "
            f"{type(system).__name__}; conservative systems are audited for conservation instead"
        )
    if not isinstance(states, Tensor) or states.ndim != 3 or states.shape[-1] != 2 * system.dof:
        shape = tuple(states.shape) if isinstance(states, Tensor) else type(states).__name__
        raise InvalidArgumentError(f"states must have shape (n_traj, n_times, {2 * system.dof}), got {shape}")
    if not isinstance(t, Tensor) or t.shape != (states.shape[1],) or states.shape[1] < 3:
        raise InvalidArgumentError(
            f"t must have shape (n_times,) = ({states.shape[1]},) with n_times >= 3, got "
            f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}"
        )
    if not (isinstance(tolerance, int | float) and tolerance > 0):
        raise InvalidArgumentError(f"tolerance must be a number > 0, got {tolerance!r}")
    x = states.detach().to(torch.float64)
    tt = t.detach().to(torch.float64)
    times = tt.expand(x.shape[0], -1)  # t per state, (n, T)
    u = None
    if inputs is not None:
        if not isinstance(inputs, Tensor) or inputs.shape != (*x.shape[:2], system.n_inputs):
            raise InvalidArgumentError(
                f"inputs must have shape (n_traj, n_times, n_inputs) = {(*x.shape[:2], system.n_inputs)}, got "
                f"{tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__}"
            )
        u = inputs.detach().to(torch.float64)
    with torch.no_grad():
        energy = system.energy(x)  # (n, T)
        dissipated = system.dissipated_power(x)  # (n, T)
        injected = system.injected_power(times, x, u)  # (n, T)
        power = dissipated + injected
        if u is not None and interpolation == "zoh":  # the interval's own (left) input at its right end
            right = dissipated[:, 1:] + system.injected_power(times[:, 1:], x[:, 1:], u[:, :-1])  # (n, T - 1)
            areas = 0.5 * (power[:, :-1] + right) * torch.diff(tt)
            work = torch.cat([torch.zeros_like(power[:, :1]), torch.cumsum(areas, dim=-1)], dim=-1)
        else:
            work = _cumulative_trapezoid(power, tt)
    change = energy - energy[:, :1]
    # Richardson: the rule on every other point; the error of the fine rule is about a third of the difference.
    coarse = _cumulative_trapezoid(power[:, ::2], tt[::2])
    quadrature = (work[:, ::2] - coarse).abs().amax(dim=1) / 3
    floor = torch.finfo(torch.float64).eps * energy[:, 0].abs().clamp_min(1.0)
    scale = torch.maximum(change.abs().amax(dim=1), _cumulative_trapezoid(power.abs(), tt).amax(dim=1))
    scale = torch.maximum(scale, floor)
    residual = (change - work).abs().amax(dim=1) / scale  # (n,)
    allowed = tolerance + 3 * quadrature / scale
    bad = ~(residual <= allowed)  # NaN residuals are unbalanced
    return BalanceAudit(
        max_relative_residual=float(residual.max()),
        residual_per_trajectory=residual.tolist(),
        quadrature_error=float((quadrature / scale).max()),
        dissipated=float(_cumulative_trapezoid(dissipated, tt)[:, -1].mean()),
        injected=float(_cumulative_trapezoid(injected, tt)[:, -1].mean()),
        tolerance=float(tolerance),
        verdict="unbalanced" if bool(bad.any()) else "balanced",
        unbalanced=bad.nonzero().flatten().tolist(),
    )
