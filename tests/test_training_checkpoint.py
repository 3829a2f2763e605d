"""Checkpoints rebuild every model, injected networks included, with the same outputs bit for bit.

Each test saves through the real path (``DynamicsModule.on_save_checkpoint`` inside Lightning's
``Trainer.save_checkpoint``) and reloads with :func:`load_checkpoint`; the round trip through ``hnnlab fit``
itself is in tests/test_training_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor, nn

from hnnlab.models import HNN, MLP, MODELS, DissipativeHNN, NeuralODE, SecondOrderNeuralODE, SeparableHNN, get_model
from hnnlab.models.base import AbstractModel
from hnnlab.training.checkpoint import CheckpointError, load_checkpoint
from hnnlab.training.module import DynamicsModule
from tests._training_helpers import UserNet, assert_same_field


def save_and_load(model: AbstractModel, path: Path) -> AbstractModel:
    """Save ``model`` as training does (Lightning's checkpoint with hnnlab's metadata) and load it back."""
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.strategy.connect(DynamicsModule(model))
    trainer.save_checkpoint(path)
    return load_checkpoint(path).model


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
    assert modules["dissipation_net"]["class_path"] == "tests._training_helpers:UserNet"
    assert isinstance(modules["dissipation_net"]["object"], UserNet)


def test_an_unpicklable_network_warns_at_save_and_is_refused_at_load_with_the_reason(tmp_path: Path) -> None:
    class LocalNet(nn.Module):  # defined inside a function: pickle cannot find it by name
        def forward(self, x: Tensor) -> Tensor:
            return (x**2).sum(-1)

    with pytest.warns(UserWarning, match="cannot store HNN's net="):
        with pytest.raises(CheckpointError, match=r"net= \(.*LocalNet\) was not stored .*Can't pickle local"):
            save_and_load(HNN(1, net=LocalNet()), tmp_path / "model.ckpt")


# -- a checkpoint written by Lightning's trainer ---------------------------------------------------


def test_checkpoint_rebuilds_the_trained_model(hnn_checkpoint: Path) -> None:
    loaded = load_checkpoint(hnn_checkpoint)
    state = torch.load(hnn_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert isinstance(loaded.model, HNN)
    assert loaded.model.describe()["init_args"]["hidden"] == [16, 16]
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, state[f"model.{name}"])
    assert loaded.global_step == 3


def test_bad_checkpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a hnn_checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(junk)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="was not written by hnnlab"):
        load_checkpoint(foreign)
