"""Long rollouts of trained models to files (`hnnlab rollout`), checkpoint loading, and the demo."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from hnnlab.cli import main
from hnnlab.data import get_recipe, write_dataset
from hnnlab.evaluate import default_integrator, predict_to_file
from hnnlab.models import HNN, NeuralODE, SeparableHNN
from hnnlab.rollout_io import read_rollout
from hnnlab.systems import get_system
from hnnlab.training.checkpoint import CheckpointError, load_checkpoint
from hnnlab.training.module import DynamicsModule


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def spring_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "spring.h5"
    write_dataset(path, get_recipe("greydanus-spring", n_traj=8).build(seed=0))
    return path


class TrueSpringEnergy(nn.Module):
    """H = q^2 + p^2 (the Greydanus spring), with one trainable scale fixed at 1."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x**2).sum(-1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, spring_data: Path) -> Path:
    from hnnlab.data.datamodule import HDF5DataModule

    root = tmp_path_factory.mktemp("ckpt")
    pl.seed_everything(0, verbose=False)
    module = DynamicsModule(HNN(1, hidden=(16, 16)))
    trainer = pl.Trainer(
        max_steps=3, logger=False, enable_progress_bar=False, enable_model_summary=False, inference_mode=False,
        use_distributed_sampler=False, default_root_dir=root, num_sanity_val_steps=0, accelerator="cpu",
    )
    trainer.fit(module, datamodule=HDF5DataModule(str(spring_data)))
    path = root / "model.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_checkpoint_rebuilds_the_trained_model(checkpoint: Path) -> None:
    loaded = load_checkpoint(checkpoint)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert isinstance(loaded.model, HNN)
    assert loaded.model.describe()["init_args"]["hidden"] == [16, 16]
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, state[f"model.{name}"])
    assert loaded.global_step == 3


def test_bad_checkpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(junk)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="was not written by hnnlab"):
        load_checkpoint(foreign)


def test_rollout_command_streams_prediction_and_exact_reference(checkpoint: Path, spring_data: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "rollout.h5"
    code = main(["rollout", "--ckpt", str(checkpoint), "--data", str(spring_data), "--split", "test",
                 "--steps", "300", "--save-every", "10", "--n-init", "3", "--out", str(out)])
    assert code == 0
    r = read_rollout(out)
    assert r.state.shape == (3, 31, 2) and r.reference.shape == (3, 31, 2)
    assert r.metadata.checkpoint == str(checkpoint)
    assert r.metadata.integrator["name"] == "implicit_midpoint"  # the default for a general learned H
    # The reference is the true spring integrated on the same grid: equal to the exact solution.
    system = get_system("mass_spring")
    t = torch.arange(31, dtype=torch.float64) * 10 * r.metadata.dt
    exact = system.exact_solution(r.reference[:, 0], t)
    assert torch.allclose(r.reference, exact, atol=1e-8)
    # The prediction starts at the clean test states and is the model's own trajectory.
    assert torch.equal(r.state[:, 0], r.reference[:, 0])
    assert not torch.allclose(r.state[:, -1], r.reference[:, -1], atol=1e-3)
    # An existing output is kept unless --overwrite.
    assert main(["rollout", "--ckpt", str(checkpoint), "--data", str(spring_data), "--steps", "10",
                 "--out", str(out)]) == 2
    assert read_rollout(out).state.shape == (3, 31, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "val"], "--split 'val' is not a non-empty split"),
        (["--n-init", "0"], "--n-init must be between 1 and 4"),
        (["--integrator", "leapfrog"], "is symplectic only for a separable H"),
    ],
)
def test_rollout_command_bad_input(args, message, checkpoint, spring_data, tmp_path, capsys) -> None:
    out = tmp_path / "r.h5"
    code = main(["rollout", "--ckpt", str(checkpoint), "--data", str(spring_data), "--steps", "5",
                 "--out", str(out), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


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


@pytest.mark.slow
def test_demo_runs_every_stage_and_separates_symplectic_from_rk4(tmp_path: Path) -> None:
    from hnnlab.demo import DemoConfig, run_demo

    summary = run_demo(DemoConfig(out=tmp_path, train_steps=20, rollout_steps=200, n_rollouts=2,
                                  integrator_steps=4000))
    verdicts = {row["integrator"]: row["verdict"] for row in summary["integrators"]}
    assert verdicts == {"leapfrog": "bounded", "yoshida4": "bounded", "rk4": "drifting"}
    assert [(m["system"], m["model"]) for m in summary["models"]] == [
        ("spring", "HNN"), ("spring", "baseline"), ("pendulum", "HNN"), ("pendulum", "baseline")]
    for m in summary["models"]:
        assert math.isfinite(m["test_loss"]) and Path(m["rollout_file"]).is_file()
        assert all(Path(p).is_file() for p in m["plots"].values())
    assert json.loads((tmp_path / "summary.json").read_text())["models"][0]["integrator"] == "implicit_midpoint"
    assert "HNN against baseline" in (tmp_path / "summary.md").read_text()
