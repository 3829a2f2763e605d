"""The training command line (hnnlab.training.cli): ``hnnlab fit/validate/test`` with the shipped configs, config
mistakes, NaN stops, checkpoints and resume, W&B bookkeeping, DDP processes.

W&B is disabled in every test except where an offline run directory is inspected (``WANDB_MODE=offline``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from hnnlab.cli import main
from hnnlab.training.checkpoint import load_checkpoint
from hnnlab.training.module import DynamicsModule
from tests._training_helpers import assert_same_field

ROOT = Path(__file__).resolve().parents[1]


# -- a model with an injected network, trained by hnnlab fit ---------------------------------------


NETS = {
    "mlp": "{class_path: hnnlab.models.MLP, init_args: {in_dim: 2, hidden: [16], out_dim: 1}}",
    "user-net": "{class_path: tests._training_helpers.UserNet, init_args: {in_dim: 2, out_dim: 1, width: 8}}",
}


@pytest.mark.parametrize("net", list(NETS))
def test_a_model_with_an_injected_network_trained_by_hnnlab_fit_reloads_from_last_ckpt(
    net: str, spring: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
        "--data.path", str(spring), "--trainer.logger", "false",
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
