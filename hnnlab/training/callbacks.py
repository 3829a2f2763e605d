"""Lightning callbacks: plain progress lines for CI logs, and W&B run bookkeeping.

Side effects (printing, plots, media) live here, not in the LightningModule, and run on rank zero.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only


class PlainProgressLog(pl.Callback):
    """One plain line per epoch (for CI and log files, where a live progress bar is noise)."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        self.every_n_epochs = every_n_epochs
        self._start = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if (epoch + 1) % self.every_n_epochs and not last:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        shown = "  ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        print(
            f"epoch {epoch + 1}/{trainer.max_epochs} step {trainer.global_step} "
            f"({time.perf_counter() - self._start:.1f}s)  {shown}",
            flush=True,
        )

    def state_dict(self) -> dict[str, Any]:
        return {}


def wandb_run_id(trainer: pl.Trainer) -> str | None:
    """The id of the trainer's W&B run, or None without one."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            return getattr(run, "id", None)
    return None
