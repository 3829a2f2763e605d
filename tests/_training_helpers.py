"""Importable helpers for tests/test_training.py: callbacks and loggers that spawned DDP workers and
``hnnlab fit`` subprocesses can load by class path (``tests._training_helpers.<Name>``)."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger
from torch import Tensor

from hnnlab.models import HNN


class GradCapture(pl.Callback):
    """Save the (DDP-reduced) parameter gradients of the first optimizer step to ``path`` (rank zero)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if trainer.global_step == 0 and trainer.is_global_zero:
            grads = {name: p.grad.detach().clone() for name, p in pl_module.named_parameters()}
            torch.save(grads, self.path)


class KillAtEpoch(pl.Callback):
    """SIGKILL this process at the start of epoch ``epoch`` (after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordingLogger(Logger):
    """A logger that keeps what it is given, in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.hyperparams: list[dict[str, Any]] = []
        self.metrics: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.hyperparams.append(dict(params))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))


class PoisonedEnergyHNN(HNN):
    """An HNN whose *energy* (not its vector field) turns NaN once ``poison`` is set to NaN."""

    def __init__(self, dof: int = 1) -> None:
        super().__init__(dof, hidden=(16,), orthogonal_init=True)
        self.register_buffer("poison", torch.zeros(()))

    def energy(self, x: Tensor) -> Tensor:
        return self.hamiltonian(self.check_state(x)) * (1.0 + self.poison)


class PoisonAtStep(pl.Callback):
    """Set the model's ``poison`` buffer to NaN before global step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step == self.step:
            pl_module.model.poison.fill_(float("nan"))
