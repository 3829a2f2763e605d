"""The one time loop: batched solves of any vector field with any integrator.

Every stepping of a vector field in hnnlab (simulation, rollout losses, evaluation, reproductions, audits,
benchmarks) goes through :func:`solve`:

``solve(f, integrator, x0, dt, n_steps, save_every=1)`` returns a :class:`Solution` with the states at steps
``0, save_every, 2 * save_every, ..., n_steps`` (``ys``, ``(batch, n_steps // save_every + 1, 2 * dof)``), their
times ``ts``, a per-trajectory ``status`` (:class:`Status`: ok, non-finite, not converged), the first bad step of
each trajectory (``-1`` when none) and ``stats`` (steps, field evaluations). With ``on_nonfinite="mask"`` (the
default) a trajectory whose state turns NaN or infinite, or whose implicit or adaptive solve fails, is frozen: its
later saved states are NaN while the rest of the batch goes on to the horizon, at full speed (the live rows are
stepped alone). ``on_nonfinite="raise"`` raises :class:`~hnnlab.errors.NonFiniteStateError` naming the first bad
step and trajectory (or the implicit method's :class:`~hnnlab.errors.ConvergenceError`).

:func:`rollout` (returns the states, raises) and :func:`iter_rollout` (yields them in chunks for streaming to disk,
raises) are thin forms of the same loop.

Finiteness is checked every ``check_every`` steps (one device synchronisation each); when a check finds bad
trajectories, the steps since the last good check are replayed, for those trajectories alone, one at a time,
to find each one's exact first bad step. Solver state between steps (the first-same-as-last force of the
splitting methods, the per-trajectory step sizes of the adaptive ones) is carried by the integrator's
``advance``. When the first step's result does not require grad (nothing upstream does), the rest of the loop
runs under ``torch.no_grad``. Memory holds only what is returned (or one chunk, streaming).

Time-dependent fields ``f(t, x)`` are stepped as they are; a field that differs between trajectories (driven by
per-trajectory inputs, :class:`hnnlab.inputs.DrivenField`) is bound to every step it takes and to the rows it steps
(:func:`hnnlab.fields.bind_step`), so that row ``i`` of a live subset is always evaluated with its own trajectory's
inputs, on the piece of the input that covers the step (one-sided at the step's ends); where the field may jump (the
sample times of a zero-order hold) the integrator restarts (``restart``: field values kept from the last step are
recomputed), so no stage ever mixes the two sides of a jump. See :mod:`hnnlab.inputs`.
"""

from __future__ import annotations

import enum
import math
import numbers
import sys
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from hnnlab.compiled import check_compilable, chunk_plan, compiled_steps, default_steps, step_times
from hnnlab.dynamics import check_state
from hnnlab.errors import InvalidArgumentError, NonFiniteStateError
from hnnlab.fields import bind_step, counted, declared_dof, jumps_at
from hnnlab.integrators.base import AbstractIntegrator, SolverState, VectorField, check_dt
from hnnlab.integrators.registry import get_integrator

PROGRESS_MIN_STEPS = 10_000
OnNonfinite = Literal["mask", "raise"]
ON_NONFINITE: tuple[str, ...] = ("mask", "raise")


class Status(enum.IntEnum):
    """What happened to one trajectory of a solve."""

    OK = 0
    NONFINITE = 1  # its state turned NaN or infinite
    NOT_CONVERGED = 2  # its implicit or adaptive step failed


@dataclass
class Solution:
    """The result of :func:`solve`.

    Attributes:
        ts: saved times ``(n_saved,)``, float64.
        ys: saved states ``(batch, n_saved, 2 * dof)`` in ``x0``'s dtype; NaN from a bad trajectory's first bad
            step on.
        status: ``(batch,)`` int8 codes of :class:`Status`.
        first_bad_step: ``(batch,)`` int64, the first step whose result was bad (1 = the first step), ``-1``
            where the trajectory is ok.
        stats: ``steps`` (steps of the loop), ``field_evaluations`` (calls of the field, each on the live rows
            of the batch; a half field counts 0.5), ``replayed_steps`` (steps taken again to locate failures), and
            the integrator's per-trajectory counters (``internal_steps`` ``(batch,)`` of the adaptive methods).
    """

    ts: Tensor
    ys: Tensor
    status: Tensor
    first_bad_step: Tensor
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> Tensor:
        """``(batch,)`` bool, the trajectories that reached the horizon."""
        return self.status == Status.OK

    @property
    def all_ok(self) -> bool:
        return bool(self.ok.all())


