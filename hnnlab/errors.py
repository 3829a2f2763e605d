"""Exceptions raised by hnnlab for user mistakes and numerical failures.

Every error a user can trigger derives from :class:`HnnlabError`, so scripts can catch them in one place.
They also derive from the matching builtin (``ValueError``, ``RuntimeError``, ...) so that generic
handlers keep working.
"""

from __future__ import annotations


class HnnlabError(Exception):
    """Base class of all hnnlab errors."""


class UnknownNameError(HnnlabError, ValueError):
    """A registry name (system, integrator, recipe, ...) that does not exist."""


class InvalidArgumentError(HnnlabError, ValueError):
    """An argument with a value that is not allowed (``dt <= 0``, a wrongly shaped state, ...)."""


class IncompatibleIntegratorError(HnnlabError, ValueError):
    """An integrator paired with a vector field whose structure it cannot handle."""


class ConvergenceError(HnnlabError, RuntimeError):
    """An implicit solver that did not converge within its iteration cap."""


class NonFiniteStateError(HnnlabError, FloatingPointError):
    """A state that became NaN or infinite during a rollout.

    Attributes:
        step: index of the first step whose result is non-finite (1 = the first step taken).
        trajectory: index in the batch of the first trajectory that became non-finite at that step.
        time: the time at the end of that step.
    """

    def __init__(self, message: str, *, step: int, trajectory: int, time: float) -> None:
        super().__init__(message)
        self.step = step
        self.trajectory = trajectory
        self.time = time


class FileFormatError(HnnlabError, ValueError):
    """A file (dataset, rollout, checkpoint) that is missing, unreadable, or does not follow its spec.

    The message names the file and the field. Subclasses: ``hnnlab.data.DatasetError``,
    ``hnnlab.rollout_io.RolloutFileError``, ``hnnlab.training.checkpoint.CheckpointError``.
    """
