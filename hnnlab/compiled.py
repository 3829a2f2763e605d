"""Compiled chunks of integrator steps: the kernel of ``solve(..., compile=True)``.

On a small batch (a few states of a few numbers) the eager loop's time goes to torch's per-operation dispatch: each
stage of a step is a handful of tiny operations of a few microseconds each, whatever the arithmetic. A compiled
chunk is one ``torch.compile``d function (``dynamic=False``, ``fullgraph=True``) that takes ``n`` steps of an
explicit fixed-step integrator on a field, calling the integrator's own ``advance`` (the same arithmetic as the
eager loop, so the states agree to round-off), and returns the last state, the solver state and the states at
the saved steps inside the chunk ``(batch, n_saved, 2 * dof)``. The loop calls it once per chunk instead of
dispatching every operation.

On CPU the chunk is compiled with inductor's C++ wrapper (``cpp_wrapper``, :func:`inductor_options`). Inductor fuses
a chunk into one kernel, but the kernel's intermediate states and forces stay separate buffers (several per stage of a
step) that the wrapper allocates and passes on every call; on a small batch that per-buffer work, not arithmetic, is
what a compiled call costs, and the default Python wrapper does it one Python call per buffer. The C++ wrapper does
the same allocations in C++: the same kernel and the same states, for a compile of about the same time
(docs/rollout.md has the measurements). Other devices keep inductor's defaults.

What is compiled, and when:

- one function per (field, integrator class and options, ``dt``, chunk length, saved positions, state shape):
  ``dt`` and the integrator's coefficients are constants of the graph (a new step size compiles anew), the step
  start times are an input ``(n,)`` float64 (computed as the eager loop computes them, ``t0 + step * dt``);
- the loop plans its chunks (:func:`chunk_plan`) so that a solve needs at most two functions (the full chunk and a
  shorter last one); the last :data:`CACHE_SIZE` functions are kept, so a repeated solve compiles nothing;
- every function has its own code object: dynamo keeps compiled graphs per code object, and falls back to the eager
  code after ``recompile_limit`` (8) graphs of one object, which a sweep of step sizes would reach.

What cannot be compiled is refused before the first step (:func:`check_compilable`): implicit methods (a fixed-point
iteration that stops on a data-dependent test), adaptive methods (per-trajectory step sizes and step counts), fields
that differ between trajectories (:class:`hnnlab.fields.AbstractRowField`, bound anew to every step), and a graph
that needs gradients (compiled chunks run under ``torch.no_grad``). A field that does not trace into one graph
(``torch.autograd.grad`` inside, as ``SeparableHNN`` and the ``"autograd"`` backend of the other learned models
compute their forces) is refused at the first call with dynamo's reason: with graph breaks the compiled loop is
slower than the eager one. Models whose gradients are taken with ``torch.func`` (``backend="func"``) compile.
"""

from __future__ import annotations

import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError
from hnnlab.fields import AbstractRowField, describe_field
from hnnlab.integrators.base import AbstractIntegrator, SolverState

CHUNK_EVALUATIONS = 64  # field evaluations per compiled call by default (a half field counts 0.5)
CACHE_SIZE = 64  # compiled chunk functions kept (least recently used dropped)

ChunkFn = Callable[[Tensor, SolverState, Tensor], tuple[Tensor, SolverState, Tensor | None]]
_CACHE: OrderedDict[tuple, tuple[Any, ChunkFn]] = OrderedDict()  # key -> (field, function); the field pins its id


