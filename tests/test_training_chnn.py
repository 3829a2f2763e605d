"""``hnnlab fit`` trains a CHNN on Cartesian chain data with the shipped configs (derivative and rollout losses): a few
steps lower the loss on the training data, and ``last.ckpt`` reloads the trained model bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from hnnlab.cli import main
from hnnlab.data.io import load_dataset
from hnnlab.integrators import get_integrator
from hnnlab.models import CHNN
from hnnlab.training.checkpoint import load_checkpoint
from hnnlab.training.losses import derivative_loss, distance, rollout_states
from hnnlab.training.module import DynamicsModule
from tests._training_helpers import assert_same_field

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


def train_loss(model: CHNN, states: Tensor, dxdt: Tensor, config: str) -> float:
    """The config's objective on all training data: derivative MSE at every state, or the L1 error of 4-step rk4
    rollouts from every 5-state window (the windows the rollout config trains on)."""
    with torch.no_grad():
        if config == "chain_pendulum_chnn_derivative":
            return float(derivative_loss(model, states.flatten(0, 1), dxdt.flatten(0, 1)))
        windows = states.unfold(1, 5, 1).movedim(-1, 2).flatten(0, 1)  # (B, 5, 2 * dof)
        dt = 0.03
        predicted = rollout_states(model, get_integrator("rk4"), windows[:, 0], dt, 4)
        return float(distance(predicted, windows[:, 1:], "l1"))


@pytest.mark.parametrize("config", ["chain_pendulum_chnn_derivative", "chain_pendulum_chnn"])
def test_fit_lowers_the_loss_and_the_checkpoint_reloads_bit_for_bit(config: str, small_data, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = small_data["chnn-chain-pendulum-cartesian"]
    trained: list[DynamicsModule] = []
    initial: list[dict[str, Tensor]] = []
    monkeypatch.setattr(DynamicsModule, "on_train_start", lambda self: initial.append(
        {k: v.clone() for k, v in self.model.state_dict().items()}), raising=False)
    monkeypatch.setattr(DynamicsModule, "on_train_end", lambda self: trained.append(self), raising=False)
    status = main([
        "fit", "--config", str(ROOT / "configs" / f"{config}.yaml"), "--data.path", str(data),
        "--trainer.max_steps", "15", "--trainer.accelerator", "cpu", "--trainer.logger", "false",
        "--model.model.init_args.hidden", "[32, 32]", "--data.batch_size", "32",
        "--trainer.default_root_dir", str(tmp_path / "run"), "--checkpoint.dirpath", str(tmp_path / "ckpt"),
        "--checkpoint.monitor", "null", "--trainer.callbacks", "[]",
    ])
    assert status == 0
    (module,) = trained
    model = module.model
    assert isinstance(model, CHNN) and model.constraints.pairs == ((0, 1, None), (1, 2, None))
    train = load_dataset(data).splits["train"]
    states, dxdt = train.state.to(torch.float32), train.dxdt.to(torch.float32)
    before = CHNN(**model.constructor_arguments())
    before.load_state_dict(initial[0])
    loss_before, loss_after = train_loss(before, states, dxdt, config), train_loss(model, states, dxdt, config)
    assert loss_after < 0.9 * loss_before, (loss_before, loss_after)
    loaded = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert loaded.global_step == 15
    assert loaded.model.constraints == model.constraints
    assert_same_field(loaded.model, model, torch.float32)
