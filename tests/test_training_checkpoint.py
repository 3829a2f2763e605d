"""Checkpoints rebuild every model, injected networks included, with the same outputs bit for bit.

Each test saves through the real path (``DynamicsModule.on_save_checkpoint`` inside Lightning's
``Trainer.save_checkpoint``, or ``hnnlab fit`` itself) and reloads with :func:`load_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor, nn

from hnnlab.cli import main
from hnnlab.data import get_recipe, write_dataset
from hnnlab.models import HNN, MLP, MODELS, DissipativeHNN, NeuralODE, SecondOrderNeuralODE, SeparableHNN, get_model
from hnnlab.models.base import AbstractModel
from hnnlab.training.checkpoint import CheckpointError, load_checkpoint
from hnnlab.training.module import DynamicsModule

ROOT = Path(__file__).resolve().parents[1]


class UserNet(nn.Module):
    """A user's own architecture (not an hnnlab MLP): random Fourier features, a fixed projection held
    in a *non-persistent* buffer (not in the state dict), then a linear read-out to ``out_dim``."""

    def __init__(self, in_dim: int = 2, out_dim: int = 1, width: int = 8) -> None:
        super().__init__()
        self.register_buffer("projection", torch.randn(in_dim, width), persistent=False)
        self.readout = nn.Linear(2 * width, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        z = x @ self.projection.to(x.dtype)  # (..., width)
        return self.readout(torch.cat([torch.sin(z), torch.cos(z)], dim=-1))  # (..., out_dim)


def save_and_load(model: AbstractModel, path: Path) -> AbstractModel:
    """Save ``model`` as training does (Lightning's checkpoint with hnnlab's metadata) and load it back."""
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.strategy.connect(DynamicsModule(model))
    trainer.save_checkpoint(path)
    return load_checkpoint(path).model


def random_states(model: AbstractModel, dtype: torch.dtype, n: int = 7) -> Tensor:
    return torch.randn(n, 2 * model.dof, generator=torch.Generator().manual_seed(5), dtype=dtype)


def assert_same_field(loaded: AbstractModel, model: AbstractModel, dtype: torch.dtype) -> None:
    assert type(loaded) is type(model)
    x = random_states(model, dtype)
    expected = model(0.0, x).detach()
    assert torch.isfinite(expected).all()  # NaN != NaN: a finite field makes torch.equal meaningful
    assert torch.equal(loaded(0.0, x).detach(), expected)
    if model.has_energy:
        assert torch.equal(loaded.energy(x).detach(), model.energy(x).detach())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_model_reloads_with_the_same_field(name: str, dtype: torch.dtype, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = get_model(name, dof=2, hidden=(8, 8)).to(dtype)
    loaded = save_and_load(model, tmp_path / "model.ckpt")
    assert next(loaded.parameters()).dtype == dtype
    assert_same_field(loaded, model, dtype)


def injected_models() -> dict[str, AbstractModel]:
    torch.manual_seed(0)
    return {
        "hnn-user-net": HNN(1, net=UserNet(2, 1)),
        "hnn-mlp": HNN(1, net=MLP(2, (8,), 1, "softplus", orthogonal_init=True)),
        "node-user-net": NeuralODE(1, net=UserNet(2, 2), coordinates="lagrangian"),
        "node-sequential": NeuralODE(2, net=nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 4))),
        "second-order-user-net": SecondOrderNeuralODE(1, net=UserNet(2, 1)),
        "dissipative-both": DissipativeHNN(1, net=MLP(2, (8,), 1), dissipation_net=UserNet(2, 1)),
        "separable-known-mass": SeparableHNN(1, mass_matrix=[2.0], potential_net=UserNet(1, 1)),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", list(injected_models()))
def test_models_with_injected_networks_reload_with_the_same_field(case: str, dtype: torch.dtype,
                                                                  tmp_path: Path) -> None:
    model = injected_models()[case].to(dtype)
    torch.manual_seed(123)  # a rebuilt UserNet would draw another projection: only the stored one matches
    loaded = save_and_load(model, tmp_path / "model.ckpt")
    assert_same_field(loaded, model, dtype)


def test_an_injected_mlp_is_stored_as_a_recipe_and_a_user_net_whole(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DissipativeHNN(1, net=MLP(2, (8,), 1), dissipation_net=UserNet(2, 1))
    save_and_load(model, tmp_path / "model.ckpt")
    modules = torch.load(tmp_path / "model.ckpt", weights_only=False)["hnnlab"]["modules"]
    assert modules["net"] == {
        "class_path": "hnnlab.models.mlp:MLP",
        "init_args": {"in_dim": 2, "hidden": [8], "out_dim": 1, "activation": "tanh", "bias_last": False,
                      "orthogonal_init": False},
    }
    assert modules["dissipation_net"]["class_path"] == f"{__name__}:UserNet"
    assert isinstance(modules["dissipation_net"]["object"], UserNet)


def test_an_unpicklable_network_warns_at_save_and_is_refused_at_load_with_the_reason(tmp_path: Path) -> None:
    class LocalNet(nn.Module):  # defined inside a function: pickle cannot find it by name
        def forward(self, x: Tensor) -> Tensor:
            return (x**2).sum(-1)

    with pytest.warns(UserWarning, match="cannot store HNN's net="):
        with pytest.raises(CheckpointError, match=r"net= \(.*LocalNet\) was not stored .*Can't pickle local"):
            save_and_load(HNN(1, net=LocalNet()), tmp_path / "model.ckpt")


# -- hnnlab fit ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spring_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "spring.h5"
    write_dataset(path, get_recipe("greydanus-spring", n_traj=4).build(0))
    return path


NETS = {
    "mlp": "{class_path: hnnlab.models.MLP, init_args: {in_dim: 2, hidden: [16], out_dim: 1}}",
    "user-net": f"{{class_path: {__name__}.UserNet, init_args: {{in_dim: 2, out_dim: 1, width: 8}}}}",
}


@pytest.mark.parametrize("net", list(NETS))
def test_a_model_with_an_injected_network_trained_by_hnnlab_fit_reloads_from_last_ckpt(
    net: str, spring_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hnnlab fit`` with ``model.model.init_args.net`` given by ``class_path``/``init_args`` trains for
    three steps; ``last.ckpt`` rebuilds the trained model, whose field it gives bit for bit."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    trained: list[DynamicsModule] = []
    initial: list[dict[str, Tensor]] = []
    monkeypatch.setattr(DynamicsModule, "on_train_start", lambda self: initial.append(
        {k: v.clone() for k, v in self.model.state_dict().items()}), raising=False)
    monkeypatch.setattr(DynamicsModule, "on_train_end", lambda self: trained.append(self), raising=False)
    config = tmp_path / "exp.yaml"
    config.write_text(f"base: {ROOT / 'configs/spring_hnn.yaml'}\nmodel:\n  model:\n    init_args:\n"
                      f"      net: {NETS[net]}\n")
    status = main([
        "fit", "--config", str(config), "--trainer.max_steps", "3", "--trainer.accelerator", "cpu",
        "--data.path", str(spring_data), "--trainer.logger", "false",
        "--trainer.default_root_dir", str(tmp_path / "run"), "--checkpoint.every_n_epochs", "1",
        "--checkpoint.dirpath", str(tmp_path / "run" / "checkpoints"),
    ])
    assert status == 0
    (module,) = trained
    model = module.model
    assert type(model.net).__name__ == ("MLP" if net == "mlp" else "UserNet")
    # the weights moved: the comparison below is of a trained model, not of its initialisation
    assert any(not torch.equal(v, initial[0][k]) for k, v in model.state_dict().items())
    loaded = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert loaded.global_step == 3
    assert_same_field(loaded.model, model, torch.float32)