def solve(
    f: VectorField,
    integrator: AbstractIntegrator | str,
    x0: Tensor,
    dt: float,
    n_steps: int,
    save_every: int = 1,
    *,
    t0: float = 0.0,
    on_nonfinite: OnNonfinite = "mask",
    check_every: int = 32,
    progress: bool | None = None,
    description: str = "rollout",
    compile: bool = False,
    compile_steps: int | None = None,
) -> Solution:
    """Integrate ``dx/dt = f(t, x)`` from ``x0`` for ``n_steps`` steps of size ``dt``.

    Args:
        f: vector field ``f(t, x) -> dx/dt`` on ``(batch, 2 * dof)`` states (a system, a model, or
            any callable).
        integrator: an integrator or its registered name.
        x0: initial states ``(batch, 2 * dof)`` (or ``(2 * dof,)``, then ``ys`` has no batch axis).
        dt: step size, ``> 0``.
        n_steps: number of steps, ``>= 0``; when ``save_every`` does not divide it, the solve stops at the last
            multiple and warns (:func:`steps_to_save`).
        save_every: keep every ``save_every``-th state; steps ``0, k, 2k, ..., n_steps`` are kept.
        t0: initial time.
        on_nonfinite: ``"mask"`` (freeze bad trajectories, go on with the others) or ``"raise"``.
        check_every: steps between finiteness checks.
        progress: show a progress bar; ``None`` shows one on long runs in an interactive terminal.
        description: the progress bar's label.
        compile: step in chunks through one ``torch.compile``d function per chunk length (:mod:`hnnlab.compiled`):
            explicit fixed-step methods only, no gradients, finiteness checked every ``check_every`` steps rounded
            up to whole chunks; the first call of a new (field, method, ``dt``, chunk length) compiles (seconds to
            minutes).
        compile_steps: steps per compiled call; ``None``: about 64 field evaluations per call.

    Returns:
        A :class:`Solution`. ``ys`` is differentiable with respect to ``x0`` and the parameters of ``f`` when
        gradients are enabled (not with ``compile``).
    """
    return _solve(f, integrator, x0, dt, n_steps, save_every, t0, on_nonfinite, check_every, progress, description,
                  compile=compile, compile_steps=compile_steps)


def _solve(
    f: VectorField, integrator: AbstractIntegrator | str, x0: Tensor, dt: float, n_steps: int, save_every: int,
    t0: float, on_nonfinite: str, check_every: int, progress: bool | None, description: str, *, count: bool = True,
    compile: bool = False, compile_steps: int | None = None,
) -> Solution:
    """:func:`solve`; without ``count`` the field's evaluations are not counted (``field_evaluations`` is
    ``None``), for :func:`rollout`, which returns the states alone."""
    unbatched = isinstance(x0, Tensor) and x0.ndim == 1
    x0 = x0[None] if unbatched else x0
    loop = _start(f, integrator, x0, dt, n_steps, save_every, t0, on_nonfinite, 1, check_every, count,
                  compile, compile_steps)
    chunks = list(loop.run(chunk_size=loop.n_steps // save_every + 1, progress=progress, description=description))
    ys = torch.cat(chunks, dim=1) if len(chunks) > 1 else chunks[0]  # (batch, n_saved, 2 * dof)
    solution = loop.solution(ys)
    if unbatched:
        solution.ys = solution.ys[0]
    return solution


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
    compile: bool = False,
    compile_steps: int | None = None,
) -> Tensor:
    """The states of :func:`solve` with ``on_nonfinite="raise"``: ``(batch, n_steps // save_every + 1, 2 * dof)``
    (no batch axis for an unbatched ``x0``), in ``x0``'s dtype and device. ``compile`` and ``compile_steps`` as in
    :func:`solve`."""
    return _solve(f, integrator, x0, dt, n_steps, save_every, t0, "raise", check_every, progress, "rollout",
                  count=False, compile=compile, compile_steps=compile_steps).ys


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
    description: str = "rollout",
    compile: bool = False,
    compile_steps: int | None = None,
) -> Iterator[Tensor]:
    """Like :func:`rollout`, but yields the saved states in chunks ``(batch, <= chunk_size, 2 * dof)``.

    The first chunk starts with ``x0``. All arguments are validated before the first step runs; a chunk is
    yielded only once all its states have passed the finiteness check. ``compile`` and ``compile_steps`` as in
    :func:`solve`.
    """
    loop = _start(f, integrator, x0, dt, n_steps, save_every, t0, "raise", chunk_size, check_every, False,
                  compile, compile_steps)
    return iter(SolveStream(loop, chunk_size, progress, description))


