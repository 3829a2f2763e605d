"""Programmatic training with Lightning, for the demo and the reproductions.

``hnnlab fit`` (LightningCLI) is the way to train from config files; :func:`train` is the same
trainer set-up from Python: CPU or the available accelerator, no inference mode (models differentiate
their energy with respect to the state), hnnlab's own sampler, last-weights checkpoints, plain progress
lines, and an optional W&B logger.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's banners, tips and the warnings hnnlab knows to be harmless."""
    from hnnlab.training.cli import QUIET_WARNINGS

    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        logger.setLevel(level)


def build_trainer(
    *,
    max_steps: int,
    checkpoint_dir: str | Path | None,
    logger: Any = False,
    val_every_n_epochs: int | None = None,
    progress_every_n_epochs: int | None = None,
    log_every_n_steps: int = 50,
    accelerator: str = "cpu",
    gradient_clip_val: float | None = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """A ``lightning.pytorch.Trainer`` for ``max_steps`` optimizer steps.

    Args:
        checkpoint_dir: where the last weights are saved (``last.ckpt``); ``None`` saves nothing.
        logger: a Lightning logger, or ``False``.
        val_every_n_epochs: validation frequency; ``None`` skips validation.
        progress_every_n_epochs: print a plain progress line this often (``None``: never).
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from hnnlab.training.callbacks import PlainProgressLog

    extra: list[Any] = list(callbacks or [])
    if checkpoint_dir is not None:
        extra.append(ModelCheckpoint(dirpath=Path(checkpoint_dir), save_last=True, save_top_k=0))
    if progress_every_n_epochs is not None:
        extra.append(PlainProgressLog(every_n_epochs=progress_every_n_epochs))
    return pl.Trainer(
        max_steps=max_steps,
        max_epochs=-1,
        accelerator=accelerator,
        devices=1,
        logger=logger,
        inference_mode=False,
        use_distributed_sampler=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=checkpoint_dir is not None,
        num_sanity_val_steps=0,
        limit_val_batches=None if val_every_n_epochs is not None else 0,
        check_val_every_n_epoch=val_every_n_epochs or 1,
        log_every_n_steps=log_every_n_steps,
        gradient_clip_val=gradient_clip_val,
        callbacks=extra,
    )


def train(module: Any, datamodule: Any, **trainer_kwargs: Any) -> tuple[Any, float]:
    """Fit ``module`` on ``datamodule`` with :func:`build_trainer`; returns ``(trainer, seconds)``."""
    with quiet_lightning():
        trainer = build_trainer(**trainer_kwargs)
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        return trainer, time.perf_counter() - start
