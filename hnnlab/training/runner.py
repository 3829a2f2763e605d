"""Training with Lightning: the one entry, :func:`fit`, used from Python and under ``hnnlab fit``.

From a notebook::

    from hnnlab.training import fit
    result = fit(DynamicsModule(HNN(1)), HDF5DataModule("data/spring.h5", batch_size=None),
                 max_steps=2000, run_dir="runs/spring")
    result.last_checkpoint  # runs/spring/checkpoints/last.ckpt, the final weights

:func:`build_trainer` is the trainer set-up that every hnnlab run shares (the demo, the reproductions and
``hnnlab fit | validate | test``, whose LightningCLI builds its trainer with it):

- no inference mode (models differentiate their energy with respect to the state) and hnnlab's own
  sampler (``use_distributed_sampler=False``: shards by rank in a ``(seed, epoch)`` order, so a resumed run
  gives the uninterrupted run's weights);
- checkpoints by :class:`~hnnlab.training.callbacks.HnnlabCheckpoint`, whose ``last.ckpt`` always holds the
  final weights once training ends;
- progress: a rich bar on a terminal, plain lines elsewhere (CI, log files, notebooks).

Everything else is Lightning's own ``Trainer`` argument, under its own name.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hnnlab.errors import InvalidArgumentError

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import Logger

# What every hnnlab trainer needs; ``hnnlab fit`` shows these as its trainer defaults.
TRAINER_DEFAULTS: dict[str, Any] = {
    # hnnlab models differentiate H with respect to the state, which inference mode forbids.
    "inference_mode": False,
    # hnnlab's datamodule shards by rank with a (seed, epoch)-determined order: exact resume.
    "use_distributed_sampler": False,
}
# Lightning defaults that hnnlab changes when training from Python (the CLI's come from its configs).
PYTHON_DEFAULTS: dict[str, Any] = {
    "num_sanity_val_steps": 0,
    "enable_model_summary": False,
}
# Lightning warnings that say nothing about an hnnlab run.
QUIET_WARNINGS = (
    r".*overridden `on_after_batch_transfer` in `LightningModule`.*",
    r".*Total length of `list` across ranks is zero.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*The anonymous setting has no effect.*",
    r".*is smaller than the logging interval.*",
    r".*LightningCLI's args parameter is intended to run from within Python.*",
    # Resuming into another directory: the old directory's best-k bookkeeping is not carried over.
    r".*The dirpath has changed from .* won't be reloaded.*",
)
PROGRESS_CHOICES = ("auto", "bar", "lines")
# hnnlab's arguments that stand for these Lightning ones.
_REPLACED = {"default_root_dir": "run_dir", "enable_checkpointing": "checkpoint", "enable_progress_bar": "progress"}


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        trainer: the Lightning trainer (``trainer.global_step``, ``trainer.callback_metrics``, and
            ``trainer.test(module, datamodule=...)`` with the same set-up).
        seconds: wall-clock time of ``trainer.fit``.
        last_checkpoint: the ``last.ckpt`` holding the final weights (``None`` without checkpoints).
    """

    trainer: pl.Trainer
    seconds: float
    last_checkpoint: Path | None


@contextmanager
def quiet_warnings() -> Iterator[None]:
    """Ignore the Lightning warnings that hnnlab knows to be harmless (:data:`QUIET_WARNINGS`)."""
    with warnings.catch_warnings():
        for pattern in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        yield


class _NoAdvertisement(logging.Filter):
    """Drop Lightning's tip that advertises its cloud logger (printed on every run; hnnlab logs to W&B)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


_RANK_ZERO_LOG = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # where rank_zero_info records start
if not any(isinstance(f, _NoAdvertisement) for f in _RANK_ZERO_LOG.filters):
    _RANK_ZERO_LOG.addFilter(_NoAdvertisement())


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """:func:`quiet_warnings`, and no Lightning banners or tips (its info-level log lines)."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with quiet_warnings():
            yield
    finally:
        logger.setLevel(level)