class SolveStream:
    """The chunks of a streaming :func:`iter_solve`; once exhausted, :meth:`result` gives the :class:`Solution`
    without its states (``ys`` is empty, ``(batch, 0, 2 * dof)``)."""

    def __init__(self, loop: _Loop, chunk_size: int, progress: bool | None, description: str) -> None:
        self._loop = loop
        self._chunks = loop.run(chunk_size=chunk_size, progress=progress, description=description)
        self._done = False

    def __iter__(self) -> Iterator[Tensor]:
        yield from self._chunks
        self._done = True

    def result(self) -> Solution:
        if not self._done:
            raise InvalidArgumentError("SolveStream.result() needs every chunk to have been read first")
        return self._loop.solution(self._loop.x0[:, None, :][:, :0])  # ys: the stream kept none, (batch, 0, 2 dof)


def iter_solve(
    f: VectorField,
    integrator: AbstractIntegrator | str,
    x0: Tensor,
    dt: float,
    n_steps: int,
    save_every: int = 1,
    *,
    t0: float = 0.0,
    on_nonfinite: OnNonfinite = "mask",
    chunk_size: int = 256,
    check_every: int = 32,
    progress: bool | None = None,
    description: str = "rollout",
    compile: bool = False,
    compile_steps: int | None = None,
) -> SolveStream:
    """:func:`solve` streamed: iterate for the saved states in chunks ``(batch, <= chunk_size, 2 * dof)`` (the
    first starts with ``x0``; a bad trajectory's states are NaN from its first bad step), then call
    ``result()`` for the status, first bad steps and stats. Validates everything before the first step.
    ``compile`` and ``compile_steps`` as in :func:`solve`."""
    loop = _start(f, integrator, x0, dt, n_steps, save_every, t0, on_nonfinite, chunk_size, check_every, True,
                  compile, compile_steps)
    return SolveStream(loop, chunk_size, progress, description)


def _start(
    f: VectorField, integrator: AbstractIntegrator | str, x0: Tensor, dt: float, n_steps: int, save_every: int,
    t0: float, on_nonfinite: str, chunk_size: int, check_every: int, count: bool, compile: bool = False,
    compile_steps: int | None = None,
) -> _Loop:
    """The loop of one solve, once every argument (and the integrator/field pair) has been checked, before any
    step runs; it runs the steps :func:`steps_to_save` allows. Every entry point (:func:`solve`, :func:`rollout`,
    :func:`iter_solve`, :func:`iter_rollout`) starts here."""
    integrator = get_integrator(integrator)
    check_dt(dt)
    n_steps = check_count("n_steps", n_steps, minimum=0)
    save_every = check_count("save_every", save_every, minimum=1)
    chunk_size = check_count("chunk_size", chunk_size, minimum=1)
    check_every = check_count("check_every", check_every, minimum=1)
    if isinstance(t0, bool) or not isinstance(t0, numbers.Real) or not math.isfinite(t0):
        raise InvalidArgumentError(f"t0 must be a finite number, got {t0!r}")
    if on_nonfinite not in ON_NONFINITE:
        raise InvalidArgumentError(
            f"on_nonfinite must be one of {', '.join(map(repr, ON_NONFINITE))}, got {on_nonfinite!r}"
        )
    check_state(x0, name="x0")
    if x0.ndim != 2:
        raise InvalidArgumentError(f"x0 must have shape (batch, 2 * dof), got shape {tuple(x0.shape)}")
    dof = declared_dof(f)
    if dof is not None and x0.shape[-1] != 2 * dof:
        raise InvalidArgumentError(
            f"x0 must have last dimension 2 * dof = {2 * dof} for this vector field, got shape {tuple(x0.shape)}"
        )
    integrator.check_compatible(f)
    compile_steps = check_compilable(compile, compile_steps, f, integrator, x0)
    n_steps = steps_to_save(n_steps, save_every)
    return _Loop(f, integrator, x0, float(dt), n_steps, save_every, float(t0), check_every, on_nonfinite, count,
                 compile_steps)


