"""Gradient identification by multiple shooting (hnnlab.identify.shooting, gradient) and the initial-state prior
(hnnlab.identify.prior): recovery, the Jacobian through the rollout, the Gauss-Newton std against the spread over
noise draws, the window layout and refused arguments."""

from __future__ import annotations

import pytest
import torch

from hnnlab.data.observations import make_observations
from hnnlab.data.simulate import simulate
from hnnlab.errors import InvalidArgumentError
from hnnlab.identify import make_specs
from hnnlab.identify.gradient import _Problem, fit_parameters
from hnnlab.identify.prior import initial_state_prior
from hnnlab.identify.shooting import Windows, shooting_loss, window_observations
from hnnlab.integrators import get_integrator
from hnnlab.systems.registry import get_system

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")  # one thread: these small batches run
# many times slower with two threads on a shared, busy CPU


def _observations(name: str, n_traj: int, n_steps: int, dt: float, *, observe: str = "q", noise: float = 0.05,
                  seed: int = 1):
    system = get_system(name)
    split = simulate(system, n_traj, dt=dt, n_steps=n_steps, seed=0, splits=(1.0, 0.0, 0.0)).splits["train"]
    obs_t, obs, _ = make_observations(split.state, split.t, observe=observe, noise_std=noise, every=1,
                                      state_names=system.state_names(), dof=system.dof,
                                      generator=torch.Generator().manual_seed(seed))
    return system, split, obs_t, obs


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradient_recovers_pendulum_g_from_noisy_positions(dtype) -> None:
    """The greydanus-pendulum setting (g = 6, 45 times over 3 s), positions only with noise 0.05, started at g = 3:
    within 2 % and 3 reported std; the residual is the noise level; float32 rollouts give the float64 estimate."""
    system, _, obs_t, obs = _observations("pendulum", 25, 44, 3.0 / 44)
    result = fit_parameters(system, obs_t, obs, observe_index=[0], specs=make_specs(system, ["g"], init={"g": 3.0}),
                            dtype=dtype)
    g, std = result.estimates["g"], result.std["g"]
    assert abs(g - 6.0) / 6.0 < 0.02 and abs(g - 6.0) < 3 * std
    assert 0.0 < std < 0.05
    assert 0.045 < result.residual < 0.055  # sum of squares / N of noise 0.05, less the fitted part
    assert result.converged and float(result.history["g"][0]) == pytest.approx(3.0)
    assert bool((torch.diff(result.cost) < 0).all())  # Levenberg-Marquardt accepts decreasing steps only
    assert result.max_gap < 0.02  # the windows join into one trajectory


