"""Importable helpers for the tests of hnnlab.training (tests/test_training_*.py): callbacks, loggers and
networks that spawned DDP workers and ``hnnlab fit`` subprocesses can load by class path
(``tests._training_helpers.<Name>``), the small recipe sizes, a quiet trainer and weight comparisons."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger
from torch import Tensor, nn

from hnnlab.data.recipes import TestSet
from hnnlab.models import HNN
from hnnlab.models.base import AbstractModel

# Small versions of each recipe: enough for one training and one validation step.
SMALL = {
    "greydanus-spring": {"n_traj": 4},
    "greydanus-pendulum": {"n_traj": 4},
    "greydanus-2body": {"n_traj": 5},
    "greydanus-3body": {"n_traj": 5},
    "lnn-double-pendulum": {"n_traj": 40, "test_set": TestSet(n_traj=4, t_end=5.0, n_times=51,
                                                              system_params={"velocity_range": (0.0, 0.1)})},
    "chnn-chain-pendulum": {"n_traj": 10, "n_times": 11, "t_end": 0.3},  # the recipe's dt = 0.03
    "chnn-chain-pendulum-cartesian": {"n_traj": 10, "n_times": 11, "t_end": 0.3},
}


def make_trainer(**kwargs) -> pl.Trainer:
    """A Lightning trainer on the CPU that logs, checkpoints and prints nothing (``kwargs`` override)."""
    options = dict(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, inference_mode=False, use_distributed_sampler=False, num_sanity_val_steps=0,
    )
    return pl.Trainer(**{**options, **kwargs})


def weights_of(module: nn.Module) -> dict[str, Tensor]:
    """A detached copy of ``module``'s state dict."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_weights(a: dict[str, Tensor], b: dict[str, Tensor]) -> None:
    """The two state dicts have the same keys and bit-identical tensors."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


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


def random_states(model: AbstractModel, dtype: torch.dtype, n: int = 7) -> Tensor:
    return torch.randn(n, 2 * model.dof, generator=torch.Generator().manual_seed(5), dtype=dtype)


def assert_same_field(loaded: AbstractModel, model: AbstractModel, dtype: torch.dtype) -> None:
    """``loaded`` is a ``model`` of the same class with the same vector field (and energy) bit for bit."""
    assert type(loaded) is type(model)
    x = random_states(model, dtype)
    expected = model(0.0, x).detach()
    assert torch.isfinite(expected).all()  # NaN != NaN: a finite field makes torch.equal meaningful
    assert torch.equal(loaded(0.0, x).detach(), expected)
    if model.has_energy:
        assert torch.equal(loaded.energy(x).detach(), model.energy(x).detach())


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


class SignalAtEpoch(pl.Callback):
    """Send ``signal_name`` (``"SIGINT"`` or ``"SIGTERM"``) to this process at the start of epoch ``epoch``, as a
    user's Ctrl-C or ``kill`` would."""

    def __init__(self, epoch: int, signal_name: str) -> None:
        self.epoch, self.signal_name = epoch, signal_name

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), getattr(signal, self.signal_name))


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