def check_count(name: str, value: object, *, minimum: int) -> int:
    """``value`` as an ``int``; a clear error unless it is an integer (``int`` or a NumPy integer, not a bool)
    ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class SaveEveryWarning(UserWarning):
    """A step count that ``save_every`` does not divide: the solve stops at the last multiple."""


def steps_to_save(n_steps: int, save_every: int, *, names: tuple[str, str] = ("n_steps", "save_every")) -> int:
    """The steps a solve runs: ``n_steps`` when ``save_every`` divides it, else the last multiple of
    ``save_every`` below it, with a :class:`SaveEveryWarning` that says so (steps after the last saved state
    would be computed and never kept). Every command that takes both counts goes through this rule."""
    below = n_steps - n_steps % save_every
    if below != n_steps:
        warnings.warn(
            f"{names[0]} = {n_steps} is not a multiple of {names[1]} = {save_every}: running {below} steps (the last "
            f"saved state); use {names[0]} = {below} or {below + save_every} to silence this",
            SaveEveryWarning,
            stacklevel=3,
        )
    return below


_WORDS: dict[int, torch.dtype] = {2: torch.int16, 4: torch.int32, 8: torch.int64}  # an integer type by size


def _stack_in_time(states: list[Tensor]) -> Tensor:
    """``torch.stack(states, dim=1)``, ``(batch, n, 2 * dof)``, the same bits, faster for small states: when a
    state row is 2, 4 or 8 bytes (``2 * dof`` float32 numbers with ``dof = 1``), the states are stacked in time
    first (contiguous copies) and transposed as one matrix of such words (a blocked transpose), instead of a
    strided copy of a few bytes per row and state."""
    first = states[0]
    word = _WORDS.get(first.shape[-1] * first.element_size())
    if (word is None or first.ndim != 2 or len(states) < 2 or not all(s.is_contiguous() for s in states)
            or any(s.requires_grad for s in states)):  # an integer view has no gradient: keep the graph
        return torch.stack(states, dim=1)
    by_time = torch.stack(states, dim=0).view(word).squeeze(-1)  # (n, batch) words
    return by_time.t().contiguous().unsqueeze(-1).view(first.dtype)  # (batch, n, 2 * dof)


def _take(state: SolverState, rows: Tensor) -> SolverState:
    """The rows ``rows`` of a solver state (``None``, a tensor, or a tuple of them, batch first)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state[rows]
    return tuple(_take(s, rows) for s in state)


