"""The one training entry, ``hnnlab.training.fit``: the final ``last.ckpt``, the trainer set-up it shares
with ``hnnlab fit`` (same config, same weights), and its options.

W&B is disabled in every test; the ``hnnlab fit`` comparison is in tests/test_training_cli.py.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar

from hnnlab.data.datamodule import HDF5DataModule
from hnnlab.errors import InvalidArgumentError
from hnnlab.models import HNN
from hnnlab.training import FitResult, build_trainer, fit
from hnnlab.training.callbacks import HnnlabCheckpoint, PlainProgressLog
from hnnlab.training.module import DynamicsModule
from hnnlab.training.progress import ProgressLines
from tests._training_helpers import assert_same_weights, weights_of

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


def _module(seed: int = 0) -> DynamicsModule:
    pl.seed_everything(seed, verbose=False)
    return DynamicsModule(HNN(1, hidden=(16,)), optimizer=lambda p: torch.optim.Adam(p, lr=1e-2))


# -- last.ckpt holds the final weights ------------------------------------------------------------


def test_last_checkpoint_holds_the_final_weights_between_periodic_saves(spring: Path, tmp_path: Path) -> None:
    """3 steps per epoch, a save every 2 epochs (steps 6, 12), 14 steps: the periodic save is at step 12,
    and last.ckpt has the weights after step 14 (Lightning's own ModelCheckpoint would keep step 12)."""
    module = _module()
    checkpoint = HnnlabCheckpoint(dirpath=tmp_path / "ckpt", every_n_epochs=2, monitor=None, save_last=True,
                                  save_top_k=1, filename="{epoch}-{step}")
    result = fit(module, HDF5DataModule(str(spring), batch_size=20), max_steps=14, checkpoint=checkpoint,
                 limit_val_batches=0, progress=None, accelerator="cpu")
    assert isinstance(result, FitResult) and result.trainer.global_step == 14
    assert result.last_checkpoint == tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(result.last_checkpoint, weights_only=False)
    assert saved["global_step"] == 14
    assert_same_weights(saved["state_dict"], weights_of(module))
    (periodic,) = (tmp_path / "ckpt").glob("epoch=*.ckpt")
    assert torch.load(periodic, weights_only=False)["global_step"] == 12


# -- the shared set-up ----------------------------------------------------------------------------


def test_the_trained_module_can_be_tested_with_the_same_trainer(spring: Path, tmp_path: Path) -> None:
    """No inference mode: testing an HNN differentiates H with respect to the state; hnnlab's own sampler."""
    module = _module()
    datamodule = HDF5DataModule(str(spring), batch_size=20)
    result = fit(module, datamodule, max_steps=3, run_dir=tmp_path, limit_val_batches=0, accelerator="cpu")
    assert result.trainer.global_step == 3 and result.seconds > 0
    assert result.last_checkpoint == tmp_path / "checkpoints" / "last.ckpt"
    (metrics,) = result.trainer.test(module, datamodule=datamodule, verbose=False)
    assert torch.isfinite(torch.tensor(metrics["test/loss"]))
    assert result.trainer._accelerator_connector.use_distributed_sampler is False


def test_checkpoint_options(spring: Path, tmp_path: Path) -> None:
    datamodule = HDF5DataModule(str(spring), batch_size=20)
    none = fit(_module(), datamodule, max_steps=2, checkpoint=False, run_dir=tmp_path / "a", accelerator="cpu",
               limit_val_batches=0)
    assert none.last_checkpoint is None and none.trainer.checkpoint_callbacks == []
    assert not list(tmp_path.rglob("*.ckpt"))
    module = _module()
    there = fit(module, datamodule, max_steps=2, checkpoint=tmp_path / "here", accelerator="cpu",
                limit_val_batches=0)
    assert there.last_checkpoint == tmp_path / "here" / "last.ckpt"
    assert_same_weights(torch.load(there.last_checkpoint, weights_only=False)["state_dict"], weights_of(module))
    with pytest.raises(InvalidArgumentError, match="checkpoint must be True, False, a directory or a ModelCheckpoint"):
        build_trainer(checkpoint=3)


@pytest.mark.parametrize(
    ("progress", "kind"),
    [("auto", ProgressLines), ("lines", ProgressLines), ("bar", RichProgressBar), (None, None)],
)
def test_progress_choices(progress, kind) -> None:
    """Under pytest stdout is no terminal: "auto" prints plain lines."""
    trainer = build_trainer(max_steps=1, progress=progress, checkpoint=False, logger=False)
    shown = [cb for cb in trainer.callbacks if isinstance(cb, PlainProgressLog | RichProgressBar)]
    assert [type(cb) for cb in shown] == ([kind] if kind else [])
    assert (trainer.progress_bar_callback is not None) == (kind is RichProgressBar)


def test_a_progress_callback_is_used_as_given() -> None:
    lines = PlainProgressLog(every_n_epochs=7)
    trainer = build_trainer(max_steps=1, progress=lines, checkpoint=False)
    assert [cb for cb in trainer.callbacks if isinstance(cb, PlainProgressLog)] == [lines]


def test_build_trainer_defaults_and_refusals() -> None:
    trainer = build_trainer(max_steps=5, checkpoint=False)
    assert trainer.max_steps == 5 and trainer.num_sanity_val_steps == 0
    assert trainer.validate_loop.inference_mode is False and trainer.test_loop.inference_mode is False
    assert isinstance(build_trainer().checkpoint_callback, HnnlabCheckpoint)
    own = ModelCheckpoint(save_last=True)
    assert build_trainer(checkpoint=own).checkpoint_callbacks == [own]
    for lightning_name, ours in (("default_root_dir", "run_dir"), ("enable_checkpointing", "checkpoint"),
                                 ("enable_progress_bar", "progress")):
        with pytest.raises(InvalidArgumentError, match=f"pass {ours}=..., not {lightning_name}=..."):
            build_trainer(**{lightning_name: None})
    with pytest.raises(InvalidArgumentError, match="progress must be one of auto, bar, lines"):
        build_trainer(progress="fancy")


def test_fit_takes_the_arguments_of_build_trainer() -> None:
    """``fit`` spells out ``build_trainer``'s arguments (for a notebook's help); they must stay the same."""
    ours = inspect.signature(fit).parameters
    theirs = inspect.signature(build_trainer).parameters
    shared = [p for name, p in ours.items() if name not in ("module", "datamodule", "ckpt_path")]
    assert shared == list(theirs.values())
