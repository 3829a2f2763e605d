"""Physical parameters fitted by gradient through differentiable rollouts (multiple shooting).

The unknowns are the unconstrained parameters ``u`` (:class:`~hnnlab.identify.parameters.ParameterSpec`) and the
initial state ``X_ij`` of every shooting window ``j`` of every trajectory ``i``; the objective is the
multiple-shooting least squares of :mod:`hnnlab.identify.shooting`, ``F = |r_obs|^2 + |r_gap|^2``. It is minimised by
Levenberg-Marquardt: the Jacobian of the residuals comes from automatic differentiation through the rollout
(:func:`hnnlab.rollout.solve` with any integrator; forward sensitivities ``d x(t) / d X`` and ``d x(t) / d u`` as
Jacobian-vector products by double backward, one per state component and one per parameter, for all windows at
once since windows are independent given ``u``), and each step solves the damped normal equations

    (J^T J + mu I) delta = -J^T r

by the Schur complement on ``u``: the window states of one trajectory couple only to each other (continuity) and to
``u``, so the normal matrix is block-diagonal in trajectories plus a dense ``u`` row and column.

Standard deviations (Gauss-Newton / Laplace approximation at the optimum): ``Cov(u) = s^2 [(J^T J)^-1]_uu`` (the
inverse of the Schur complement), with the residual variance ``s^2 = |r_obs|^2 / (N - n_p - n_traj * 2 dof)``
(``N`` observed numbers; the free unknowns of continuous trajectories are ``n_p`` parameters and one initial state
per trajectory), carried to the physical value by the delta method, ``std(theta) = |d theta / d u| std(u)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError
from hnnlab.identify.parameters import ParameterSpec, row_parameter_field, with_parameters
from hnnlab.identify.prior import initial_state_prior
from hnnlab.identify.shooting import (
    Windows,
    check_observations,
    rollout_windows,
    shooting_residuals,
    window_observations,
)
from hnnlab.integrators import AbstractIntegrator, get_integrator
from hnnlab.systems.base import AbstractSystem


@dataclass
class GradientResult:
    """What :func:`fit_parameters` returns.

    Attributes:
        estimates, std: per parameter, the fitted physical value and its Gauss-Newton standard deviation.
        residual: RMS of the observation residuals ``H x - y`` at the optimum (comparable with the noise std).
        max_gap: largest continuity gap between consecutive windows, ``max |x_ij(t_{s_{j+1}}) - X_{i,j+1}|``.
        x0: fitted window initial states ``(n_traj, n_windows, 2 * dof)``; ``windows`` their layout.
        history: ``{name: (n_iterations + 1,)}`` the physical value after each accepted step (the start first).
        cost: ``F`` after each accepted step.
        iterations: accepted Levenberg-Marquardt steps; converged: whether the relative decrease fell under ``tol``.
        seconds: wall time.
    """

    estimates: dict[str, float]
    std: dict[str, float]
    residual: float
    max_gap: float
    x0: Tensor
    windows: Windows
    history: dict[str, Tensor]
    cost: Tensor
    iterations: int
    converged: bool
    seconds: float


class _Problem:
    """The grey-box least-squares problem: residuals and their Jacobian blocks at ``(x0, u)``."""

    def __init__(self, system: AbstractSystem, integrator: AbstractIntegrator, specs: Sequence[ParameterSpec],
                 y: Tensor, dt_obs: float, windows: Windows, observe_index: list[int], substeps: int,
                 continuity_weight: float) -> None:
        self.system, self.integrator, self.specs = system, integrator, list(specs)
        self.y, self.dt_obs, self.windows, self.index = y, dt_obs, windows, observe_index
        self.substeps, self.weight = substeps, continuity_weight

    def _rollout(self, x0: Tensor, u_rows: Tensor) -> Tensor:
        """Window rollouts of ``x0 (n_traj, n_windows, 2 dof)`` with parameters ``u_rows``: ``(1, P)`` shared, or
        ``(rows, P)`` one copy per window."""
        theta = torch.stack([s.to_physical(u_rows[:, i]) for i, s in enumerate(self.specs)], dim=1)  # (rows, P)
        if theta.shape[0] == 1:
            field = with_parameters(self.system, {s.name: theta[0, i] for i, s in enumerate(self.specs)})
        else:
            field = row_parameter_field(self.system, [s.name for s in self.specs], theta)
        return rollout_windows(field, self.integrator, x0, self.dt_obs, self.windows, self.substeps)

    def residuals(self, x0: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """The residuals at ``(x0, u)``; a window whose rollout turns non-finite gives NaN residuals (one ``u``
        for the whole batch here, so the loop can drop the bad rows)."""
        with torch.no_grad():
            ys = self._rollout(x0, u[None])
        return shooting_residuals(ys, x0, self.y, self.windows, self.index, self.weight)

    def jacobian(self, x0: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Residuals and the sensitivities of the window rollouts: ``r_obs``, ``r_gap``,
        ``S_x (n_traj, n_windows, length + 1, 2 dof, 2 dof)`` and ``S_u (..., 2 dof, n_p)``."""
        n_traj, n_win, d = x0.shape
        n_p = len(self.specs)
        k = d + n_p  # directions: each state component, then each parameter
        # k copies of every window, copy c carrying direction c (the rows are independent, as in the Lyapunov
        # tangent map): one double backward gives J v for every direction at once.
        x0_leaf = x0.detach()[None].expand(k, n_traj, n_win, d).reshape(k * n_traj, n_win, d).requires_grad_(True)
        u_rows = u.detach().expand(k * n_traj * n_win, n_p).clone().requires_grad_(True)  # one u per row
        with torch.enable_grad():
            ys_all = self._rollout(x0_leaf, u_rows)  # (k * n_traj, n_win, length + 1, d)
            if not bool(torch.isfinite(ys_all).all()):
                raise InvalidArgumentError("the rollout of a shooting window became non-finite at the current "
                                           "estimate; start nearer (--init) or use shorter windows")
            w = torch.zeros_like(ys_all, requires_grad=True)
            gx, gu = torch.autograd.grad(ys_all, (x0_leaf, u_rows), w, create_graph=True)  # J^T w, linear in w
            eye = torch.eye(k, dtype=x0.dtype, device=x0.device)
            vx = eye[:, None, None, :d].expand(k, n_traj, n_win, d).reshape_as(gx)
            vu = eye[:, None, d:].expand(k, n_traj * n_win, n_p).reshape_as(gu)
            (jv,) = torch.autograd.grad((gx * vx).sum() + (gu * vu).sum(), w)  # J v, copy by copy
        s = jv.reshape(k, n_traj, n_win, self.windows.length + 1, d).permute(1, 2, 3, 4, 0)  # (..., d, k)
        ys = ys_all.detach()[:n_traj]
        r_obs, r_gap = shooting_residuals(ys, x0, self.y, self.windows, self.index, self.weight)
        return r_obs, r_gap, s[..., :d], s[..., d:]

    def normal_equations(self, x0: Tensor, u: Tensor) -> tuple[Tensor, ...]:
        """Per-trajectory blocks of ``J^T J`` and ``J^T r`` (float64): ``Hxx (n_traj, D, D)``, ``Hxu (n_traj, D,
        P)``, ``Huu (P, P)``, ``gx (n_traj, D)``, ``gu (P,)``, with ``D = n_windows * 2 dof``; and the cost."""
        r_obs, r_gap, s_x, s_u = self.jacobian(x0, u)
        n_traj, n_win, d = x0.shape
        owned = self.windows.owned.to(x0.device)[None, :, :, None, None].to(s_x.dtype)
        # observation rows: (n_traj, n_win, length + 1, n_observed, ...), zero where the window does not own them
        jx_obs = (s_x[..., self.index, :] * owned).double()
        ju_obs = (s_u[..., self.index, :] * owned).double()
        n_p = s_u.shape[-1]
        rows_per_window = (self.windows.length + 1) * len(self.index)
        big_d = n_win * d
        jx = torch.zeros(n_traj, n_win * rows_per_window + (n_win - 1) * d, big_d, dtype=torch.float64,
                         device=x0.device)
        for j in range(n_win):
            jx[:, j * rows_per_window : (j + 1) * rows_per_window, j * d : (j + 1) * d] = (
                jx_obs[:, j].reshape(n_traj, rows_per_window, d))
        ju = torch.cat([ju_obs.reshape(n_traj, -1, n_p),
                        torch.zeros(n_traj, (n_win - 1) * d, n_p, dtype=torch.float64, device=x0.device)], dim=1)
        root = math.sqrt(self.weight)
        base = n_win * rows_per_window
        eye = torch.eye(d, dtype=torch.float64, device=x0.device)
        for j, offset in enumerate(self.windows.gap_offset):  # r_gap[j] = sqrt(lambda) (x_j(offset) - X_{j+1})
            block = slice(base + j * d, base + (j + 1) * d)
            jx[:, block, j * d : (j + 1) * d] = root * s_x[:, j, offset].double()
            jx[:, block, (j + 1) * d : (j + 2) * d] = -root * eye
            ju[:, block] = root * s_u[:, j, offset].double()
        r = torch.cat([r_obs.reshape(n_traj, -1), r_gap.reshape(n_traj, -1)], dim=1).double()  # (n_traj, R)
        hxx = jx.transpose(1, 2) @ jx
        hxu = jx.transpose(1, 2) @ ju
        huu = (ju.transpose(1, 2) @ ju).sum(0)
        gx = (jx.transpose(1, 2) @ r[..., None])[..., 0]
        gu = (ju.transpose(1, 2) @ r[..., None])[..., 0].sum(0)
        return hxx, hxu, huu, gx, gu, _cost(r_obs, r_gap), r_obs