class _Loop:
    """One solve: the live rows of the batch, their solver state, and the per-trajectory bookkeeping."""

    def __init__(
        self, f: VectorField, integrator: AbstractIntegrator, x0: Tensor, dt: float, n_steps: int,
        save_every: int, t0: float, check_every: int, on_nonfinite: str, count: bool = True,
        compile_steps: int | None = None,
    ) -> None:
        self.counter = counted(f) if count else None
        self.compile_steps = compile_steps  # None: the eager loop; 0: compiled chunks of the default length
        self.f = f if self.counter is None else self.counter
        self.integrator = integrator
        self.x0 = x0
        self.dt, self.n_steps, self.save_every, self.t0 = dt, n_steps, save_every, t0
        self.check_every = check_every
        self.raise_ = on_nonfinite == "raise"
        batch = x0.shape[0]
        self.status = torch.zeros(batch, dtype=torch.int8)
        self.first_bad = torch.full((batch,), -1, dtype=torch.long)
        self.live: Tensor | None = None  # indices of the live rows, None while all are live
        self.replayed = 0
        self.row_stats: dict[str, Tensor] = {}  # whole-batch per-trajectory counters of the integrator

    def _full(self, x: Tensor) -> Tensor:
        """A live-row state as a whole-batch state ``(batch, 2 * dof)``, NaN in the frozen rows."""
        if self.live is None:
            return x
        out = torch.full_like(self.x0, math.nan)
        return out.index_put((self.live.to(x.device),), x)

    def run(self, *, chunk_size: int, progress: bool | None, description: str) -> Iterator[Tensor]:
        """The saved states, ``x0`` first, in chunks ``(batch, <= chunk_size, 2 * dof)``."""
        if self.compile_steps is not None:
            yield from self._run_compiled(chunk_size=chunk_size, progress=progress, description=description)
            return
        n_steps, dt, t0 = self.n_steps, self.dt, self.t0
        show = progress if progress is not None else (n_steps >= PROGRESS_MIN_STEPS and sys.stderr.isatty())
        bar = _Bar(n_steps, description) if show else nullcontext(None)
        integrator, f = self.integrator, self.f
        # Once the first step shows that its result needs no graph (nothing upstream requires grad), the
        # remaining steps run under no_grad: the same values without autograd bookkeeping. The mode is set
        # only while this generator computes, never while the caller holds a chunk.
        graph_free = not torch.is_grad_enabled()
        x = self.x0
        state = integrator.init(bind_step(f, None, t0, dt), t0, x, dt)
        good = (x, state, 0)  # the last state that passed a check, its solver state and its step
        chunk: list[tuple[int, Tensor]] = [(0, x)]  # (step, whole-batch state), not yet yielded
        step = 0
        with bar as bar_task:
            while step < n_steps:
                with torch.no_grad() if graph_free else nullcontext():
                    while step < n_steps:
                        x, state, _ = self._advance(x, state, step, self.live)
                        step += 1
                        saved = step % self.save_every == 0
                        if saved:
                            chunk.append((step, self._full(x)))
                        full_chunk = len(chunk) >= chunk_size
                        if step % self.check_every == 0 or step == n_steps or full_chunk:
                            x, state, chunk = self._check(x, state, good, step, chunk)
                            good = (x, state, step)
                            if bar_task is not None:
                                bar_task.update(step)
                        if not graph_free and not x.requires_grad:
                            graph_free = True
                            break
                        if full_chunk:
                            break
                if len(chunk) >= chunk_size:
                    yield _stack_in_time([s for _, s in chunk])
                    chunk = []
            if chunk:
                yield _stack_in_time([s for _, s in chunk])
        self._record_row_stats(state, self.live)

    def _run_compiled(self, *, chunk_size: int, progress: bool | None, description: str) -> Iterator[Tensor]:
        """:meth:`run` in compiled chunks of steps (:mod:`hnnlab.compiled`), with the same results to round-off.

        Differences from the eager loop: finiteness is checked at the end of the first chunk that reaches
        ``check_every`` steps since the last check (and before states are yielded); a frozen row stays in the batch
        and is stepped with the others, its results discarded (NaN in the saved states), so that the compiled graph
        keeps its shape; nothing is differentiable (the chunks run under ``torch.no_grad``). A row that goes bad is
        replayed eagerly from the last check, as in the eager loop, so its first bad step and status are the eager
        loop's.
        """
        n_steps, dt, t0, integrator = self.n_steps, self.dt, self.t0, self.integrator
        show = progress if progress is not None else (n_steps >= PROGRESS_MIN_STEPS and sys.stderr.isatty())
        bar = _Bar(n_steps, description) if show else nullcontext(None)
        field = self.f if self.counter is None else self.counter.f  # compiled uncounted; counts added per chunk
        x = self.x0.clone() if self.x0.is_inference() else self.x0  # a compiled model does not check (check_state)
        state = integrator.init(self.f, t0, x, dt)
        probe = counted(field)  # one eager step of one row: the field evaluations per step, and whether it needs grad
        probe_x, _, _ = integrator.advance(probe, t0, x[:1], dt, _take(state, torch.arange(1, device=x.device)))
        if probe_x.requires_grad:
            raise InvalidArgumentError(
                "compile=True computes no gradients, but x0 or the parameters of the field require grad: solve under "
                "torch.no_grad() (or detach them), or use compile=False"
            )
        state = state.detach() if isinstance(state, Tensor) else state
        per_step = probe.evaluations
        frozen: Tensor | None = None  # (batch,) bool: the rows frozen at their first bad step
        good = (x, state, 0)  # the last state that passed a check, its solver state and its step
        chunk: list[tuple[int, Tensor]] = [(0, x)]  # (step, whole-batch state), not yet yielded
        step = 0
        with bar as bar_task:
            for n, saves in chunk_plan(n_steps, self.save_every, self.compile_steps or default_steps(per_step)):
                with torch.no_grad():
                    fn = compiled_steps(field, integrator, dt, n, saves, x)
                    x, state, saved = fn(x, state, step_times(t0, dt, step, n, x.device))
                    if self.counter is not None:
                        self.counter.tally.evaluations += n * per_step
                    for j, r in enumerate(saves):
                        kept = saved[:, j]
                        chunk.append((step + r, kept if frozen is None else torch.where(frozen[:, None], math.nan,
                                                                                        kept)))
                    step += n
                    if step - good[2] >= self.check_every or step == n_steps or len(chunk) >= chunk_size:
                        frozen, chunk = self._check_compiled(x, frozen, good, step, chunk)
                        good = (x, state, step)
                if bar_task is not None:
                    bar_task.update(step)
                while len(chunk) >= chunk_size:
                    yield _stack_in_time([s for _, s in chunk[:chunk_size]])
                    chunk = chunk[chunk_size:]
            if chunk:
                yield _stack_in_time([s for _, s in chunk])
        self._record_row_stats(state, None)

    def _check_compiled(
        self, x: Tensor, frozen: Tensor | None, good: tuple[Tensor, SolverState, int], step: int,
        chunk: list[tuple[int, Tensor]],
    ) -> tuple[Tensor | None, list[tuple[int, Tensor]]]:
        """:meth:`_check` for the compiled loop, whose states are always the whole batch: find the rows that went bad
        since the last check, record them as the eager loop does (or raise), NaN their saved states from their first
        bad step; they join ``frozen`` (the rows no longer checked)."""
        finite = torch.isfinite(x).all(dim=-1)  # (batch,)
        if frozen is not None:
            finite |= frozen
        if bool(finite.all()):
            return frozen, chunk
        if self.raise_:
            self._raise_first_bad(good, step)
        bad = torch.nonzero(~finite).squeeze(-1)  # (n_bad,) whole-batch indices
        first, reason = self._replay(good, step, bad)
        chunk = self._mark_bad(bad, first, reason, chunk, x.device)
        return (~finite if frozen is None else frozen | ~finite), chunk

    def _mark_bad(self, rows: Tensor, first: Tensor, reason: Tensor, chunk: list[tuple[int, Tensor]],
                  device: torch.device) -> list[tuple[int, Tensor]]:
        """Record the whole-batch rows ``rows`` as bad from their first bad steps ``first`` (with ``reason``) and
        NaN their saved states in ``chunk`` (on ``device``) from those steps on."""
        rows_cpu = rows.cpu()
        self.first_bad[rows_cpu] = first
        self.status[rows_cpu] = reason
        first_full = torch.full((self.x0.shape[0],), self.n_steps + 1, dtype=torch.long, device=device)
        first_full[rows.to(device)] = first.to(device)
        earliest = int(first.min())
        for i in range(len(chunk) - 1, -1, -1):  # the saved states since the earliest bad step, newest first
            s, v = chunk[i]
            if s < earliest:
                break
            chunk[i] = (s, torch.where((first_full <= s)[:, None], math.nan, v))
        return chunk

    def _advance(self, x: Tensor, state: SolverState, step: int, rows: Tensor | None) -> tuple[Tensor, SolverState,
                                                                                            Tensor | None]:
        """Step ``step + 1`` of the whole-batch rows ``rows`` (``None``: all) from ``x``: the field bound to the step
        and the rows (:func:`hnnlab.fields.bind_step`), the solver state restarted where the field may jump."""
        t, dt = self.t0 + step * self.dt, self.dt
        f = bind_step(self.f, rows, t, dt)
        if step and jumps_at(self.f, t, dt):
            state = self.integrator.restart(f, t, x, state)
        return self.integrator.advance(f, t, x, dt, state)

    def _record_row_stats(self, state: SolverState, rows: Tensor | None, keep: Tensor | None = None) -> None:
        """Copy the integrator's per-trajectory counters of the live rows (``keep`` of them) into the whole batch."""
        for key, value in self.integrator.row_stats(state).items():
            value = value if keep is None else value[keep]
            full = self.row_stats.setdefault(key, torch.zeros(self.x0.shape[0], dtype=value.dtype))
            full[slice(None) if rows is None else rows.cpu()] = value.cpu()

    def _check(
        self, x: Tensor, state: SolverState, good: tuple[Tensor, SolverState, int], step: int,
        chunk: list[tuple[int, Tensor]],
    ) -> tuple[Tensor, SolverState, list[tuple[int, Tensor]]]:
        """Find the live rows that went bad since the last good check; freeze them (or raise)."""
        finite = torch.isfinite(x).all(dim=-1)  # (live,)
        if bool(finite.all()):
            return x, state, chunk
        if self.raise_:
            self._raise_first_bad(good, step)
        bad = torch.nonzero(~finite).squeeze(-1)  # (n_bad,) in live-row indices
        first, reason = self._replay(good, step, bad)
        rows = bad if self.live is None else self.live.to(bad.device)[bad]  # whole-batch indices
        chunk = self._mark_bad(rows, first, reason, chunk, x.device)
        keep = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        keep[bad] = False
        self._record_row_stats(state, rows, ~keep)
        self.live = torch.nonzero(keep).squeeze(-1) if self.live is None else self.live.to(keep.device)[keep]
        return x[keep], _take(state, keep), chunk

    def _replay(self, good: tuple[Tensor, SolverState, int], stop: int, bad: Tensor) -> tuple[Tensor, Tensor]:
        """Step the live rows ``bad`` again from the last good check to ``stop``: each one's first bad step and
        its :class:`Status`."""
        x, state, start = good
        x, state = x[bad], _take(state, bad)
        first = torch.full((bad.numel(),), stop, dtype=torch.long)
        reason = torch.full((bad.numel(),), int(Status.NONFINITE), dtype=torch.int8)
        pending = torch.ones(bad.numel(), dtype=torch.bool)
        rows = bad if self.live is None else self.live.to(bad.device)[bad]  # whole-batch indices
        with torch.no_grad():
            for step in range(start + 1, stop + 1):
                x, state, failed = self._advance(x, state, step - 1, rows)
                self.replayed += 1
                now_bad = (~torch.isfinite(x).all(dim=-1)).cpu() & pending
                if now_bad.any():
                    first[now_bad] = step
                    if failed is not None:
                        reason[now_bad & failed.cpu()] = int(Status.NOT_CONVERGED)
                    pending &= ~now_bad
                if not pending.any():
                    break
        return first, reason  # rows still pending were non-finite at the check but not in the replay

    def _raise_first_bad(self, good: tuple[Tensor, SolverState, int], stop: int) -> None:
        """Replay steps after the last good check with the raising step and raise at the first bad one."""
        x, _, start = good
        integrator, dt, t0 = self.integrator, self.dt, self.t0
        with torch.no_grad():
            for step in range(start + 1, stop + 1):
                f = bind_step(self.f, self.live, t0 + (step - 1) * dt, dt)
                x = integrator._step(f, t0 + (step - 1) * dt, x, dt)  # raises ConvergenceError itself
                finite = torch.isfinite(x).all(dim=-1)
                if not bool(finite.all()):
                    live_row = int(torch.nonzero(~finite)[0])
                    traj = live_row if self.live is None else int(self.live[live_row])
                    time = t0 + step * dt
                    raise NonFiniteStateError(
                        f"rollout became non-finite (NaN or inf) at step {step} (t = {time:.6g}) in trajectory "
                        f"{traj} of {self.x0.shape[0]}; the step size may be too large for this system "
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

    def solution(self, ys: Tensor) -> Solution:
        n_saved = self.n_steps // self.save_every + 1
        ts = self.t0 + torch.arange(n_saved, dtype=torch.float64) * (self.dt * self.save_every)
        stats = {
            "steps": self.n_steps,
            "field_evaluations": None if self.counter is None else self.counter.evaluations,
            "replayed_steps": self.replayed,
            **self.row_stats,
        }
        return Solution(ts=ts, ys=ys, status=self.status, first_bad_step=self.first_bad, stats=stats)


class _Bar:
    """A rich progress bar over steps, used as a context manager."""

    def __init__(self, total: int, description: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), transient=True,
        )
        self._total = total
        self._description = description
        self._task = None

    def __enter__(self) -> _Bar:
        self._progress.start()
        self._task = self._progress.add_task(self._description, total=self._total)
        return self

    def update(self, completed: int) -> None:
        self._progress.update(self._task, completed=completed)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
