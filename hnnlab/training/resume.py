"""Exact resume: a run resumed from any of its checkpoints gives the uninterrupted run's weights bit for bit,
whether it stops at ``max_steps`` or at ``max_epochs``.

hnnlab's train order is a function of ``(seed, epoch)`` (:class:`~hnnlab.data.datamodule.EpochBatchSampler`),
so exactness is a matter of restarting the loop at the position the checkpoint was taken: epoch ``e``, with
``b`` of its batches done. Lightning (2.6) gets that position wrong in three cases, each measured:

- with ``max_steps`` every resume counts as "restarting" (``_FitLoop._iteration_based_training``). A
  checkpoint written at the end of a training epoch then re-enters the finished epoch, and its epoch loop,
  waiting for a validation that is not due, trains one more batch (from the next epoch's order) inside it:
  the weights differ from the uninterrupted run, and the epoch counter lags the step counter by one (a
  full-batch run names its checkpoint ``epoch=249-step=251``);
- a checkpoint written at the end of an epoch (``on_train_epoch_end``, ``on_validation_end``) is taken
  before the epoch's learning-rate scheduler step, and a resume skips that step;
- a run stopped by ``max_steps`` in the middle of an epoch is recorded as having finished that epoch, so a
  resume to more steps starts the next epoch and never trains the rest of it (nor can Lightning skip the
  batches already trained without a stateful data loader).

:class:`ExactResumeFitLoop` reads the loop state of a checkpoint as the position ``(e, b)`` and loads the
state Lightning itself would hold there: at an epoch boundary, a finished epoch (the scheduler step still
to take is taken); in the middle of an epoch, epoch ``e`` in progress with ``b`` batches done, and the
first ``b`` batches of epoch ``e``'s order drawn from the loader and dropped before training resumes.
:func:`hnnlab.training.runner.build_trainer` installs it on every hnnlab trainer.

Not exact: ``ReduceLROnPlateau`` (its metric is not in the checkpoint) and gradient accumulation.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loops.fit_loop import _FitLoop
from lightning.pytorch.loops.loop import _Loop

_COUNTERS = ("ready", "started", "processed", "completed")


class ExactResumeFitLoop(_FitLoop):
    """Lightning's fit loop, restarting from a checkpoint at the position it was taken (module docstring)."""

    def __init__(self, trainer: pl.Trainer, min_epochs: int | None = None, max_epochs: int | None = None) -> None:
        super().__init__(trainer, min_epochs=min_epochs, max_epochs=max_epochs)
        self._scheduler_step_pending = False
        self._batches_to_skip = 0
        self._skipped = False

    @classmethod
    def install(cls, trainer: pl.Trainer) -> None:
        """Replace ``trainer.fit_loop`` by this loop (same limits, same epoch loop)."""
        old = trainer.fit_loop
        if isinstance(old, cls):
            return
        loop = cls(trainer, min_epochs=old.min_epochs, max_epochs=old.max_epochs)
        loop.epoch_loop = old.epoch_loop
        trainer.fit_loop = loop

    # Lightning forces ``restarting`` for every step-bounded run; here only an unfinished epoch restarts.
    @_FitLoop.restarting.setter  # type: ignore[attr-defined]
    def restarting(self, restarting: bool) -> None:
        current = self.epoch_progress.current
        epoch_unfinished = current.ready != current.processed or current.started != current.processed
        _Loop.restarting.fset(self, restarting and epoch_unfinished)

    def load_state_dict(self, state_dict: dict, prefix: str = "") -> None:
        state, self._scheduler_step_pending, self._batches_to_skip = at_position(state_dict, prefix)
        super().load_state_dict(state, prefix)

    def reset(self) -> None:
        if self._scheduler_step_pending:
            # The checkpoint was taken at the end of epoch ``current_epoch``, before its scheduler step.
            self._scheduler_step_pending = False
            self.epoch_loop._update_learning_rates("epoch", update_plateau_schedulers=False)
        super().reset()

    def advance(self) -> None:
        with warnings.catch_warnings():
            if self._skipped:  # Lightning warns that it cannot skip the trained batches; on_advance_start did
                self._skipped = False
                warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
            super().advance()

    def on_advance_start(self) -> None:
        super().on_advance_start()  # the sampler's epoch is set here; the loader's iterator is still lazy
        skip, self._batches_to_skip = self._batches_to_skip, 0
        self._skipped = skip > 0
        if skip:
            assert self._data_fetcher is not None
            iterator = self._data_fetcher.iterator
            for _ in range(skip):  # the batches of this epoch that the checkpoint had trained already
                next(iterator)


def at_position(state_dict: dict, prefix: str = "") -> tuple[dict, bool, int]:
    """A fit loop's saved state, rewritten as the state of the position it was taken at.

    Returns ``(state, scheduler_step_pending, batches_to_skip)``: the rewritten state (a copy), whether the
    epoch-interval schedulers still have to step for the epoch that ended, and how many batches of the
    epoch in progress were trained already (0 at an epoch boundary).
    """
    state = copy.deepcopy(state_dict)
    epoch_key, batch_key = f"{prefix}epoch_progress", f"{prefix}epoch_loop.batch_progress"
    stepped_key = f"{prefix}epoch_loop.state_dict"
    if epoch_key not in state or batch_key not in state:
        return state, False, 0
    epochs, batches = state[epoch_key], state[batch_key]
    started = int(epochs["total"]["started"])  # epochs begun; the one in progress (or last) is started - 1
    processed, completed = int(epochs["total"]["processed"]), int(epochs["total"]["completed"])
    done = int(batches["current"]["processed"])  # batches trained in that epoch
    inside_epoch_loop = processed < started  # saved from a batch-end or validation-end hook
    if inside_epoch_loop and stepped_key in state:
        # Lightning counts a batch as stepped (for logging) after these hooks have run.
        stepped = state[stepped_key]
        stepped["_batches_that_stepped"] = int(stepped.get("_batches_that_stepped", 0)) + 1
    total_batches = int(batches["total"]["processed"])
    batches["total"] = {k: total_batches for k in _COUNTERS}
    if bool(batches.get("is_last_batch")) or done == 0:
        # An epoch boundary: ``started`` epochs finished, no batch of the next one trained.
        pending = bool(batches.get("is_last_batch")) and completed < started
        _set(epochs, {"ready": started, "started": started, "processed": started,
                      "completed": started - 1 if pending else started})
        batches["current"] = {k: 0 for k in _COUNTERS}
        batches["is_last_batch"] = False
        return state, pending, 0
    # In the middle of epoch ``started - 1``, ``done`` batches trained (a batch-end save, or the end of a
    # run stopped by max_steps, which Lightning records as a finished epoch).
    _set(epochs, {"ready": started, "started": started, "processed": started - 1, "completed": started - 1})
    batches["current"] = {k: done for k in _COUNTERS}
    batches["is_last_batch"] = False
    return state, False, done


def _set(progress: dict[str, Any], values: dict[str, int]) -> None:
    for part in ("total", "current"):
        progress[part] = dict(values)
