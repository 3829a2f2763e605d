"""The training losses (hnnlab.training.losses)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from hnnlab.data.datamodule import HDF5DataModule
from hnnlab.training.module import DynamicsModule
from tests._training_helpers import make_trainer

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


def test_rollout_loss_through_leapfrog_trains_a_separable_hnn(spring_full: Path) -> None:
    """Multi-step loss: windows of 4 steps through leapfrog; the window error drops by 10x in 60 steps."""
    from hnnlab.models import SeparableHNN

    pl.seed_everything(0)
    module = DynamicsModule(
        SeparableHNN(1, hidden=(64, 64)), loss="rollout", integrator="leapfrog",
        optimizer=lambda p: torch.optim.Adam(p, lr=3e-3),
    )
    datamodule = HDF5DataModule(str(spring_full), mode="windows", window=4, batch_size=None, use_noisy=False)
    before = make_trainer().test(module, datamodule, verbose=False)[0]["test/loss"]
    make_trainer(max_epochs=60, limit_val_batches=0).fit(module, datamodule)
    after = make_trainer().test(module, datamodule, verbose=False)[0]["test/loss"]
    assert after < before / 10
