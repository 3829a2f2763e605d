"""The echo state network baseline (hnnlab/models/esn.py): reservoir scaling, the closed-form readout,
teacher-forced then autonomous forecasts, batching, state_dict round trip, bad input."""

from __future__ import annotations

import pytest
import torch

from hnnlab.audit.metrics import valid_prediction_time
from hnnlab.errors import InvalidArgumentError
from hnnlab.models.esn import EchoStateNetwork
from hnnlab.rollout import rollout
from hnnlab.systems import get_system


@pytest.fixture(scope="module")
def spring_trajectories():
    system = get_system("mass_spring")
    x0 = system.sample_initial_states(12, torch.Generator().manual_seed(0))
    return rollout(system, "dopri8", x0, 0.1, 400)  # (12, 401, 2)


def test_reservoir_is_scaled_to_the_spectral_radius():
    esn = EchoStateNetwork(4, 200, spectral_radius=0.7, density=0.1)
    assert torch.linalg.eigvals(esn.w).abs().max().item() == pytest.approx(0.7, rel=1e-10)
    assert (esn.w != 0).double().mean().item() == pytest.approx(0.1, abs=0.01)


def test_readout_is_the_ridge_solution_and_fits_a_linear_flow_exactly(spring_trajectories):
    esn = EchoStateNetwork(2, 100, ridge=1e-12)
    info = esn.fit(spring_trajectories[:8], washout=20)
    # The true one-step map of a linear system is linear in u: the readout's u-term represents it exactly.
    assert info["train_mse"] < 1e-12 and info["n_samples"] == 8 * (400 - 20)
    # Normal equations of the ridge problem hold at the solution (bias unregularised).
    z = (spring_trajectories[:8] - esn.mean) / esn.scale
    _, feats = esn._teacher_forced(z[:, :-1])
    f = feats[:, 20:].flatten(0, 1)
    y = (z[:, 21:] - z[:, 20:-1]).flatten(0, 1)
    penalty = torch.full((f.shape[1],), 1e-12 * f.shape[0], dtype=f.dtype)
    penalty[0] = 0
    residual = f.T @ (f @ esn.w_out - y) + penalty[:, None] * esn.w_out
    assert residual.abs().max() < 1e-8 * (f.T @ y).abs().max()


def test_forecast_follows_the_harmonic_oscillator_over_the_horizon(spring_trajectories):
    esn = EchoStateNetwork(2, 100, ridge=1e-10)
    esn.fit(spring_trajectories[:8])
    test = spring_trajectories[8:]
    prediction = esn.forecast(test[:, :50], 350)  # teacher-forced on 50 states, then 350 steps alone
    assert prediction.shape == (4, 351, 2) and prediction.dtype == test.dtype
    torch.testing.assert_close(prediction[:, 0], test[:, 49])
    vpt, censored = valid_prediction_time(prediction, test[:, 49:400], torch.arange(351) * 0.1, threshold=0.01)
    assert bool(censored.all()), vpt  # never leaves 1 % normalised error over 35 time units


def test_forecast_is_batched_over_trajectories_and_round_trips_through_state_dict(spring_trajectories):
    esn = EchoStateNetwork(2, 60, seed=3)
    esn.fit(spring_trajectories[:8])
    warm = spring_trajectories[8:, :30]
    batch = esn.forecast(warm, 40)
    one = torch.cat([esn.forecast(warm[i:i + 1], 40) for i in range(warm.shape[0])])
    torch.testing.assert_close(batch, one, rtol=1e-12, atol=1e-12)
    again = EchoStateNetwork(2, 60, seed=3)
    again.load_state_dict(esn.state_dict())
    assert torch.equal(again.forecast(warm, 40), batch)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"leak": 0.0}, "EchoStateNetwork: leak must be a number in (0, 1], got 0.0"),
        ({"spectral_radius": 3.0}, "EchoStateNetwork: spectral_radius must be a number in (0, 2], got 3.0"),
        ({"ridge": -1.0}, "EchoStateNetwork: ridge must be a number in [0, inf], got -1.0"),
        ({"density": 0.0}, "EchoStateNetwork: density must be a number in (0, 1], got 0.0"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs, message):
    with pytest.raises(InvalidArgumentError) as excinfo:
        EchoStateNetwork(2, 20, **kwargs)
    assert str(excinfo.value) == message


def test_bad_data_and_unfitted_forecast_are_refused(spring_trajectories):
    esn = EchoStateNetwork(2, 20)
    with pytest.raises(InvalidArgumentError, match=r"the readout is not fitted; call fit\(\) first"):
        esn.forecast(spring_trajectories[:, :5], 3)
    shape = r"trajectories must have shape \(n_traj, n_times, 2\), got \(401, 2\)"
    with pytest.raises(InvalidArgumentError, match=shape):
        esn.fit(spring_trajectories[0])
    nan = spring_trajectories.clone()
    nan[0, 3, 0] = float("nan")
    with pytest.raises(InvalidArgumentError, match="trajectories holds NaN or infinite values"):
        esn.fit(nan)
    with pytest.raises(InvalidArgumentError, match="washout must be an integer >= 0, got -1"):
        esn.fit(spring_trajectories, washout=-1)


@pytest.mark.parametrize("chunk_size", [1, 7, 41, 500])
def test_iter_forecast_chunks_are_the_forecast_and_start_with_the_warmup_state(spring_trajectories, chunk_size):
    esn = EchoStateNetwork(2, 40, seed=1)
    esn.fit(spring_trajectories[:8], washout=10)
    warm = spring_trajectories[8:, :15]
    chunks = list(esn.iter_forecast(warm, 40, chunk_size=chunk_size))
    assert all(c.shape[1] <= chunk_size for c in chunks) and sum(c.shape[1] for c in chunks) == 41
    assert torch.equal(torch.cat(chunks, dim=1), esn.forecast(warm, 40))
    assert torch.equal(chunks[0][:, 0], warm[:, -1])  # the last warm-up state itself, not a round trip through scaling
