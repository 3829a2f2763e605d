"""The training command line (hnnlab.training.cli): ``hnnlab fit/validate/test`` with the shipped configs, config
mistakes, NaN stops, checkpoints and resume, W&B bookkeeping, DDP processes.

W&B is disabled in every test except where an offline run directory is inspected (``WANDB_MODE=offline``).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor

from hnnlab.cli import main
from hnnlab.data.datamodule import HDF5DataModule
from hnnlab.models import HNN
from hnnlab.training import fit
from hnnlab.training.checkpoint import load_checkpoint
from hnnlab.training.module import DynamicsModule
from tests._training_helpers import assert_same_field, assert_same_weights, weights_of

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


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


# -- hnnlab fit and hnnlab test against fit from Python --------------------------------------------


def test_fit_command_writes_the_final_last_checkpoint_and_equals_fit_from_python(spring, tmp_path, monkeypatch,
                                                                                 capsys) -> None:
    """``hnnlab fit`` with the shipped spring config, checkpointing every 10 epochs, stopped at step 25
    (full batch: a step per epoch): last.ckpt is step 25, and its weights are bit for bit those of
    ``fit`` from Python with the config's model, optimizer and trainer settings."""
    monkeypatch.chdir(tmp_path)
    status = main([
        "fit", "--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(spring),
        "--trainer.accelerator", "cpu", "--trainer.max_steps", "25", "--checkpoint.every_n_epochs", "10",
        "--trainer.default_root_dir", str(tmp_path / "cli"),
    ])
    assert status == 0
    (last,) = Path("runs").rglob("last.ckpt")  # the W&B logger's run directory, relative to the working one
    assert f"hnnlab fit: last checkpoint (step 25): {last}" in capsys.readouterr().out
    cli = torch.load(last, weights_only=False)
    assert cli["global_step"] == 25
    (periodic,) = last.parent.glob("epoch=*.ckpt")
    assert torch.load(periodic, weights_only=False)["global_step"] == 20
    # The same trainer set-up tests (no inference mode: the HNN differentiates H) and saves nothing.
    assert main(["test", "--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(spring),
                 "--trainer.accelerator", "cpu", "--ckpt_path", str(last)]) == 0
    assert "test/loss" in capsys.readouterr().out
    assert sorted(Path("runs").rglob("*.ckpt")) == sorted([last, periodic])

    pl.seed_everything(0, workers=True)  # the config's seed_everything, as LightningCLI applies it
    model = HNN(1, hidden=(200, 200), activation="tanh", orthogonal_init=True)
    module = DynamicsModule(model, loss="derivative",
                            optimizer=lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4))
    result = fit(module, HDF5DataModule(str(spring), mode="pairs", batch_size=None), max_steps=25,
                 max_epochs=2000, accelerator="cpu", run_dir=tmp_path / "python", check_val_every_n_epoch=100,
                 log_every_n_steps=50)
    assert result.last_checkpoint == tmp_path / "python" / "checkpoints" / "last.ckpt"
    assert_same_weights(cli["state_dict"], weights_of(module))
    assert_same_weights(torch.load(result.last_checkpoint, weights_only=False)["state_dict"], weights_of(module))