def _cost(r_obs: Tensor, r_gap: Tensor) -> float:
    return float((r_obs.double() ** 2).sum() + (r_gap.double() ** 2).sum())


def _schur_solve(hxx: Tensor, hxu: Tensor, huu: Tensor, gx: Tensor, gu: Tensor, mu: float) -> tuple[Tensor, Tensor]:
    """The damped Gauss-Newton step ``(dx (n_traj, D), du (P,))`` of ``(J^T J + mu I) delta = -J^T r``."""
    eye_x = torch.eye(hxx.shape[-1], dtype=hxx.dtype, device=hxx.device)
    eye_u = torch.eye(huu.shape[-1], dtype=huu.dtype, device=huu.device)
    a = torch.linalg.cholesky(hxx + mu * eye_x)  # (n_traj, D, D)
    ainv_hxu = torch.cholesky_solve(hxu, a)  # (n_traj, D, P)
    ainv_gx = torch.cholesky_solve(gx[..., None], a)[..., 0]  # (n_traj, D)
    schur = huu + mu * eye_u - (hxu.transpose(1, 2) @ ainv_hxu).sum(0)
    rhs = gu - (hxu.transpose(1, 2) @ ainv_gx[..., None])[..., 0].sum(0)
    du = -torch.linalg.solve(schur, rhs)
    dx = -(ainv_gx + ainv_hxu @ du)
    return dx, du


