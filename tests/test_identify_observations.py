"""make_observations: the observation model y_k = H x(t_{k * every}) + N(0, noise_std^2)."""

from __future__ import annotations

import math

import pytest
import torch

from hnnlab.data.observations import make_observations
from hnnlab.errors import InvalidArgumentError


def _states(n_traj: int = 40, n_times: int = 101, dof: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.linspace(0.0, 10.0, n_times, dtype=torch.float64)
    phase = torch.arange(n_traj, dtype=torch.float64)[:, None, None] * 0.1
    comp = torch.arange(2 * dof, dtype=torch.float64)[None, None, :] + 1
    return torch.sin(comp * t[None, :, None] + phase), t  # (n_traj, n_times, 2 * dof)


def _names(dof: int) -> list[str]:
    return [f"q{i}" for i in range(dof)] + [f"p{i}" for i in range(dof)]


@pytest.mark.parametrize("observe, width", [("q", 2), ("state", 4)])
def test_observations_select_components_and_times(observe: str, width: int) -> None:
    states, t = _states()
    obs_t, obs, desc = make_observations(states, t, observe=observe, noise_std=0.0, every=3, state_names=_names(2),
                                         dof=2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(obs_t, t[::3])
    assert obs.shape == (40, 34, width)
    assert torch.equal(obs, states[:, ::3, :width])
    assert desc == {"observe": observe, "noise_std": 0.0, "every": 3, "names": _names(2)[:width], "seed": 5}


def test_noise_has_the_stated_std_and_zero_mean_and_is_reproducible() -> None:
    states, t = _states(n_traj=200)
    kwargs = dict(observe="q", noise_std=0.05, every=1, state_names=_names(2), dof=2)
    _, obs, _ = make_observations(states, t, generator=torch.Generator().manual_seed(1), **kwargs)
    _, again, _ = make_observations(states, t, generator=torch.Generator().manual_seed(1), **kwargs)
    assert torch.equal(obs, again)
    residual = obs - states[..., :2]
    n = residual.numel()  # 40,400 samples: std of the sample std is 0.05 / sqrt(2 n) ~ 1.8e-4
    assert abs(float(residual.std()) - 0.05) < 5 * 0.05 / math.sqrt(2 * n)
    assert abs(float(residual.mean())) < 5 * 0.05 / math.sqrt(n)


def test_float32_states_give_float32_observations() -> None:
    states, t = _states()
    _, obs, _ = make_observations(states.float(), t, observe="state", noise_std=0.1, every=2, state_names=_names(2),
                                  dof=2, generator=torch.Generator().manual_seed(0))
    assert obs.dtype == torch.float32


@pytest.mark.parametrize(
    "change, message",
    [
        ({"observe": "p"}, "observe must be one of 'q', 'state', got 'p'"),
        ({"every": 0}, "every must be an integer >= 1, got 0"),
        ({"noise_std": -1.0}, "noise_std must be a finite number >= 0, got -1.0"),
        ({"noise_std": math.nan}, "noise_std must be a finite number >= 0, got nan"),
        ({"dof": 3}, "states must have shape (n_traj, n_times, 2 * dof = 6), got (40, 101, 4)"),
        ({"state_names": ["q", "p"]}, "state_names must have 2 * dof = 4 entries, got 2"),
    ],
)
def test_bad_arguments_are_refused(change: dict, message: str) -> None:
    states, t = _states()
    kwargs = dict(observe="q", noise_std=0.1, every=1, state_names=_names(2), dof=2,
                  generator=torch.Generator().manual_seed(0))
    kwargs.update(change)
    with pytest.raises(InvalidArgumentError) as info:
        make_observations(states, t, **kwargs)
    assert message in str(info.value)


def test_times_of_the_wrong_length_are_refused() -> None:
    states, t = _states()
    with pytest.raises(InvalidArgumentError, match=r"t must have shape \(n_times,\) = \(101,\), got \(100,\)"):
        make_observations(states, t[:-1], observe="q", noise_std=0.1, every=1, state_names=_names(2), dof=2,
                          generator=torch.Generator())