def fit(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    *,
    max_steps: int = -1,
    max_epochs: int | None = None,
    run_dir: str | os.PathLike | None = None,
    logger: Logger | list[Logger] | bool = False,
    checkpoint: bool | str | os.PathLike | ModelCheckpoint = True,
    progress: str | pl.Callback | None = "auto",
    accelerator: str = "auto",
    devices: int | str | list[int] = 1,
    callbacks: list[pl.Callback] | None = None,
    ckpt_path: str | os.PathLike | None = None,
    **trainer_options: Any,
) -> FitResult:
    """Train ``module`` on ``datamodule`` with :func:`build_trainer`'s trainer; the one way hnnlab trains.

    Lightning's banners and known-harmless warnings are silenced. The arguments are :func:`build_trainer`'s,
    plus ``ckpt_path``, a checkpoint to resume from (optimizer, counters and the data order come back).

    Returns:
        :class:`FitResult` ``(trainer, seconds, last_checkpoint)``; ``module`` holds the trained weights.
    """
    with quiet_lightning():
        trainer = build_trainer(
            max_steps=max_steps, max_epochs=max_epochs, run_dir=run_dir, logger=logger, checkpoint=checkpoint,
            progress=progress, accelerator=accelerator, devices=devices, callbacks=callbacks, **trainer_options,
        )
        return fit_trainer(trainer, module, datamodule, ckpt_path=ckpt_path)


class TrainingStopped(KeyboardInterrupt):
    """Training stopped by SIGINT (``exit_code`` 130) or SIGTERM (143) at ``step``; ``checkpoint`` is the last one
    written (``None`` when none was).

    Lightning ends a run stopped by SIGTERM at the next step with a ``SystemExit`` whose code is ``None``
    (success) and one stopped by Ctrl-C with ``SystemExit(1)``; :func:`fit_trainer` turns both into this, a
    ``KeyboardInterrupt`` that the command line reports as a stop by that signal.
    """

    def __init__(self, signal_name: str, step: int, checkpoint: Path | None) -> None:
        self.signal_name, self.step, self.checkpoint = signal_name, int(step), checkpoint
        self.exit_code = 143 if signal_name == "SIGTERM" else 130
        resume = (f"; last checkpoint: {checkpoint} (resume with --ckpt_path {checkpoint})" if checkpoint is not None
                  else "; no checkpoint was written")
        super().__init__(f"stopped by {signal_name} at step {self.step}{resume}")


def fit_trainer(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule | None = None,
    *,
    ckpt_path: str | os.PathLike | None = None,
    **fit_kwargs: Any,
) -> FitResult:
    """``trainer.fit`` timed, with the last checkpoint found: :func:`fit` with a trainer already built
    (``hnnlab fit`` builds its own with :func:`build_trainer`, from the parsed config)."""
    if ckpt_path is not None and os.fspath(ckpt_path) not in ("last", "best", "hpc", "registry"):
        _continue_loggers(trainer, ckpt_path)
    start = time.perf_counter()
    with warnings.catch_warnings():
        if ckpt_path is not None:  # a resumed run writes to its own checkpoint directory again, by design
            warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, **fit_kwargs)
        except SystemExit as exc:
            from lightning.pytorch.trainer.states import TrainerStatus
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            if trainer.state.status != TrainerStatus.INTERRUPTED:
                raise
            signal_name = "SIGTERM" if isinstance(exc, SIGTERMException) else "SIGINT"
            raise TrainingStopped(signal_name, trainer.global_step, last_checkpoint(trainer)) from None
    seconds = time.perf_counter() - start
    return FitResult(trainer=trainer, seconds=seconds, last_checkpoint=last_checkpoint(trainer))


def _continue_loggers(trainer: pl.Trainer, ckpt_path: str | os.PathLike) -> None:
    """Let loggers that can (``continue_from``, e.g. the W&B logger) continue the run that wrote the checkpoint."""
    loggers = [lg for lg in trainer.loggers if callable(getattr(lg, "continue_from", None))]
    if not loggers or not Path(ckpt_path).is_file():
        return
    import torch

    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    info = checkpoint.get("hnnlab") if isinstance(checkpoint, dict) else None
    if isinstance(info, dict):
        for logger in loggers:
            logger.continue_from(info)


def last_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The ``last.ckpt`` the trainer's checkpoint callbacks wrote last, or ``None``."""
    paths = [cb.last_model_path for cb in trainer.checkpoint_callbacks if getattr(cb, "last_model_path", "")]
    return Path(paths[0]) if paths else None