def _parameter_covariance(hxx: Tensor, hxu: Tensor, huu: Tensor) -> Tensor:
    """``[(J^T J)^-1]_uu``: the inverse of the Schur complement ``Huu - sum_i Hxu_i^T Hxx_i^-1 Hxu_i``."""
    schur = huu - (hxu.transpose(1, 2) @ torch.linalg.solve(hxx, hxu)).sum(0)
    return torch.linalg.inv(schur)


def initial_window_states(system: AbstractSystem, obs_t: Tensor, obs: Tensor, observe_index: Sequence[int],
                          windows: Windows) -> Tensor:
    """Each window's initial state from its own observations, ``(n_traj, n_windows, 2 * dof)``: the observed
    state, or for positions only the momenta of :func:`~hnnlab.identify.prior.initial_state_prior`."""
    n_traj = obs.shape[0]
    y = window_observations(obs, windows)  # (n_traj, n_win, length + 1, m)
    flat = y.reshape(n_traj * windows.n_windows, windows.length + 1, -1)
    x0 = initial_state_prior(system, obs_t[: windows.length + 1], flat, observe_index)
    return x0.reshape(n_traj, windows.n_windows, 2 * system.dof)


def fit_parameters(
    system: AbstractSystem,
    obs_t: Tensor,
    obs: Tensor,
    *,
    observe_index: Sequence[int],
    specs: Sequence[ParameterSpec],
    integrator: str | AbstractIntegrator = "rk4",
    substeps: int = 10,
    window: int = 10,
    continuity_weight: float = 100.0,
    max_iterations: int = 50,
    tol: float = 1e-10,
    dtype: torch.dtype = torch.float64,
    on_step: Callable[[int, int], Any] | None = None,
) -> GradientResult:
    """Fit ``specs`` of ``system`` (and every window's initial state) to noisy partial observations.

    Args:
        system: the analytic system; its ``specs`` parameters are fitted, the others held at their values.
        obs_t: evenly spaced observation times ``(n_obs,)``, ``n_obs >= 3``.
        obs: observations ``(n_traj, n_obs, len(observe_index))``.
        observe_index: state components observed (positions: ``range(dof)``; the full state: ``range(2 dof)``).
        specs: the parameters, started at ``spec.init``.
        integrator, substeps: the rollout takes ``substeps`` steps of the integrator per observation interval.
        window: observation intervals per shooting window (clipped to ``n_obs - 1``).
        continuity_weight: ``lambda`` of the continuity residuals, ``>= 0``.
        max_iterations: Levenberg-Marquardt iterations (accepted or not); tol: stop when the cost decreases by
            less than ``tol`` relatively.
        dtype: the rollouts' dtype (float64 or float32); the normal equations are solved in float64.
        on_step: called as ``on_step(iteration, max_iterations)`` after each iteration (progress bars).
    """
    start = time.perf_counter()
    dof = system.dof
    index = list(observe_index)
    dt_obs = check_observations(obs_t, obs, index, dof)
    if not specs:
        raise InvalidArgumentError("no parameters to fit")
    for name, value, low in (("substeps", substeps, 1), ("max_iterations", max_iterations, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidArgumentError(f"{name} must be an integer >= {low}, got {value!r}")
    if not math.isfinite(continuity_weight) or continuity_weight < 0:
        raise InvalidArgumentError(f"continuity_weight must be a finite number >= 0, got {continuity_weight!r}")
    if dtype not in (torch.float32, torch.float64):
        raise InvalidArgumentError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    n_traj, n_obs, _ = obs.shape
    windows = Windows.make(n_obs, min(window, n_obs - 1) if isinstance(window, int) else window)
    if windows.length < 2 and index != list(range(2 * dof)):
        raise InvalidArgumentError(f"with a partial observation each window's unobserved components are inferred from "
                                   f"at least 3 observations: the window must span >= 2 intervals, got {window}")
    integ = get_integrator(integrator) if isinstance(integrator, str) else integrator
    integ.check_compatible(system)
    obs = obs.to(dtype)
    y = window_observations(obs, windows)
    x0 = initial_window_states(system, obs_t, obs, index, windows).to(dtype)
    u = torch.stack([s.to_unconstrained(torch.tensor(float(s.init), dtype=torch.float64)) for s in specs]).to(dtype)
    problem = _Problem(system, integ, specs, y, dt_obs, windows, index, substeps, continuity_weight)

    hxx, hxu, huu, gx, gu, cost, _ = problem.normal_equations(x0, u)
    mu = 1e-3 * float(torch.cat([hxx.diagonal(dim1=1, dim2=2).flatten(), huu.diagonal()]).mean())
    costs, history = [cost], [_physical(specs, u)]
    converged, accepted = False, 0
    for it in range(max_iterations):
        dx, du = _schur_solve(hxx, hxu, huu, gx, gu, mu)
        x_try = x0 + dx.reshape(x0.shape).to(dtype)
        u_try = u + du.to(dtype)
        new_cost = _cost(*problem.residuals(x_try, u_try))
        if math.isfinite(new_cost) and new_cost < cost:
            decrease = (cost - new_cost) / cost
            x0, u, mu = x_try, u_try, max(mu / 3, 1e-12)
            hxx, hxu, huu, gx, gu, cost, _ = problem.normal_equations(x0, u)
            accepted += 1
            costs.append(cost)
            history.append(_physical(specs, u))
            if decrease < tol:
                converged = True
        else:
            mu *= 4
            converged = mu > 1e12  # no step reduces the cost: a (numerical) minimum
        if on_step is not None:
            on_step(it + 1, max_iterations)
        if converged:
            break

    r_obs, r_gap = problem.residuals(x0, u)
    n_numbers = int(problem.windows.owned.sum()) * n_traj * len(index)
    free = n_numbers - len(specs) - n_traj * 2 * dof
    if free < 1:
        raise InvalidArgumentError(f"{n_numbers} observed numbers cannot determine {len(specs)} parameter(s) and "
                                   f"{n_traj * 2 * dof} initial-state components; observe more times or components")
    s2 = float((r_obs.double() ** 2).sum()) / free
    cov = s2 * _parameter_covariance(hxx, hxu, huu)
    theta = _physical(specs, u)
    slope = torch.stack([s.dtheta_du(u[i].double()) for i, s in enumerate(specs)])
    std = slope.abs() * cov.diagonal().clamp_min(0).sqrt()
    hist = torch.stack(history)
    return GradientResult(
        estimates={s.name: float(theta[i]) for i, s in enumerate(specs)},
        std={s.name: float(std[i]) for i, s in enumerate(specs)},
        residual=math.sqrt(float((r_obs.double() ** 2).sum()) / n_numbers),
        max_gap=float(r_gap.abs().max()) / math.sqrt(continuity_weight) if continuity_weight > 0 and r_gap.numel()
        else 0.0,
        x0=x0.detach(),
        windows=windows,
        history={s.name: hist[:, i] for i, s in enumerate(specs)},
        cost=torch.tensor(costs, dtype=torch.float64),
        iterations=accepted,
        converged=converged,
        seconds=time.perf_counter() - start,
    )


def _physical(specs: Sequence[ParameterSpec], u: Tensor) -> Tensor:
    return torch.stack([s.to_physical(u[i].double()) for i, s in enumerate(specs)])
