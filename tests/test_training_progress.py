"""Progress lines (hnnlab.training.progress): the count that bounds the run, against its limit, at regular
intervals. W&B is disabled in every test."""

from __future__ import annotations

import re
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from hnnlab.data.datamodule import HDF5DataModule
from hnnlab.errors import InvalidArgumentError
from hnnlab.models import HNN
from hnnlab.training import fit
from hnnlab.training.module import DynamicsModule
from hnnlab.training.progress import ProgressLines

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")
HEAD = re.compile(r"^(step|epoch) (\d+)/(\d+) \((\d+)%\) (epoch|step) (\d+) \(\d+\.\ds\)")


def _lines(spring: Path, capsys, batch_size, **limits) -> list[tuple[str, int, int, int, str, int]]:
    pl.seed_everything(0, verbose=False)
    module = DynamicsModule(HNN(1, hidden=(8,)))
    fit(module, HDF5DataModule(str(spring), batch_size=batch_size), checkpoint=False, limit_val_batches=0,
        accelerator="cpu", progress=ProgressLines(min_interval_s=1e9), **limits)
    out = [line for line in capsys.readouterr().out.splitlines() if HEAD.match(line)]
    parsed = []
    for line in out:
        unit, done, total, percent, other, value = HEAD.match(line).groups()
        parsed.append((unit, int(done), int(total), int(percent), other, int(value)))
    return parsed


def test_a_step_bounded_run_reports_steps_against_max_steps_every_tenth(spring: Path, capsys) -> None:
    """Full batch (one step per epoch), ``max_steps=40`` (Lightning's max_epochs stays unset): the first epoch,
    then every 4 steps, each ``step s/40``; never ``epoch 1/1000``."""
    lines = _lines(spring, capsys, None, max_steps=40)
    assert [(u, d, t, o, v) for u, d, t, _, o, v in lines] == (
        [("step", 1, 40, "epoch", 1)] + [("step", s, 40, "epoch", s) for s in range(4, 41, 4)]
    )
    assert [p for *_, p, _, _ in lines] == [2] + list(range(10, 101, 10))


def test_max_steps_before_max_epochs_counts_steps(spring: Path, capsys) -> None:
    """3 steps per epoch, ``max_steps=7`` with ``max_epochs=100``: the steps end the run, mid-epoch."""
    lines = _lines(spring, capsys, 20, max_steps=7, max_epochs=100)
    assert [(u, d, t, o, v) for u, d, t, _, o, v in lines] == [
        ("step", 3, 7, "epoch", 1), ("step", 6, 7, "epoch", 2), ("step", 7, 7, "epoch", 3)]


def test_an_epoch_bounded_run_reports_epochs_against_max_epochs(spring: Path, capsys) -> None:
    """3 steps per epoch, ``max_epochs=5`` (``max_steps`` 100 would end later): one line per epoch (each a fifth)."""
    lines = _lines(spring, capsys, 20, max_steps=100, max_epochs=5)
    assert [(u, d, t, p, o, v) for u, d, t, p, o, v in lines] == [
        ("epoch", e, 5, 20 * e, "step", 3 * e) for e in range(1, 6)]


def test_the_train_loss_shown_is_the_last_steps_not_the_last_logged(spring: Path, capsys) -> None:
    """``log_every_n_steps=4`` with 10 full-batch steps: the logged loss is step 8's; the last line shows the loss
    of step 10, which the module keeps."""
    pl.seed_everything(0, verbose=False)
    module = DynamicsModule(HNN(1, hidden=(8,)), optimizer=lambda p: torch.optim.Adam(p, lr=1e-2))
    result = fit(module, HDF5DataModule(str(spring), batch_size=None), max_steps=10, checkpoint=False,
                 limit_val_batches=0, accelerator="cpu", progress=ProgressLines(min_interval_s=1e9),
                 log_every_n_steps=4)
    (shown,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step 10/10")]
    logged = float(result.trainer.callback_metrics["train/loss"])
    assert f"train/loss={float(module.last_train_loss):.4g}" in shown
    assert f"{float(module.last_train_loss):.4g}" != f"{logged:.4g}"


def test_n_lines_is_checked() -> None:
    with pytest.raises(InvalidArgumentError, match=r"n_lines must be an integer >= 1, got 0"):
        ProgressLines(n_lines=0)