def build_trainer(
    *,
    max_steps: int = -1,
    max_epochs: int | None = None,
    run_dir: str | os.PathLike | None = None,
    logger: Logger | list[Logger] | bool = False,
    checkpoint: bool | str | os.PathLike | ModelCheckpoint = True,
    progress: str | pl.Callback | None = "auto",
    accelerator: str = "auto",
    devices: int | str | list[int] = 1,
    callbacks: list[pl.Callback] | None = None,
    **trainer_options: Any,
) -> pl.Trainer:
    """A ``lightning.pytorch.Trainer`` with the set-up every hnnlab run shares (see the module docstring).

    Args:
        max_steps: optimizer steps (``-1``: no limit). With ``max_epochs=None`` the steps alone decide
            (Lightning's rule: 1000 epochs only when neither is given).
        max_epochs: training epochs (``-1``: no limit).
        run_dir: the run's directory (Lightning's ``default_root_dir``).
        logger: a Lightning logger (e.g. :class:`~hnnlab.training.logging.HnnlabWandbLogger`), a list of
            them, or ``False`` for none.
        checkpoint: ``True``: ``last.ckpt`` with the final weights, in Lightning's checkpoint directory
            (the logger's run directory, or ``run_dir/checkpoints``); a directory: ``last.ckpt`` there;
            a ``ModelCheckpoint`` (best-k, periodic saves; an
            :class:`~hnnlab.training.callbacks.HnnlabCheckpoint` still ends with the final ``last.ckpt``);
            ``False``: no checkpoints.
        progress: ``"auto"`` (a rich bar on a terminal outside CI, else plain lines), ``"bar"``, ``"lines"``
            (:class:`~hnnlab.training.progress.ProgressLines`: steps against ``max_steps`` when the steps end
            the run, else epochs against ``max_epochs``, a line every tenth of the run and at most one every
            5 s between), a progress callback (e.g. ``ProgressLines(every_n_epochs=100)``), or ``None``.
        accelerator, devices: Lightning's (one device by default).
        callbacks: more Lightning callbacks.
        trainer_options: any other ``Trainer`` argument under Lightning's name, e.g. ``limit_val_batches=0``
            (no validation), ``check_val_every_n_epoch``, ``log_every_n_steps``, ``gradient_clip_val``,
            ``precision``, ``strategy``, ``deterministic``. hnnlab's defaults: ``inference_mode=False``,
            ``use_distributed_sampler=False``, ``num_sanity_val_steps=0``, ``enable_model_summary=False``.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar

    from hnnlab.training.callbacks import HnnlabCheckpoint
    from hnnlab.training.resume import ExactResumeFitLoop

    for lightning_name, ours in _REPLACED.items():
        if lightning_name in trainer_options:
            raise InvalidArgumentError(f"build_trainer: pass {ours}=..., not {lightning_name}=...")
    extra: list[Any] = list(callbacks or [])
    if checkpoint is True:
        extra.append(HnnlabCheckpoint(save_last=True, save_top_k=0))
    elif isinstance(checkpoint, str | os.PathLike):
        extra.append(HnnlabCheckpoint(dirpath=Path(checkpoint), save_last=True, save_top_k=0))
    elif isinstance(checkpoint, ModelCheckpoint):
        extra.append(checkpoint)
    elif checkpoint is not False and checkpoint is not None:
        raise InvalidArgumentError(
            f"checkpoint must be True, False, a directory or a ModelCheckpoint, got {checkpoint!r}"
        )
    bar = any(isinstance(cb, ProgressBar) for cb in extra)
    if not bar and progress is not None:
        display = _progress_callback(progress)
        extra.append(display)
        bar = isinstance(display, ProgressBar)
    options = {**TRAINER_DEFAULTS, **PYTHON_DEFAULTS, **trainer_options}
    trainer = pl.Trainer(
        max_steps=max_steps,
        max_epochs=max_epochs,
        default_root_dir=None if run_dir is None else os.fspath(run_dir),
        logger=logger,
        accelerator=accelerator,
        devices=devices,
        enable_checkpointing=any(isinstance(cb, ModelCheckpoint) for cb in extra),
        enable_progress_bar=bar,
        callbacks=extra,
        **options,
    )
    ExactResumeFitLoop.install(trainer)  # resume at the checkpoint's position (hnnlab.training.resume)
    return trainer


def interactive() -> bool:
    """Whether progress goes to a terminal a person watches (not CI, a log file or a notebook)."""
    return sys.stdout.isatty() and not os.environ.get("CI")


def _progress_callback(progress: str | pl.Callback) -> pl.Callback:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import RichProgressBar

    from hnnlab.training.progress import ProgressLines

    if isinstance(progress, pl.Callback):
        return progress
    if progress not in PROGRESS_CHOICES:
        raise InvalidArgumentError(
            f"progress must be one of {', '.join(PROGRESS_CHOICES)}, a progress callback or None, got {progress!r}"
        )
    if progress == "bar" or (progress == "auto" and interactive()):
        return RichProgressBar()
    return ProgressLines()