def compile_unavailable() -> str | None:
    """Why ``torch.compile`` cannot compile CPU code here (no working C++ compiler for inductor), or ``None``."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as exc:  # inductor raises its own error types; any failure means no CPU compile
        return f"torch.compile needs a C++ compiler for CPU code ({str(exc).splitlines()[0] if str(exc) else exc!r})"
    return None


def check_compilable(compile: object, compile_steps: object, f: Any, integrator: AbstractIntegrator,
                     x0: Tensor) -> int | None:
    """The steps per compiled call that ``solve(..., compile=compile, compile_steps=compile_steps)`` asks for: ``None``
    for the eager loop, ``0`` for the default (:data:`CHUNK_EVALUATIONS` field evaluations per call); a clear error
    for an argument of the wrong kind and for what cannot be compiled."""
    if not isinstance(compile, bool):
        raise InvalidArgumentError(f"compile must be True or False, got {compile!r}")
    if compile_steps is not None and (isinstance(compile_steps, bool) or not isinstance(compile_steps, int)
                                      or compile_steps < 1):
        raise InvalidArgumentError(f"compile_steps must be an integer >= 1 or None, got {compile_steps!r}")
    if not compile:
        if compile_steps is not None:
            raise InvalidArgumentError("compile_steps is used only with compile=True")
        return None
    if integrator.adaptive or not integrator.explicit:
        kind = "adaptive (per-trajectory step sizes)" if integrator.adaptive else (
            "implicit (its fixed-point iteration stops on a data-dependent test)")
        raise InvalidArgumentError(
            f"compile=True needs an explicit fixed-step integrator; {integrator.name!r} is {kind}: "
            "use compile=False"
        )
    if isinstance(f, AbstractRowField):
        raise InvalidArgumentError(
            f"compile=True cannot compile {describe_field(f)}: a field that differs between trajectories is bound "
            "anew to every step; use compile=False"
        )
    if x0.device.type == "cpu":
        reason = compile_unavailable()
        if reason is not None:
            raise InvalidArgumentError(f"compile=True: {reason}; use compile=False")
    return compile_steps or 0


def default_steps(evaluations_per_step: float) -> int:
    """Steps per compiled call for a method that evaluates the field ``evaluations_per_step`` times a step: about
    :data:`CHUNK_EVALUATIONS` evaluations per call (64 leapfrog steps, 4 of ``kahan_li8``), at least one step."""
    return max(1, round(CHUNK_EVALUATIONS / max(evaluations_per_step, 1e-9)))


def chunk_plan(n_steps: int, save_every: int, steps: int) -> Iterator[tuple[int, tuple[int, ...]]]:
    """The chunks of a solve of ``n_steps`` steps (a multiple of ``save_every``) in calls of at most ``steps`` steps:
    ``(n, saves)``, the chunk's length and the positions ``1..n`` in it of the saved steps.

    With ``save_every <= steps`` a chunk holds whole save intervals (saves at every ``save_every``-th step), else a
    save interval is cut into chunks that end on its saved step. Either way at most two distinct ``(n, saves)`` occur
    (the full chunk and a shorter last one), so a solve compiles at most two functions; where a chunk length between
    half and all of the largest one divides the work evenly, it is taken, and a solve compiles one.
    """
    step = 0
    if save_every <= steps:
        per_chunk = _even(n_steps // save_every, steps // save_every)  # save intervals per chunk
        while step < n_steps:
            n = min(save_every * per_chunk, n_steps - step)
            yield n, tuple(range(save_every, n + 1, save_every))
            step += n
        return
    full = _even(save_every, steps)
    while step < n_steps:
        to_save = save_every - step % save_every
        n = min(full, to_save)
        yield n, ((n,) if n == to_save else ())
        step += n


def _even(total: int, most: int) -> int:
    """The largest ``k`` in ``(most / 2, most]`` that divides ``total``, else ``most``."""
    return next((k for k in range(most, most // 2, -1) if total % k == 0), most)


def compiled_steps(f: Any, integrator: AbstractIntegrator, dt: float, n: int, saves: tuple[int, ...],
                   x: Tensor) -> ChunkFn:
    """The compiled chunk ``(x, state, ts) -> (x, state, saved)`` of ``n`` steps of ``integrator`` on ``f`` for states
    of the shape, dtype and device of ``x`` (see the module docstring): ``ts`` ``(n,)`` float64 the steps' start times,
    ``saved`` ``(batch, len(saves), 2 * dof)`` the states after the steps ``saves`` (``None`` when there are none).
    Cached; one function per shape, so that no function is recompiled (``dynamic=False``)."""
    key = (id(f), type(integrator), repr(integrator.options()), integrator.allow_nonseparable, float(dt), n, saves,
           tuple(x.shape), x.dtype, x.device)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is f:
        _CACHE.move_to_end(key)
        return hit[1]

    def chunk(x: Tensor, state: SolverState, ts: Tensor) -> tuple[Tensor, SolverState, Tensor | None]:
        kept = []
        for i in range(n):
            x, state, _ = integrator.advance(f, ts[i], x, dt, state)
            if i + 1 in saves:
                kept.append(x)
        return x, state, (torch.stack(kept, dim=1) if kept else None)

    own_code = types.FunctionType(chunk.__code__.replace(), chunk.__globals__, f"chunk_{n}_steps", None,
                                  chunk.__closure__)  # its own dynamo cache (see the module docstring)
    fn = _wrap_errors(torch.compile(own_code, dynamic=False, fullgraph=True, options=inductor_options(x.device)), f,
                      integrator)
    _CACHE[key] = (f, fn)
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return fn


def inductor_options(device: torch.device) -> dict[str, Any]:
    """Inductor settings for a chunk on ``device``: the C++ wrapper on CPU (see the module docstring), whose
    per-call cost on a small batch is a fraction of the Python wrapper's; inductor's defaults elsewhere."""
    return {"cpp_wrapper": True} if device.type == "cpu" else {}


def _wrap_errors(fn: Callable, f: Any, integrator: AbstractIntegrator) -> ChunkFn:
    """``fn`` with dynamo's and inductor's failures turned into a clear error that names the field and the way out."""

    def call(x: Tensor, state: SolverState, ts: Tensor) -> tuple[Tensor, SolverState, Tensor | None]:
        try:
            return fn(x, state, ts)
        except torch._dynamo.exc.TorchDynamoException as exc:
            reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise InvalidArgumentError(
                f"compile=True: {describe_field(f)} stepped by {integrator.name!r} does not compile into one graph "
                f"({reason}); use compile=False"
            ) from exc

    return call


def step_times(t0: float, dt: float, start: int, n: int, device: torch.device) -> Tensor:
    """``t0 + k * dt`` for the steps ``k = start .. start + n - 1``, float64 ``(n,)`` on ``device``, computed as the
    eager loop computes each step's time (Python floats)."""
    return torch.tensor([t0 + k * dt for k in range(start, start + n)], dtype=torch.float64, device=device)


__all__ = ["CACHE_SIZE", "CHUNK_EVALUATIONS", "check_compilable", "chunk_plan", "compile_unavailable",
           "compiled_steps", "default_steps", "inductor_options", "step_times"]
