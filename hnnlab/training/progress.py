"""Plain progress lines for CI, log files and notebooks: the count that bounds the run, at regular intervals.

A run is bounded by optimizer steps (``max_steps``, when it ends before ``max_epochs`` would) or by epochs;
each line shows progress against that bound::

    step 120/200 (60%) epoch 40 (3.1s)  train/loss=0.0123
    epoch 40/100 (40%) step 120 (3.1s)  train/loss=0.0123  val/loss=0.0131

A line is printed after the first epoch, whenever the run passes another tenth of its length (``n_lines``),
after the last epoch, after every ``every_n_epochs``-th epoch (when > 1), and otherwise at most once every
``min_interval_s`` seconds; a run of unknown length (no step or epoch limit) prints by time only.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only

from hnnlab.errors import InvalidArgumentError
from hnnlab.training.callbacks import PlainProgressLog


class ProgressLines(PlainProgressLog):
    """One plain line per reporting point (module docstring); same arguments as
    :class:`~hnnlab.training.callbacks.PlainProgressLog`, plus ``n_lines``, the regular lines over a run."""

    def __init__(self, every_n_epochs: int = 1, min_interval_s: float = 5.0, n_lines: int = 10) -> None:
        super().__init__(every_n_epochs=every_n_epochs, min_interval_s=min_interval_s)
        if isinstance(n_lines, bool) or not isinstance(n_lines, int) or n_lines < 1:
            raise InvalidArgumentError(f"n_lines must be an integer >= 1, got {n_lines!r}")
        self.n_lines = n_lines
        self._mark = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._mark = self._tenth(trainer)  # a resumed run reports from where it starts

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch, now = trainer.current_epoch, time.perf_counter()
        mark = self._tenth(trainer)
        due = (
            epoch == 0
            or mark > self._mark
            or _is_last(trainer)
            or (self.every_n_epochs > 1 and (epoch + 1) % self.every_n_epochs == 0)
            or (self.every_n_epochs == 1 and now - self._last >= self.min_interval_s)
        )
        if not due:
            return
        self._last, self._mark = now, mark
        print(progress_line(trainer, now - self._start, pl_module), flush=True)

    def _tenth(self, trainer: pl.Trainer) -> int:
        """How many ``1 / n_lines`` parts of the run are done (0 when its length is unknown)."""
        done, total, _ = bound(trainer)
        return 0 if total is None else math.floor(done * self.n_lines / total)


def bound(trainer: pl.Trainer) -> tuple[int, int | None, str]:
    """``(done, total, unit)`` of the limit that ends the run: ``unit`` is ``"step"`` when ``max_steps`` ends
    it before ``max_epochs`` would, else ``"epoch"``; ``total`` is ``None`` when neither limit is set."""
    max_steps = trainer.max_steps if trainer.max_steps not in (None, -1) else None
    max_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
    per_epoch = trainer.num_training_batches
    per_epoch = per_epoch if isinstance(per_epoch, int) and per_epoch > 0 else None
    epochs_done = trainer.current_epoch + 1
    if max_steps is not None and (
        max_epochs is None or per_epoch is None
        or max_steps <= max_epochs * math.ceil(per_epoch / trainer.accumulate_grad_batches)
    ):
        return trainer.global_step, max_steps, "step"
    return epochs_done, max_epochs, "epoch"


def progress_line(trainer: pl.Trainer, seconds: float, pl_module: pl.LightningModule | None = None) -> str:
    """``step 120/200 (60%) epoch 40 (3.1s)  metric=value ...`` (or ``epoch 40/100 (40%) step 120 ...``).

    ``train/loss`` is the last step's loss when the module keeps it (``DynamicsModule.last_train_loss``):
    the logged value is only as fresh as the last logging step (``log_every_n_steps``)."""
    done, total, unit = bound(trainer)
    where = f"{done}/{total} ({100 * done / total:.0f}%)" if total else f"{done}"
    other = f"epoch {trainer.current_epoch + 1}" if unit == "step" else f"step {trainer.global_step}"
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    last = getattr(pl_module, "last_train_loss", None)
    if last is not None:
        metrics["train/loss"] = float(last)
    shown = "  ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
    return f"{unit} {where} {other} ({seconds:.1f}s)  {shown}".rstrip()


def _is_last(trainer: pl.Trainer) -> bool:
    if trainer.fast_dev_run:
        return True
    done, total, _ = bound(trainer)
    if total is not None and done >= total:
        return True
    max_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
    return max_epochs is not None and trainer.current_epoch + 1 >= max_epochs
