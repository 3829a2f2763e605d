"""Ensemble Kalman filter: parameter recovery, agreement with the exact Kalman filter and with filterpy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from hnnlab.data.observations import make_observations
from hnnlab.data.simulate import simulate
from hnnlab.errors import InvalidArgumentError
from hnnlab.identify import ensemble_kalman_filter, kalman_filter, make_specs, transition_matrix, with_parameters
from hnnlab.identify.enkf import NonFiniteMemberWarning
from hnnlab.identify.parameters import row_parameter_field
from hnnlab.rollout import solve
from hnnlab.systems.mass_spring import MassSpring
from hnnlab.systems.registry import get_system

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")  # one thread: these small batches run
# many times slower with two threads on a shared, busy CPU


def _pendulum_observations():
    system = get_system("pendulum")  # g = 6, the greydanus-pendulum recipe's
    split = simulate(system, 25, dt=3.0 / 44, n_steps=44, seed=0, splits=(1.0, 0.0, 0.0)).splits["train"]
    obs_t, obs, _ = make_observations(split.state, split.t, observe="q", noise_std=0.05, every=1,
                                      state_names=system.state_names(), dof=1,
                                      generator=torch.Generator().manual_seed(1))
    return system, obs_t, obs


def test_enkf_recovers_pendulum_g_from_noisy_positions() -> None:
    system, obs_t, obs = _pendulum_observations()
    specs = make_specs(system, ["g"], init={"g": 3.0})
    qdot = (obs[:, 1] - obs[:, 0]) / (obs_t[1] - obs_t[0])
    x0 = torch.cat([obs[:, 0], system.m * system.l**2 * qdot], dim=1)
    result = ensemble_kalman_filter(system, obs_t, obs, observe_index=[0], noise_std=0.05, specs=specs,
                                    x0_mean=x0, x0_std=0.5, n_ensemble=200,
                                    generator=torch.Generator().manual_seed(2))
    g, std = result.estimates["g"], result.std["g"]
    assert abs(g - 6.0) / 6.0 < 0.02
    assert abs(g - 6.0) < 3 * std
    assert result.residual < 0.06  # the filtered positions sit within the noise of the observations
    assert result.dropped == []


def test_unknown_parameter_lists_the_systems_parameters() -> None:
    with pytest.raises(InvalidArgumentError, match="unknown parameter 'G' of system 'pendulum'; its scalar "
                                                   "parameters are: m, l, g"):
        make_specs(get_system("pendulum"), ["G"])


def test_bounds_that_exclude_the_initial_value_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match=r"initial value 3.0 lies outside its bounds \(4.0, 8.0\)"):
        make_specs(get_system("pendulum"), ["g"], init={"g": 3.0}, bounds={"g": (4.0, 8.0)})


def test_an_ensemble_of_one_is_refused() -> None:
    system, obs_t, obs = _pendulum_observations()
    with pytest.raises(InvalidArgumentError, match="n_ensemble must be an integer >= 2"):
        ensemble_kalman_filter(system, obs_t, obs, observe_index=[0], noise_std=0.05,
                               specs=make_specs(system, ["g"]), x0_mean=torch.zeros(25, 2), x0_std=0.5, n_ensemble=1)


def _linear_problem():
    """Mass-spring (k = 2, m = 0.5): one trajectory, positions observed with noise 0.1, prior N(x0, 0.3^2 I)."""
    system = get_system("mass_spring")
    clean = simulate(system, 1, dt=0.1, n_steps=30, seed=3, splits=(1.0, 0.0, 0.0)).splits["train"]
    obs_t, obs, _ = make_observations(clean.state, clean.t, observe="q", noise_std=0.1, every=1,
                                      state_names=system.state_names(), dof=1,
                                      generator=torch.Generator().manual_seed(4))
    x0 = clean.state[0, 0] + torch.tensor([0.2, -0.2], dtype=torch.float64)
    f = transition_matrix(system, "rk4", 0.01, 10)
    h = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    mean, cov = kalman_filter(f, h, torch.zeros(2, 2, dtype=torch.float64), torch.tensor([[0.01]]).double(),
                              x0, 0.09 * torch.eye(2, dtype=torch.float64), obs[0])
    return system, obs_t, obs, x0, f, mean, cov


def test_enkf_matches_the_exact_kalman_filter_on_a_linear_system() -> None:
    system, obs_t, obs, x0, _, mean, cov = _linear_problem()
    specs = make_specs(system, ["k"])
    n = 4000
    result = ensemble_kalman_filter(system, obs_t, obs, observe_index=[0], noise_std=0.1, specs=specs,
                                    x0_mean=x0[None], x0_std=0.3, u_std=1e-12, integrator="rk4", substeps=10,
                                    n_ensemble=n, generator=torch.Generator().manual_seed(5))
    sd = cov.diagonal(dim1=1, dim2=2).sqrt()  # (n_obs, 2)
    err = (result.state_mean[0] - mean).abs() / (sd / n**0.5)
    assert float(err.max()) < 6  # the ensemble mean is the Kalman mean within its sampling error
    ratio = result.state_std[0] / sd
    assert float((ratio - 1).abs().max()) < 0.1  # and its spread is the Kalman std within 10 % (n = 4000)


def test_enkf_matches_filterpy_on_a_linear_system() -> None:
    enkf = pytest.importorskip("filterpy.kalman")
    system, obs_t, obs, x0, f, mean, cov = _linear_problem()
    np.random.seed(6)  # filterpy draws from numpy's global generator
    n = 4000
    fp = enkf.EnsembleKalmanFilter(x=x0.numpy(), P=0.09 * np.eye(2), dim_z=1, dt=0.1,
                                   hx=lambda x: x[:1], fx=lambda x, dt: f.numpy() @ x, N=n)
    fp.Q = np.zeros((2, 2))
    fp.R = np.array([[0.01]])
    fp_means = []
    for k in range(obs.shape[1]):
        if k > 0:
            fp.predict()
        fp.update(obs[0, k].numpy())
        fp_means.append(fp.x.copy())
    ours = ensemble_kalman_filter(system, obs_t, obs, observe_index=[0], noise_std=0.1,
                                  specs=make_specs(system, ["k"]), x0_mean=x0[None], x0_std=0.3, u_std=1e-12,
                                  integrator="rk4", substeps=10, n_ensemble=n,
                                  generator=torch.Generator().manual_seed(5))
    sd = cov.diagonal(dim1=1, dim2=2).sqrt()
    diff = (torch.as_tensor(np.array(fp_means)) - ours.state_mean[0]).abs() / (sd * (2 / n) ** 0.5)
    assert float(diff.max()) < 6  # two independent ensembles: the difference has std sqrt(2 / n) sd


@dataclass
class _Fragile(MassSpring):
    """A mass-spring whose force is NaN where k > 3: the members drawn there blow up at their first step."""

    name: ClassVar[str] = "fragile_spring"

    def dp_dt(self, t, x):
        return torch.where(torch.as_tensor(self.k) > 3.0, torch.nan, super().dp_dt(t, x))


def test_rows_keep_their_own_parameters_when_the_loop_drops_a_blown_up_row() -> None:
    """Per-row parameters through solve's masking: the row with k = 5 turns NaN and is frozen; every other row
    equals its own solve with its k as a scalar, bit for bit, although the loop then steps only the live rows."""
    system = _Fragile()
    k = torch.tensor([[1.0], [5.0], [2.0], [2.5]], dtype=torch.float64)
    x0 = torch.tensor([[1.0, 0.0], [0.5, 0.2], [-0.3, 0.4], [0.2, -0.1]], dtype=torch.float64)
    sol = solve(row_parameter_field(system, ["k"], k), "rk4", x0, 0.1, 20, on_nonfinite="mask")
    assert sol.status.tolist() == [0, 1, 0, 0] and sol.first_bad_step.tolist() == [-1, 1, -1, -1]
    for i in (0, 2, 3):
        alone = solve(with_parameters(system, {"k": float(k[i])}), "rk4", x0[i : i + 1], 0.1, 20).ys[0]
        assert torch.equal(sol.ys[i], alone)
    separable = row_parameter_field(get_system("pendulum"), ["g"], torch.ones(2, 1, dtype=torch.float64))
    assert separable.is_separable  # splitting methods accept the pendulum's per-row form
    solve(separable, "leapfrog", torch.zeros(2, 2, dtype=torch.float64), 0.1, 5)


def test_enkf_names_and_drops_non_finite_members_and_estimates_from_the_rest() -> None:
    system = _Fragile()
    clean = simulate(MassSpring(), 3, dt=0.1, n_steps=30, seed=3, splits=(1.0, 0.0, 0.0)).splits["train"]
    obs_t, obs, _ = make_observations(clean.state, clean.t, observe="q", noise_std=0.1, every=1,
                                      state_names=system.state_names(), dof=1,
                                      generator=torch.Generator().manual_seed(4))
    with pytest.warns(NonFiniteMemberWarning) as record:
        result = ensemble_kalman_filter(system, obs_t, obs, observe_index=[0], noise_std=0.1,
                                        specs=make_specs(system, ["k"]), x0_mean=clean.state[:, 0], x0_std=0.1,
                                        n_ensemble=100, generator=torch.Generator().manual_seed(5))
    assert len(record) == 1
    message = str(record[0].message)
    assert message == (f"EnKF forecast to t = 0.1: dropped {len(result.dropped)} ensemble member(s) whose rollout "
                       f"became non-finite: {result.dropped}")
    assert 0 < len(result.dropped) < 50 and result.members.shape == (100 - len(result.dropped), 1)
    assert bool(torch.isfinite(result.members).all()) and bool((result.members <= 3.0 + 1.0).all())
    assert abs(result.estimates["k"] - 2.0) < 3 * result.std["k"]