def test_jacobian_through_the_rollout_equals_central_differences() -> None:
    system, _, obs_t, obs = _observations("pendulum", 3, 12, 0.1)
    windows = Windows.make(13, 4)
    specs = make_specs(system, ["g"], init={"g": 5.0})
    problem = _Problem(system, get_integrator("rk4"), specs, window_observations(obs, windows), 0.1, windows, [0],
                       4, 100.0)
    x0 = torch.randn(3, windows.n_windows, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    u = torch.log(torch.tensor([5.0], dtype=torch.float64))
    r_obs, _, s_x, s_u = problem.jacobian(x0, u)
    assert torch.equal(r_obs, problem.residuals(x0, u)[0])
    h = 1e-6
    # d r_obs / d u: the observed component's sensitivity, where owned
    fd_u = (problem.residuals(x0, u + h)[0] - problem.residuals(x0, u - h)[0]) / (2 * h)
    owned = windows.owned[None, :, :, None]
    assert torch.allclose(fd_u, s_u[..., [0], 0] * owned, atol=1e-8)
    for c in range(2):  # d r_obs / d X_c, all windows at once (they are independent)
        e = torch.zeros_like(x0)
        e[..., c] = h
        fd_x = (problem.residuals(x0 + e, u)[0] - problem.residuals(x0 - e, u)[0]) / (2 * h)
        assert torch.allclose(fd_x, s_x[..., [0], c] * owned, atol=1e-8)


@pytest.mark.slow
def test_gauss_newton_std_matches_the_spread_over_noise_draws() -> None:
    """Ten noise draws on one mass-spring problem (k = 2, positions, noise 0.05): the standard deviation of the ten
    estimates is the reported std within the sampling error of ten draws (a ratio in [0.5, 1.6]); measured with
    20 draws: 0.0251 against 0.0246."""
    system = get_system("mass_spring")
    split = simulate(system, 2, dt=0.2, n_steps=20, seed=0, splits=(1.0, 0.0, 0.0)).splits["train"]
    estimates, stds = [], []
    for seed in range(10):
        obs_t, obs, _ = make_observations(split.state, split.t, observe="q", noise_std=0.05, every=1,
                                          state_names=system.state_names(), dof=1,
                                          generator=torch.Generator().manual_seed(seed))
        r = fit_parameters(system, obs_t, obs, observe_index=[0], specs=make_specs(system, ["k"], init={"k": 1.0}),
                           window=5, substeps=5)
        estimates.append(r.estimates["k"])
        stds.append(r.std["k"])
    spread, reported = float(torch.tensor(estimates).std()), float(torch.tensor(stds).mean())
    assert 0.5 < spread / reported < 1.6
    assert abs(float(torch.tensor(estimates).mean()) - 2.0) < 3 * reported / 10**0.5  # unbiased within its error


def test_windows_own_each_observation_once_and_join_at_the_next_start() -> None:
    w = Windows.make(45, 10)
    assert w.starts == (0, 10, 20, 30, 34) and w.gap_offset == (10, 10, 10, 4)
    owned_index = w.index[w.owned]
    assert sorted(owned_index.tolist()) == list(range(45))
    assert Windows.make(41, 10).starts == (0, 10, 20, 30)  # 40 intervals: no extra window
    assert Windows.make(5, 4).starts == (0,)  # one window: single shooting


def test_shooting_loss_vanishes_on_exact_states_and_grows_off_them() -> None:
    """Noise-free full-state observations and the true windows' initial states: the residual is the integrator's
    error (rk4, 10 substeps); a wrong initial state of one window is seen by its observations and its gap."""
    system, split, obs_t, obs = _observations("mass_spring", 4, 20, 0.1, observe="state", noise=0.0)
    windows = Windows.make(21, 5)
    x0 = split.state[:, list(windows.starts)]  # (4, n_windows, 2)
    loss = shooting_loss(system, "rk4", x0, obs, 0.1, windows, [0, 1], substeps=10)
    assert float(loss) < 1e-16
    x0_bad = x0.clone()
    x0_bad[0, 1, 0] += 0.1
    assert float(shooting_loss(system, "rk4", x0_bad, obs, 0.1, windows, [0, 1], substeps=10)) > 1e-4


def test_prior_infers_momenta_from_positions_with_second_order_error() -> None:
    """Noise-free pendulum positions: p0 = m l^2 qdot0 from a quadratic fit through five positions; its error is the
    fit's O(dt^2) (halving the spacing divides it by about 4); a full-state observation is returned as it is."""
    errors = []
    for dt in (0.05, 0.025):
        system, split, obs_t, obs = _observations("pendulum", 6, 10, dt, noise=0.0)
        x0 = initial_state_prior(system, obs_t, obs, [0])
        assert torch.allclose(x0[:, 0], split.state[:, 0, 0], atol=1e-3)
        errors.append(float((x0[:, 1] - split.state[:, 0, 1]).abs().max()))
    assert errors[0] < 0.05 and 3.0 < errors[0] / errors[1] < 5.0
    full = initial_state_prior(system, obs_t, split.state, [0, 1])
    assert torch.equal(full, split.state[:, 0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "the window length must be an integer between 1 and the number of observation intervals "
                        r"\(44\), got 0"),
        ({"observe_index": [2]}, r"observe_index must list distinct state components in 0..1, got \[2\]"),
        ({"substeps": 0}, "substeps must be an integer >= 1, got 0"),
        ({"window": 1}, "the window must span >= 2 intervals, got 1"),
        ({"continuity_weight": -1.0}, "continuity_weight must be a finite number >= 0, got -1.0"),
    ],
)
def test_gradient_refuses_bad_arguments(kwargs, message) -> None:
    system, _, obs_t, obs = _observations("pendulum", 2, 44, 3.0 / 44)
    args = {"observe_index": [0], "specs": make_specs(system, ["g"]), **kwargs}
    with pytest.raises(InvalidArgumentError, match=message):
        fit_parameters(system, obs_t, obs, **args)


def test_shooting_loss_of_a_network_is_differentiable_in_its_weights_and_latent_starts() -> None:
    """Item 5's objective: a separable HNN's multiple-shooting loss on positions, with the windows' initial states
    as latent variables; its gradients (through leapfrog rollouts) equal central differences in float64."""
    from hnnlab.models import SeparableHNN

    torch.manual_seed(0)
    _, _, obs_t, obs = _observations("pendulum", 3, 12, 0.1)
    windows = Windows.make(13, 4)
    model = SeparableHNN(1, hidden=(8,)).double()
    x0 = torch.randn(3, windows.n_windows, 2, dtype=torch.float64, requires_grad=True)

    def loss():
        return shooting_loss(model, "leapfrog", x0, obs, 0.1, windows, [0], substeps=2)

    value = loss()
    value.backward()
    weight = next(model.parameters())
    h = 1e-6
    for tensor, index in ((x0, (1, 2, 1)), (weight, (0, 0))):
        with torch.no_grad():
            tensor[index] += h
            up = float(loss())
            tensor[index] -= 2 * h
            down = float(loss())
            tensor[index] += h
        assert tensor.grad[index].item() == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9)


def test_shooting_refuses_a_time_dependent_model() -> None:
    from hnnlab.models import PortHamiltonianNN

    _, _, _, obs = _observations("pendulum", 2, 12, 0.1)
    with pytest.raises(InvalidArgumentError, match="multiple shooting starts every window at t = 0 and feeds no "
                                                   "inputs; PortHamiltonianNN has a field that depends on time"):
        shooting_loss(PortHamiltonianNN(1, force="time"), "rk4", torch.zeros(2, 3, 2), obs.float(), 0.1,
                      Windows.make(13, 4), [0])
