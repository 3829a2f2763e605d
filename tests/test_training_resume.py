"""Exact resume (hnnlab.training.resume): a run resumed from any of its checkpoints, to a ``max_steps`` or a
``max_epochs`` stop, ends with the uninterrupted run's weights bit for bit.

W&B is disabled in every test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from hnnlab.data.datamodule import HDF5DataModule
from hnnlab.models import HNN
from hnnlab.training import fit
from hnnlab.training.module import DynamicsModule
from hnnlab.training.resume import ExactResumeFitLoop, at_position

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


def _module(scheduler: bool) -> DynamicsModule:
    pl.seed_everything(0, verbose=False)
    extra = {"scheduler": lambda opt: torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)} if scheduler else {}
    return DynamicsModule(HNN(1, hidden=(16,)), optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), **extra)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _loop_state(epochs: tuple[int, int, int, int], batches: tuple[int, int, int, int], last: bool,
                stepped: int) -> dict:
    keys = ("ready", "started", "processed", "completed")
    return {
        "epoch_progress": {part: dict(zip(keys, epochs, strict=True)) for part in ("total", "current")},
        "epoch_loop.batch_progress": {"total": dict(zip(keys, (10 * b for b in batches), strict=True)),
                                      "current": dict(zip(keys, batches, strict=True)), "is_last_batch": last},
        "epoch_loop.state_dict": {"_batches_that_stepped": stepped},
    }


def test_loop_states_are_read_as_the_position_they_were_taken_at() -> None:
    """Lightning's loop state at each hook where hnnlab saves (epochs and batches as ready, started, processed,
    completed), and the position it stands for."""
    # on_train_epoch_end of epoch 5 (3 batches): before the epoch's scheduler step and its 'completed'.
    state, pending, skip = at_position(_loop_state((6, 6, 6, 5), (3, 3, 3, 3), True, 18))
    assert (pending, skip) == (True, 0)
    assert state["epoch_progress"]["total"] == {"ready": 6, "started": 6, "processed": 6, "completed": 5}
    assert state["epoch_loop.batch_progress"]["current"] == dict.fromkeys(("ready", "started", "processed",
                                                                           "completed"), 0)
    assert state["epoch_loop.state_dict"]["_batches_that_stepped"] == 18
    # on_validation_end in the last batch of epoch 5: the epoch not yet processed, the batch not yet counted
    # as stepped.
    state, pending, skip = at_position(_loop_state((6, 6, 5, 5), (3, 3, 3, 3), True, 17))
    assert (pending, skip) == (True, 0)
    assert state["epoch_progress"]["current"] == {"ready": 6, "started": 6, "processed": 6, "completed": 5}
    assert state["epoch_loop.state_dict"]["_batches_that_stepped"] == 18
    # on_train_end after max_steps stopped epoch 4 after 2 of its 3 batches (Lightning calls it finished).
    state, pending, skip = at_position(_loop_state((5, 5, 5, 5), (2, 2, 2, 2), False, 14))
    assert (pending, skip) == (False, 2)
    assert state["epoch_progress"]["total"] == {"ready": 5, "started": 5, "processed": 4, "completed": 4}
    assert state["epoch_loop.batch_progress"]["current"]["completed"] == 2
    assert state["epoch_loop.state_dict"]["_batches_that_stepped"] == 14
    # on_train_batch_end of the second batch of epoch 4 (every_n_train_steps).
    state, pending, skip = at_position(_loop_state((5, 5, 4, 4), (2, 2, 2, 1), False, 13))
    assert (pending, skip) == (False, 2)
    assert state["epoch_loop.batch_progress"]["total"]["completed"] == 20
    assert state["epoch_loop.state_dict"]["_batches_that_stepped"] == 14
    # After max_epochs: a finished epoch, nothing pending.
    state, pending, skip = at_position(_loop_state((8, 8, 8, 8), (3, 3, 3, 3), True, 24))
    assert (pending, skip) == (False, 0)
    assert state["epoch_progress"]["total"]["completed"] == 8


@pytest.mark.parametrize(
    ("batch_size", "first", "final", "scheduler"),
    [
        (20, 14, 20, False),    # 3 batches per epoch: resumed from step 14, 2 batches into epoch 4
        (20, 14, 20, True),     # the same with an epoch-interval scheduler
        (20, 18, 26, True),     # from an epoch boundary (step 18, end of epoch 5), scheduler step pending
        (None, 7, 12, True),    # full batch: one step per epoch
    ],
)
def test_resume_from_the_last_checkpoint_to_more_steps_is_bit_identical(spring: Path, tmp_path: Path,
                                                                       batch_size, first, final, scheduler) -> None:
    """Train to ``first`` steps, resume from its last.ckpt to ``final``: the weights equal those of a run
    trained to ``final`` at once (Lightning alone resumes a mid-epoch stop at the next epoch: 5e-3 apart)."""
    options = {"progress": None, "accelerator": "cpu", "check_val_every_n_epoch": 2}
    whole = _module(scheduler)
    fit(whole, HDF5DataModule(str(spring), batch_size=batch_size), max_steps=final, run_dir=tmp_path / "a",
        **options)
    short = fit(_module(scheduler), HDF5DataModule(str(spring), batch_size=batch_size), max_steps=first,
                run_dir=tmp_path / "b", **options)
    assert short.trainer.global_step == first
    resumed = _module(scheduler)
    result = fit(resumed, HDF5DataModule(str(spring), batch_size=batch_size), max_steps=final,
                 run_dir=tmp_path / "b", ckpt_path=short.last_checkpoint, **options)
    assert isinstance(result.trainer.fit_loop, ExactResumeFitLoop)
    assert result.trainer.global_step == final
    assert _same(whole.state_dict(), resumed.state_dict())
    lr = [g["lr"] for g in resumed.trainer.optimizers[0].param_groups]
    assert lr == [g["lr"] for g in whole.trainer.optimizers[0].param_groups]


def _fit_process(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "hnnlab.cli", "fit", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _checkpoints(root: Path) -> dict[str, Path]:
    return {p.name: p for p in root.rglob("*.ckpt")}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("batch_size", "max_steps", "every", "kill_epoch", "periodic", "expected"),
    [
        # mini-batch, 3 steps per epoch, max_steps ends mid-epoch (20 = 6 x 3 + 2)
        ("20", "20", "2", 4, "epoch=3-step=12.ckpt", {"epoch=5-step=18.ckpt"}),
        # full batch, one step per epoch
        ("null", "30", "10", 21, "epoch=19-step=20.ckpt", {"epoch=29-step=30.ckpt"}),
    ],
    ids=["mini-batch", "full-batch"],
)
def test_a_run_killed_after_a_periodic_checkpoint_resumes_to_max_steps_bit_identical(
    spring: Path, tmp_path: Path, batch_size, max_steps, every, kill_epoch, periodic, expected
) -> None:
    """``hnnlab fit --trainer.max_steps``: SIGKILL after a periodic checkpoint is written (at the start of the
    next epoch), resume from it with ``--ckpt_path``: the final weights are the uninterrupted run's bit for bit,
    and the resumed run's periodic checkpoints carry the uninterrupted run's epoch and step."""
    common = ["--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(spring),
              "--data.batch_size", batch_size, "--trainer.max_steps", max_steps, "--trainer.accelerator", "cpu",
              "--checkpoint.every_n_epochs", every, "--model.model.init_args.hidden", "[16]"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = _fit_process(common, tmp_path / "a")
    killed = _fit_process([*common, "--trainer.callbacks+=tests._training_helpers.KillAtEpoch",
                           "--trainer.callbacks.epoch", str(kill_epoch)], tmp_path / "b")
    out_full, _ = full.communicate(timeout=300)
    out_killed, _ = killed.communicate(timeout=300)
    assert full.returncode == 0, out_full
    assert killed.returncode == -9, out_killed
    start = _checkpoints(tmp_path / "b")[periodic]
    killed_at = start.stat().st_mtime
    resumed = _fit_process([*common, "--ckpt_path", str(start)], tmp_path / "b")
    out_resumed, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out_resumed
    assert "exists and is not empty" not in out_resumed
    uninterrupted = _checkpoints(tmp_path / "a")
    assert expected <= set(uninterrupted)
    after = {name for name, p in _checkpoints(tmp_path / "b").items()
             if p.stat().st_mtime > killed_at}
    assert expected <= after  # written by the resumed run, under the uninterrupted run's names
    a = torch.load(uninterrupted["last.ckpt"], weights_only=False)
    b = torch.load(_checkpoints(tmp_path / "b")["last.ckpt"], weights_only=False)
    assert a["global_step"] == b["global_step"] == int(max_steps)
    assert _same(a["state_dict"], b["state_dict"])
    for name in expected:
        assert _same(torch.load(uninterrupted[name], weights_only=False)["state_dict"],
                     torch.load(_checkpoints(tmp_path / "b")[name], weights_only=False)["state_dict"])
