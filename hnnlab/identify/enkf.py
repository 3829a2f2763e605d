"""Ensemble Kalman methods for parameters and states, batched in torch on the one loop.

Both methods propagate the whole ensemble (``n_ensemble`` members x ``n_traj`` trajectories) as one batch of
:func:`hnnlab.rollout.solve`; each member carries its own parameter values, a ``(batch, 1)`` tensor that the
system's vector field broadcasts, row by row (:func:`~hnnlab.identify.parameters.row_parameter_field`).

- :func:`ensemble_kalman_filter`: the stochastic (perturbed-observation) EnKF of Evensen (1994) / Burgers et al.
  (1998) on the augmented state ``z = (x_1, ..., x_M, u)``, the parameters ``u`` (unconstrained) having zero
  dynamics plus an optional jitter. At each observation ``y_k = H x(t_k) + v``, ``v ~ N(0, R)``::

      K = C_zy (C_yy + R)^-1,     z_i <- z_i + K (y_k + v_i - H z_i),     v_i ~ N(0, R)

  with ``C_zy``, ``C_yy`` the ensemble (cross-)covariances (``n_ensemble - 1`` normalisation).
- :func:`ensemble_smoother`: ES-MDA (Emerick & Reynolds 2013), an ensemble Kalman inversion for the parameters
  and initial states of whole trajectories: ``n_iterations`` updates of ``(x_0, u)`` against all observations
  at once, each with the noise covariance inflated by ``n_iterations`` (exact for a linear-Gaussian problem).

A member whose rollout turns non-finite is named in a warning and dropped, never averaged.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError
from hnnlab.identify.parameters import ParameterSpec, row_parameter_field
from hnnlab.integrators import AbstractIntegrator, get_integrator
from hnnlab.rollout import solve
from hnnlab.systems.base import AbstractSystem, normal


class NonFiniteMemberWarning(UserWarning):
    """Ensemble members whose rollout became NaN or infinite were dropped."""


@dataclass
class EnsembleResult:
    """What an ensemble method returns.

    Attributes:
        estimates, std: per parameter, the ensemble mean and standard deviation of the physical value.
        members: final ensemble of physical parameter values ``(n_members, n_params)``.
        state_mean: ensemble-mean states ``(n_traj, n_obs, 2 * dof)`` at the observation times (filtered for
            the EnKF, smoothed by the rollout of the final ensemble for ES-MDA).
        state_std: their ensemble standard deviation, same shape.
        history: ``{name: (n_steps,)}`` parameter mean after each analysis (EnKF: each observation time;
            ES-MDA: each iteration).
        residual: RMS of ``y - H state_mean`` over all observations.
        dropped: indices (in the initial ensemble) of the members dropped as non-finite.
        seconds: wall time.
    """

    estimates: dict[str, float]
    std: dict[str, float]
    members: Tensor
    state_mean: Tensor
    state_std: Tensor
    history: dict[str, Tensor]
    residual: float
    dropped: list[int] = field(default_factory=list)
    seconds: float = 0.0


def _check_inputs(obs_t: Tensor, obs: Tensor, observe_index: Sequence[int], x0_mean: Tensor, dof: int,
                  n_ensemble: int, noise_std: float) -> None:
    if isinstance(n_ensemble, bool) or not isinstance(n_ensemble, int) or n_ensemble < 2:
        raise InvalidArgumentError(
            f"n_ensemble must be an integer >= 2 (an ensemble needs a spread), got {n_ensemble!r}"
        )
    if obs.ndim != 3 or obs.shape[1] != obs_t.shape[0] or obs.shape[2] != len(observe_index):
        raise InvalidArgumentError(
            f"observations must have shape (n_traj, n_obs = {obs_t.shape[0]}, n_observed = {len(observe_index)}), "
            f"got {tuple(obs.shape)}"
        )
    if x0_mean.shape != (obs.shape[0], 2 * dof):
        raise InvalidArgumentError(f"x0_mean must have shape (n_traj, 2 * dof) = {(obs.shape[0], 2 * dof)}, "
                                   f"got {tuple(x0_mean.shape)}")
    if not math.isfinite(noise_std) or noise_std <= 0:
        raise InvalidArgumentError(f"noise_std must be a finite number > 0 for a Kalman update, got {noise_std!r}")
    if obs_t.shape[0] > 1:
        gaps = torch.diff(obs_t.double())
        if not bool((gaps > 0).all()) or float(gaps.max() - gaps.min()) > 1e-9 * float(gaps.abs().max()):
            raise InvalidArgumentError("observation times must be increasing and evenly spaced")


def _start(system: AbstractSystem, obs_t: Tensor, obs: Tensor, observe_index: Sequence[int], noise_std: float,
           specs: Sequence[ParameterSpec], x0_mean: Tensor, x0_std: float | Tensor, u_std: float | Sequence[float],
           integrator: str | AbstractIntegrator, substeps: int, n_ensemble: int,
           generator: torch.Generator | None) -> tuple[torch.Generator, _Propagator, Tensor, Tensor, Tensor, Tensor]:
    """The set-up both methods share, once the arguments are checked: the generator, the propagator, the
    observations in float64, the observed indices and the initial ensemble, states ``(N, n_traj, 2 dof)`` drawn from
    ``N(x0_mean, x0_std^2)`` and unconstrained parameters ``(N, P)`` from ``N(u(init), u_std^2)``."""
    dof = system.dof
    _check_inputs(obs_t, obs, observe_index, x0_mean, dof, n_ensemble, noise_std)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    integ = get_integrator(integrator) if isinstance(integrator, str) else integrator
    n_traj, n_obs, _ = obs.shape
    dtype = torch.float64
    n_p = len(specs)
    dt_obs = float(obs_t[1] - obs_t[0]) if n_obs > 1 else 1.0
    step = _Propagator(system, integ, specs, n_traj, dt_obs / substeps, substeps)
    x0_std_t = torch.as_tensor(x0_std, dtype=dtype).expand(2 * dof)
    x = x0_mean.to(dtype)[None] + x0_std_t * normal((n_ensemble, n_traj, 2 * dof), generator)  # (N, M, 2 dof)
    u0 = torch.stack([s.to_unconstrained(torch.tensor(float(s.init), dtype=dtype)) for s in specs])
    u = u0 + torch.as_tensor(u_std, dtype=dtype).expand(n_p) * normal((n_ensemble, n_p), generator)  # (N, P)
    return generator, step, obs.to(dtype), torch.as_tensor(list(observe_index)), x, u


def _physical(specs: Sequence[ParameterSpec], u: Tensor) -> Tensor:
    """``(n, n_params)`` unconstrained -> physical."""
    return torch.stack([s.to_physical(u[:, i]) for i, s in enumerate(specs)], dim=1)


class _Propagator:
    """Steps an ensemble of ``(member, trajectory)`` states between observation times with the one loop."""

    def __init__(self, system: AbstractSystem, integrator: AbstractIntegrator, specs: Sequence[ParameterSpec],
                 n_traj: int, dt: float, substeps: int) -> None:
        integrator.check_compatible(system)
        self.system, self.integrator, self.specs = system, integrator, list(specs)
        self.n_traj, self.dt, self.substeps = n_traj, dt, substeps

    def __call__(self, x: Tensor, u: Tensor, n_intervals: int, t0: float) -> tuple[Tensor, Tensor]:
        """States ``x (n, n_traj, 2 dof)`` and parameters ``u (n, n_params)`` -> saved states
        ``(n, n_traj, n_intervals + 1, 2 dof)`` and ``(n,)`` bool, the members that stayed finite."""
        n = x.shape[0]
        theta = _physical(self.specs, u).repeat_interleave(self.n_traj, dim=0)  # (n * n_traj, n_params)
        field = row_parameter_field(self.system, [s.name for s in self.specs], theta)
        sol = solve(field, self.integrator, x.reshape(n * self.n_traj, -1), self.dt, n_intervals * self.substeps,
                    self.substeps, t0=t0, on_nonfinite="mask", progress=False)
        ys = sol.ys.reshape(n, self.n_traj, n_intervals + 1, -1)
        ok = sol.ok.reshape(n, self.n_traj).all(dim=1) & torch.isfinite(ys).flatten(1).all(dim=1)
        return ys, ok


def _drop(ok: Tensor, alive: Tensor, where: str) -> Tensor:
    """Warn about and drop the members that are not ``ok``; ``alive`` maps rows to initial member indices."""
    if bool(ok.all()):
        return alive
    bad = alive[~ok].tolist()
    warnings.warn(f"{where}: dropped {len(bad)} ensemble member(s) whose rollout became non-finite: {bad}",
                  NonFiniteMemberWarning, stacklevel=3)
    if int(ok.sum()) < 2:
        raise InvalidArgumentError(f"{where}: fewer than 2 finite ensemble members remain; use a smaller initial "
                                   "parameter spread, a smaller step or a stabler integrator")
    return alive[ok]


def kalman_update(z: Tensor, hz: Tensor, y: Tensor, noise_std: float, generator: torch.Generator,
                  inflation: float = 1.0) -> Tensor:
    """One stochastic EnKF analysis.

    Args:
        z: ensemble ``(n, d)``; hz: its predicted observations ``(n, m)``; y: the observation ``(m,)``.
        noise_std: observation noise std (``R = noise_std^2 I``); generator: draws the perturbations ``(n, m)``.
        inflation: multiplies the anomalies before the update (``>= 1``).
    """
    n = z.shape[0]
    za = z - z.mean(0)
    z = z.mean(0) + inflation * za
    hz = hz.mean(0) + inflation * (hz - hz.mean(0))
    a, ha = z - z.mean(0), hz - hz.mean(0)
    c_zy = a.T @ ha / (n - 1)  # (d, m)
    c_yy = ha.T @ ha / (n - 1) + noise_std**2 * torch.eye(hz.shape[1], dtype=z.dtype, device=z.device)
    v = noise_std * normal((n, hz.shape[1]), generator, dtype=z.dtype, device=z.device)
    innovation = y[None] + v - hz  # (n, m)
    gain_t = torch.linalg.solve(c_yy, c_zy.T)  # K^T = C_yy^-1 C_yz, (m, d); C_yy is symmetric
    return z + innovation @ gain_t


def ensemble_kalman_filter(
    system: AbstractSystem,
    obs_t: Tensor,
    obs: Tensor,
    *,
    observe_index: Sequence[int],
    noise_std: float,
    specs: Sequence[ParameterSpec],
    x0_mean: Tensor,
    x0_std: float | Tensor,
    u_std: float | Sequence[float] = 0.5,
    integrator: str | AbstractIntegrator = "rk4",
    substeps: int = 10,
    n_ensemble: int = 200,
    inflation: float = 1.0,
    process_noise_std: float = 0.0,
    parameter_jitter: float = 0.0,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, int], Any] | None = None,
) -> EnsembleResult:
    """Filter states and parameters from noisy partial observations of ``n_traj`` trajectories.

    Args:
        system: the analytic system; its ``specs`` parameters are estimated, the others held fixed.
        obs_t: evenly spaced observation times ``(n_obs,)``.
        obs: observations ``(n_traj, n_obs, len(observe_index))``.
        observe_index: state components observed (``H`` selects them).
        noise_std: observation noise std, ``> 0``.
        specs: the parameters to estimate (initial ensemble: ``u ~ N(u(init), u_std^2)``).
        x0_mean, x0_std: the prior of the states at ``obs_t[0]``, ``(n_traj, 2 * dof)`` and a std (scalar or
            ``(2 * dof,)``).
        u_std: prior std of each unconstrained parameter.
        integrator, substeps: the forecast takes ``substeps`` steps of the integrator between observations.
        n_ensemble: members, ``>= 2``.
        inflation: multiplicative anomaly inflation at each analysis, ``>= 1``.
        process_noise_std: std of Gaussian noise added to the states after each forecast (``Q = s^2 I``).
        parameter_jitter: std of Gaussian noise added to ``u`` after each forecast (keeps the spread alive).
        generator: the one source of randomness (default: seeded with 0).
        on_step: called as ``on_step(done, total)`` after each analysis (progress bars).
    """
    start = time.perf_counter()
    if inflation < 1:
        raise InvalidArgumentError(f"inflation must be >= 1, got {inflation!r}")
    generator, step, obs, index, x, u = _start(system, obs_t, obs, observe_index, noise_std, specs, x0_mean, x0_std,
                                               u_std, integrator, substeps, n_ensemble, generator)
    n_traj, n_obs, _ = obs.shape
    dof, n_p = system.dof, len(specs)
    alive = torch.arange(n_ensemble)
    means, stds = [], []
    history = []
    for k in range(n_obs):
        if k > 0:
            ys, ok = step(x, u, 1, float(obs_t[k - 1]))
            alive = _drop(ok, alive, f"EnKF forecast to t = {float(obs_t[k]):g}")
            x, u = ys[ok, :, -1], u[ok]
            if process_noise_std > 0:
                x = x + process_noise_std * normal(tuple(x.shape), generator)
            if parameter_jitter > 0:
                u = u + parameter_jitter * normal(tuple(u.shape), generator)
        n = x.shape[0]
        z = torch.cat([x.reshape(n, -1), u], dim=1)  # (n, M * 2 dof + P)
        hz = x[..., index].reshape(n, -1)  # (n, M * n_observed)
        z = kalman_update(z, hz, obs[:, k].reshape(-1), noise_std, generator, inflation)
        x, u = z[:, :-n_p].reshape(n, n_traj, 2 * dof), z[:, -n_p:]
        means.append(x.mean(0))
        stds.append(x.std(0))
        history.append(_physical(specs, u).mean(0))
        if on_step is not None:
            on_step(k + 1, n_obs)
    state_mean = torch.stack(means, dim=1)  # (M, n_obs, 2 dof)
    return _result(specs, u, state_mean, torch.stack(stds, dim=1), torch.stack(history), obs, index,
                   n_ensemble, alive, start)


def ensemble_smoother(
    system: AbstractSystem,
    obs_t: Tensor,
    obs: Tensor,
    *,
    observe_index: Sequence[int],
    noise_std: float,
    specs: Sequence[ParameterSpec],
    x0_mean: Tensor,
    x0_std: float | Tensor,
    u_std: float | Sequence[float] = 0.5,
    integrator: str | AbstractIntegrator = "rk4",
    substeps: int = 10,
    n_ensemble: int = 200,
    n_iterations: int = 8,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, int], Any] | None = None,
) -> EnsembleResult:
    """ES-MDA: estimate the parameters and initial states of whole trajectories from all observations at once.

    Each of the ``n_iterations`` passes rolls the ensemble of ``(x_0, u)`` over the whole observation window and
    applies :func:`kalman_update` against all observations with the noise std multiplied by
    ``sqrt(n_iterations)``. Arguments as :func:`ensemble_kalman_filter`.
    """
    start = time.perf_counter()
    if isinstance(n_iterations, bool) or not isinstance(n_iterations, int) or n_iterations < 1:
        raise InvalidArgumentError(f"n_iterations must be an integer >= 1, got {n_iterations!r}")
    generator, step, obs, index, x0, u = _start(system, obs_t, obs, observe_index, noise_std, specs, x0_mean, x0_std,
                                                u_std, integrator, substeps, n_ensemble, generator)
    n_traj, n_obs, _ = obs.shape
    dof, n_p = system.dof, len(specs)
    alive = torch.arange(n_ensemble)
    history = []
    y = obs.reshape(-1)
    for it in range(n_iterations + 1):
        ys, ok = step(x0, u, n_obs - 1, float(obs_t[0]))  # (n, M, n_obs, 2 dof)
        alive = _drop(ok, alive, f"ES-MDA iteration {it}")
        x0, u, ys = x0[ok], u[ok], ys[ok]
        if it == n_iterations:
            break
        n = x0.shape[0]
        z = torch.cat([x0.reshape(n, -1), u], dim=1)
        z = kalman_update(z, ys[..., index].reshape(n, -1), y, noise_std * math.sqrt(n_iterations), generator)
        x0, u = z[:, :-n_p].reshape(n, n_traj, 2 * dof), z[:, -n_p:]
        history.append(_physical(specs, u).mean(0))
        if on_step is not None:
            on_step(it + 1, n_iterations)
    return _result(specs, u, ys.mean(0), ys.std(0), torch.stack(history), obs, index, n_ensemble, alive, start)


def _result(specs, u, state_mean, state_std, history, obs, index, n_ensemble, alive, start) -> EnsembleResult:
    theta = _physical(specs, u)  # (n, P)
    dropped = sorted(set(range(n_ensemble)) - set(alive.tolist()))
    residual = float(((state_mean[..., index] - obs) ** 2).mean().sqrt())
    return EnsembleResult(
        estimates={s.name: float(theta[:, i].mean()) for i, s in enumerate(specs)},
        std={s.name: float(theta[:, i].std()) for i, s in enumerate(specs)},
        members=theta,
        state_mean=state_mean,
        state_std=state_std,
        history={s.name: history[:, i] for i, s in enumerate(specs)},
        residual=residual,
        dropped=dropped,
        seconds=time.perf_counter() - start,
    )
