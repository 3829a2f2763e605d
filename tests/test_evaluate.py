"""Long rollouts of trained models to files (hnnlab.evaluate); the `hnnlab rollout` command is tested in
tests/test_cli.py, checkpoint loading in tests/test_training_checkpoint.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from hnnlab.evaluate import default_integrator, predict_to_file
from hnnlab.models import HNN, NeuralODE, SeparableHNN
from hnnlab.rollout_io import read_rollout
from hnnlab.systems import get_system

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


class TrueSpringEnergy(nn.Module):
    """H = q^2 + p^2 (the Greydanus spring), with one trainable scale fixed at 1."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x**2).sum(-1)


def test_true_hamiltonian_rollout_file_conserves_energy_and_matches_reference(tmp_path: Path) -> None:
    """An HNN holding the true H, integrated with implicit midpoint, tracks the true system: the file's
    prediction equals the reference to the method's O(dt^2) error, and its energy stays bounded."""
    model = HNN(1, net=TrueSpringEnergy()).double()
    system = get_system("mass_spring")
    x0 = system.sample_initial_states(4, torch.Generator().manual_seed(1))
    out = tmp_path / "true.h5"
    summary = predict_to_file(model, x0, dt=0.01, n_steps=2000, out=out, system=system, save_every=20)
    assert summary["first_nonfinite_step"] is None
    r = read_rollout(out)
    energy = system.energy(r.state)
    assert float(((energy - energy[:, :1]).abs() / energy[:, :1]).max()) < 1e-10  # quadratic H: exact
    # Phase error of the midpoint rule after T = 20: w^3 dt^2 T / 12 with w = 2.
    bound = 2**3 * 0.01**2 * 20 / 12 * float(x0.norm(dim=-1).max()) * 1.5
    assert float((r.state - r.reference).abs().max()) < bound
    assert r.energy_model is not None and torch.allclose(r.energy_model, energy)


def test_a_rollout_that_blows_up_is_recorded_not_raised(tmp_path: Path) -> None:
    class Exploding(NeuralODE):
        def vector_field(self, t, x):
            return torch.cat([x[..., 1:], x[..., :1] ** 3], dim=-1)  # q'' = q^3 escapes in finite time

    model = Exploding(1).double()
    x0 = torch.tensor([[0.0, 0.0], [3.0, 3.0]], dtype=torch.float64)  # an equilibrium and an escape
    out = tmp_path / "boom.h5"
    summary = predict_to_file(model, x0, dt=0.05, n_steps=2000, out=out, integrator="rk4")
    assert summary["first_nonfinite_step"] is not None
    r = read_rollout(out)
    assert int(r.first_nonfinite_step[1]) == summary["first_nonfinite_step"]
    assert int(r.first_nonfinite_step[0]) == -1
    assert r.state.shape[1] == 2001 and torch.equal(r.state[0], torch.zeros(2001, 2, dtype=torch.float64))
    # The exact first bad step, as the rollout loop itself reports it for that trajectory alone.
    from hnnlab.errors import NonFiniteStateError
    from hnnlab.rollout import rollout

    with pytest.raises(NonFiniteStateError) as info:
        rollout(model, "rk4", x0[1:], 0.05, 2000)
    assert summary["first_nonfinite_step"] == info.value.step


def test_default_integrators_match_model_structure() -> None:
    assert default_integrator(SeparableHNN(1)) == "leapfrog"
    assert default_integrator(HNN(1)) == "implicit_midpoint"
    assert default_integrator(NeuralODE(1)) == "rk4"
