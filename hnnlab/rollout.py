"""The one time loop: batched rollouts of any vector field with any integrator.

``rollout(f, integrator, x0, dt, n_steps, save_every=1)`` returns the states at steps
``0, save_every, 2 * save_every, ...`` (the initial state included), shape
``(batch, n_steps // save_every + 1, 2 * dof)``. Only saved states are kept, so memory does not grow
with the number of steps beyond what is returned; :func:`iter_rollout` yields the same states in
chunks for streaming to disk, so memory stays constant.

Rollouts stop with :class:`~hnnlab.errors.NonFiniteStateError` naming the first step and trajectory
whose state turned NaN or infinite. Finiteness is checked every ``check_every`` steps (one device
synchronisation each); when a check fails, the steps since the last good check are replayed one at a
time to find the exact first bad step.

The steps come from the integrator's ``_steps`` (the same states as calling ``step`` in a loop; leapfrog
and the other splitting methods reuse the last force of a step as the first of the next). When the
first step's result does not require grad (nothing upstream does), the rest of the loop runs under
``torch.no_grad``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import nullcontext

import torch
from torch import Tensor

from hnnlab.dynamics import check_state
from hnnlab.errors import InvalidArgumentError, NonFiniteStateError
from hnnlab.integrators.base import AbstractIntegrator, VectorField, check_dt
from hnnlab.integrators.registry import get_integrator

PROGRESS_MIN_STEPS = 10_000


def rollout(
    f: VectorField,
    integrator: AbstractIntegrator | str,
    x0: Tensor,
    dt: float,
    n_steps: int,
    save_every: int = 1,
    *,
    t0: float = 0.0,
    check_every: int = 32,
    progress: bool | None = None,
) -> Tensor:
    """Integrate ``dx/dt = f(t, x)`` from ``x0`` for ``n_steps`` steps of size ``dt``.

    Args:
        f: vector field ``f(t, x) -> dx/dt`` on ``(batch, 2 * dof)`` states (a system, a model, or
            any callable).
        integrator: an integrator or its registered name.
        x0: initial states ``(batch, 2 * dof)`` (or ``(2 * dof,)``, then the result has no batch axis).
        dt: step size, ``> 0``.
        n_steps: number of steps, ``>= 0``.
        save_every: keep every ``save_every``-th state; steps ``0, k, 2k, ... <= n_steps`` are kept.
        t0: initial time.
        check_every: steps between finiteness checks.
        progress: show a progress bar; ``None`` shows one on long runs in an interactive terminal.

    Returns:
        ``(batch, n_steps // save_every + 1, 2 * dof)`` states, in ``x0``'s dtype and device.
        Differentiable with respect to ``x0`` and the parameters of ``f`` when gradients are enabled.
    """
    unbatched = isinstance(x0, Tensor) and x0.ndim == 1
    x0 = x0[None] if unbatched else x0
    integrator = _validate(f, integrator, x0, dt, n_steps, save_every, chunk_size=1, check_every=check_every)
    n_saved = n_steps // save_every + 1
    (states,) = _saved_states(
        f, integrator, x0, float(dt), n_steps, save_every, float(t0), n_saved, check_every, progress
    )
    out = torch.stack(states, dim=1)  # (batch, saved_times, 2 * dof): one copy of each saved state
    return out[0] if unbatched else out


def iter_rollout(
    f: VectorField,
    integrator: AbstractIntegrator | str,
    x0: Tensor,
    dt: float,
    n_steps: int,
    save_every: int = 1,
    *,
    t0: float = 0.0,
    chunk_size: int = 256,
    check_every: int = 32,
    progress: bool | None = None,
) -> Iterator[Tensor]:
    """Like :func:`rollout`, but yields the saved states in chunks ``(batch, <= chunk_size, 2 * dof)``.

    The first chunk starts with ``x0``. All arguments are validated before the first step runs.
    """
    integrator = _validate(f, integrator, x0, dt, n_steps, save_every, chunk_size=chunk_size, check_every=check_every)
    chunks = _saved_states(
        f, integrator, x0, float(dt), n_steps, save_every, float(t0), chunk_size, check_every, progress
    )
    return (torch.stack(chunk, dim=1) for chunk in chunks)  # each (batch, <= chunk_size, 2 * dof)


def _validate(
    f: VectorField,
    integrator: AbstractIntegrator | str,
    x0: Tensor,
    dt: float,
    n_steps: int,
    save_every: int,
    *,
    chunk_size: int,
    check_every: int,
) -> AbstractIntegrator:
    """Check every argument (and the integrator/field pair) before any step runs."""
    integrator = get_integrator(integrator)
    check_dt(dt)
    _check_count("n_steps", n_steps, minimum=0)
    _check_count("save_every", save_every, minimum=1)
    _check_count("chunk_size", chunk_size, minimum=1)
    _check_count("check_every", check_every, minimum=1)
    check_state(x0, name="x0")
    if x0.ndim != 2:
        raise InvalidArgumentError(f"x0 must have shape (batch, 2 * dof), got shape {tuple(x0.shape)}")
    dof = getattr(f, "dof", None) or getattr(getattr(f, "__self__", None), "dof", None)
    if isinstance(dof, int) and x0.shape[-1] != 2 * dof:
        raise InvalidArgumentError(
            f"x0 must have last dimension 2 * dof = {2 * dof} for this vector field, got shape {tuple(x0.shape)}"
        )
    integrator.check_compatible(f)
    return integrator


def _saved_states(
    f: VectorField,
    integrator: AbstractIntegrator,
    x0: Tensor,
    dt: float,
    n_steps: int,
    save_every: int,
    t0: float,
    chunk_size: int,
    check_every: int,
    progress: bool | None,
) -> Iterator[list[Tensor]]:
    """The saved states, ``x0`` first, in lists of at most ``chunk_size`` states ``(batch, 2 * dof)``."""
    show = progress if progress is not None else (n_steps >= PROGRESS_MIN_STEPS and sys.stderr.isatty())
    bar = _progress_bar(n_steps) if show else nullcontext(None)
    states = integrator._steps(f, t0, x0, dt, n_steps)
    # Once the first step shows that its result needs no graph (nothing upstream requires grad), the
    # remaining steps run under no_grad: the same values without autograd bookkeeping. The mode is set
    # only while this generator computes, never while the caller holds a chunk.
    graph_free = not torch.is_grad_enabled()
    chunk: list[Tensor] = [x0]  # saved states, each (batch, 2 * dof)
    good_x, good_step = x0, 0
    step = 0
    with bar as bar_task:
        while step < n_steps:
            with torch.no_grad() if graph_free else nullcontext():
                while step < n_steps and len(chunk) < chunk_size:
                    x = next(states)
                    step += 1
                    if step % check_every == 0 or step == n_steps:
                        if not bool(torch.isfinite(x).all()):
                            _raise_first_nonfinite(f, integrator, good_x, good_step, step, dt, t0)
                        good_x, good_step = x, step
                        if bar_task is not None:
                            bar_task.update(step)
                    if step % save_every == 0:
                        chunk.append(x)
                    if not graph_free and not x.requires_grad:
                        graph_free = True
                        break
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _raise_first_nonfinite(
    f: VectorField, integrator: AbstractIntegrator, x: Tensor, start: int, stop: int, dt: float, t0: float
) -> None:
    """Replay steps ``start + 1 .. stop`` from the last good state and raise at the first bad one."""
    with torch.no_grad():
        for step in range(start + 1, stop + 1):
            x = integrator._step(f, t0 + (step - 1) * dt, x, dt)
            finite = torch.isfinite(x).all(dim=-1)
            if not bool(finite.all()):
                traj = int(torch.nonzero(~finite)[0])
                time = t0 + step * dt
                raise NonFiniteStateError(
                    f"rollout became non-finite (NaN or inf) at step {step} (t = {time:.6g}) in trajectory "
                    f"{traj} of {x.shape[0]}; the step size may be too large for this system "
                    f"(dt = {dt:g}, integrator {integrator.name!r}) or the model may be unstable",
                    step=step,
                    trajectory=traj,
                    time=time,
                )
    raise NonFiniteStateError(  # the replay was finite: f is not deterministic
        f"rollout became non-finite between steps {start + 1} and {stop}",
        step=stop,
        trajectory=-1,
        time=t0 + stop * dt,
    )


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")


class _Bar:
    """A rich progress bar over steps, used as a context manager."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._progress = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), transient=True,
        )
        self._total = total
        self._task = None

    def __enter__(self) -> _Bar:
        self._progress.start()
        self._task = self._progress.add_task("rollout", total=self._total)
        return self

    def update(self, completed: int) -> None:
        self._progress.update(self._task, completed=completed)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


def _progress_bar(total: int) -> _Bar:
    return _Bar(total)
