"""Long-horizon predictions of a trained model, streamed to a rollout file with the true reference.

:func:`predict_to_file` rolls a model out from given initial states with any integrator and, where the
system is known, integrates the true system on the same time grid at high accuracy, writing both in
chunks (memory does not grow with the number of steps).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import torch
from torch import Tensor, nn

from hnnlab.errors import InvalidArgumentError
from hnnlab.fields import AbstractSeparableField, AbstractVectorField
from hnnlab.inputs import DrivenField, InputSignal
from hnnlab.integrators import AbstractIntegrator, get_integrator
from hnnlab.rollout import PROGRESS_MIN_STEPS, check_count, iter_solve, steps_to_save
from hnnlab.rollout_io import RolloutMetadata, RolloutWriter
from hnnlab.systems import AbstractSystem


def default_integrator(model: Any) -> str:
    """A symplectic method that suits the model: leapfrog for a separable H, implicit midpoint for a
    general learned H (explicit leapfrog is not symplectic there), RK4 for models without an energy."""
    if isinstance(model, AbstractSeparableField):
        return "leapfrog"
    if isinstance(model, AbstractVectorField) and model.coordinates == "canonical" and model.has_energy:
        return "implicit_midpoint"
    return "rk4"


def reference_integrator(system: AbstractSystem) -> tuple[AbstractIntegrator, int]:
    """High-accuracy ground truth on a fixed grid: Yoshida-4 with 16 substeps per step for separable
    systems (symplectic, error ~ (dt/16)^4), dopri8 at rtol = atol = 1e-11 otherwise."""
    if system.is_separable:
        return get_integrator("yoshida4"), 16
    return get_integrator("dopri8", rtol=1e-11, atol=1e-11), 1


def trained_system(checkpoint: str | os.PathLike) -> tuple[dict[str, Any] | None, str]:
    """The system a checkpoint's model was trained on, as ``(system description or None, where from)``.

    Read from the checkpoint's own record (``checkpoint["hnnlab"]["system"]``) when it has one, else from its
    training data: the recipe named in the data module's hyperparameters, or the dataset file they name
    (when that file is still there). ``None`` when neither is known.
    """
    ckpt = torch.load(os.fspath(checkpoint), map_location="cpu", weights_only=False)
    info = ckpt.get("hnnlab") if isinstance(ckpt, dict) else None
    if isinstance(info, dict) and isinstance(info.get("system"), dict):
        return info["system"], "the checkpoint's record"
    data = ckpt.get("datamodule_hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(data, dict):
        return None, "unknown"
    if data.get("recipe"):
        from hnnlab.data.recipes import get_recipe
        from hnnlab.systems import get_system

        try:
            recipe = get_recipe(data["recipe"], **(data.get("recipe_overrides") or {}))
            return get_system(recipe.system, **recipe.system_params).describe(), f"its training recipe {recipe.name!r}"
        except Exception:  # noqa: BLE001 - a recipe of another hnnlab version: the system is unknown
            return None, "unknown"
    path = data.get("path")
    if path and os.path.isfile(path):
        from hnnlab.data.io import read_metadata

        try:
            return read_metadata(path)["system"], f"its training data {str(path)!r}"
        except Exception:  # noqa: BLE001 - an unreadable file: the system is unknown
            return None, "unknown"
    return None, "unknown"


def check_model_fits(
    model: Any, system: dict[str, Any] | None, *, checkpoint: str | os.PathLike, data: str
) -> None:
    """Refuse a checkpoint's model on data it was not trained for: another system (when the checkpoint's
    training system is known, :func:`trained_system`), another number of degrees of freedom, or other
    coordinates. ``system`` is the data's ``system.describe()``; ``data`` names the data in the message."""
    from hnnlab.errors import InvalidArgumentError

    if system is None:
        return
    ckpt = f"checkpoint {os.fspath(checkpoint)!r}"
    dof, coords = system.get("dof"), system.get("coordinates")
    if isinstance(model, AbstractVectorField):
        if dof is not None and model.dof != dof:
            raise InvalidArgumentError(
                f"{ckpt} holds a model of dof {model.dof} ({type(model).__name__}), but {data} is system "
                f"{system.get('name')!r} with dof {dof}; roll out a checkpoint trained on this system"
            )
        if coords is not None and model.coordinates != coords:
            raise InvalidArgumentError(
                f"{ckpt} holds a model in {model.coordinates} coordinates, but {data} ({system.get('name')!r}) is in "
                f"{coords} coordinates"
            )
    trained, origin = trained_system(checkpoint)
    if trained is None:
        return
    same = trained.get("class", trained.get("name")) == system.get("class", system.get("name"))
    if not same:
        raise InvalidArgumentError(
            f"{ckpt} was trained on system {trained.get('name')!r} ({origin}), but {data} is system "
            f"{system.get('name')!r}; use a checkpoint trained on {system.get('name')!r}, or data of "
            f"{trained.get('name')!r}"
        )


def predict_to_file(
    model: nn.Module,
    x0: Tensor,
    *,
    dt: float,
    n_steps: int,
    out: str | os.PathLike,
    integrator: str | AbstractIntegrator | None = None,
    save_every: int = 1,
    system: AbstractSystem | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    description: str = "rollout",
    inputs: InputSignal | None = None,
) -> dict[str, Any]:
    """Roll ``model`` out from ``x0`` ``(n, 2 * dof)`` and stream it (and the reference) to ``out``.

    A trajectory that turns non-finite (or whose implicit solve fails) is recorded in the file at its exact
    first bad step (``first_nonfinite_step``) while the others reach the horizon; nothing is raised.
    ``n_steps`` that ``save_every`` does not divide runs to the last multiple, with one
    :class:`~hnnlab.rollout.SaveEveryWarning` (the summary's ``n_steps`` is the number run).
    ``progress``: ``True`` shows progress (a bar on a terminal, a line every few seconds otherwise),
    ``None`` does so for long rollouts only, ``False`` never; ``description`` labels it.
    ``inputs`` (one row per initial state) drive a model with ``n_inputs > 0`` and the reference system
    (both as :class:`~hnnlab.inputs.DrivenField`); they are stored in the rollout file.
    Returns a summary (integrators, shapes, steps run, first non-finite step or None).
    """
    n_steps = _steps_to_run(n_steps, save_every)
    field = model if inputs is None else DrivenField(model, inputs)
    truth = system if inputs is None or system is None else DrivenField(system, inputs)
    integ = get_integrator(integrator or default_integrator(field))
    integ.check_compatible(field)
    n, width = x0.shape
    show = progress if progress is not None else n_steps >= PROGRESS_MIN_STEPS
    bar = bool(show) and sys.stderr.isatty()
    lines = _ProgressLines(n_steps, description) if show and not bar else None
    n_saved = n_steps // save_every + 1
    chunk_size = 256 if lines is None else max(1, min(256, -(-n_saved // 20)))
    ref_integ, ref_sub = reference_integrator(truth) if truth is not None else (None, 1)
    meta = RolloutMetadata(
        integrator=integ.describe(),
        dt=float(dt),
        save_every=save_every,
        system=system.describe() if system is not None else None,
        model=model.describe() if isinstance(model, AbstractVectorField) else None,
        reference_integrator={**ref_integ.describe(), "substeps": ref_sub} if ref_integ is not None else None,
        **(metadata or {}),
    )
    has_energy = isinstance(model, AbstractVectorField) and model.has_energy
    energy_fn = model.energy if has_energy else None
    with RolloutWriter(out, n, width // 2, x0.dtype, meta, with_reference=system is not None, overwrite=overwrite,
                       with_energy_model=has_energy, inputs=inputs) as writer:
        # One masked solve for the model (a trajectory that blows up is NaN from its first bad step while the
        # others go on to the horizon) and one for the reference, streamed chunk by chunk on the same grid.
        pred = iter_solve(field, integ, x0, dt, n_steps, save_every, progress=bar, description=description,
                          chunk_size=chunk_size)
        ref = None
        if system is not None:
            ref = iter_solve(truth, ref_integ, x0, dt / ref_sub, n_steps * ref_sub, save_every * ref_sub,
                             on_nonfinite="raise", chunk_size=chunk_size, progress=False)
        ref_chunks = _Aligned(ref) if ref is not None else None
        saved = 0
        with torch.no_grad():
            for chunk in pred:  # (n, chunk_len, 2 * dof)
                reference = ref_chunks.take(chunk.shape[1]) if ref_chunks is not None else None
                energy = energy_fn(chunk) if energy_fn is not None else None
                writer.append(chunk, reference=reference, energy_model=energy)
                saved += chunk.shape[1]
                if lines is not None:
                    lines.update((saved - 1) * save_every)
        solution = pred.result()
        bad = torch.nonzero(solution.first_bad_step >= 0).flatten().tolist()
        for i in bad:
            writer.mark_nonfinite(i, int(solution.first_bad_step[i]))
        first_bad = int(solution.first_bad_step[bad].min()) if bad else None
    return {
        "integrator": integ.name,
        "reference_integrator": ref_integ.name if ref_integ is not None else None,
        "n_traj": n,
        "n_steps": n_steps,
        "save_every": save_every,
        "first_nonfinite_step": first_bad,
        "path": os.fspath(out),
    }


def forecast_to_file(
    model: Any,
    warmup: Tensor,
    *,
    dt: float,
    n_steps: int,
    out: str | os.PathLike,
    save_every: int = 1,
    t0: float = 0.0,
    system: AbstractSystem | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    description: str = "forecast",
) -> dict[str, Any]:
    """Forecast with a discrete-time model (an :class:`~hnnlab.models.esn.EchoStateNetwork`) and stream it, with
    the true reference, to a rollout file: the counterpart of :func:`predict_to_file` for a model that is a map on
    its own step ``dt`` rather than a vector field.

    The model is warmed up on ``warmup`` ``(n, n_warmup, 2 * dof)`` (true states on the step ``dt``, teacher
    forcing), then runs ``n_steps`` steps autonomously. The file's first saved state is the last warm-up state,
    at time ``t0`` (its time in the data); the reference is the true ``system`` integrated from it (as
    :func:`predict_to_file` does). The metadata record integrator :data:`hnnlab.rollout_io.DISCRETE_MAP` (no
    vector field was integrated) and ``extra["warmup"] = n_warmup``; ``metadata`` adds ``checkpoint`` and
    ``command``. A trajectory whose forecast turns
    non-finite is recorded in ``first_nonfinite_step`` (at the saved index, exact with ``save_every = 1``).
    """
    from hnnlab.rollout_io import DISCRETE_MAP

    n_steps = _steps_to_run(n_steps, save_every)
    n, n_warmup, width = warmup.shape
    chunks = model.iter_forecast(warmup, n_steps, chunk_size=256 * save_every)  # checks the model and warm-up
    lines = _ProgressLines(n_steps, description) if (progress if progress is not None
                                                     else n_steps >= PROGRESS_MIN_STEPS) else None
    ref_integ, ref_sub = reference_integrator(system) if system is not None else (None, 1)
    meta = RolloutMetadata(
        integrator={"name": DISCRETE_MAP, "model": type(model).__name__},
        dt=float(dt),
        save_every=save_every,
        t0=float(t0),
        system=system.describe() if system is not None else None,
        model=model.describe(),
        reference_integrator={**ref_integ.describe(), "substeps": ref_sub} if ref_integ is not None else None,
        extra={"warmup": n_warmup},
        **(metadata or {}),  # checkpoint, command
    )
    with RolloutWriter(out, n, width // 2, warmup.dtype, meta, with_reference=system is not None,
                       overwrite=overwrite) as writer:
        ref = None
        if system is not None:
            x0 = warmup[:, -1]  # (n, 2 * dof): the last warm-up state, where the forecast starts
            ref = _Aligned(iter_solve(system, ref_integ, x0, dt / ref_sub, n_steps * ref_sub, save_every * ref_sub,
                                      on_nonfinite="raise", chunk_size=256, progress=False))
        index = 0  # steps from the warm-up's end to the chunk's first state
        for chunk in chunks:  # (n, chunk_len, 2 * dof), every step; the first chunk starts at the warm-up's end
            saved = chunk[:, (-index) % save_every::save_every]  # the states at multiples of save_every steps
            index += chunk.shape[1]
            if saved.shape[1]:
                writer.append(saved, reference=ref.take(saved.shape[1]) if ref is not None else None)
            if lines is not None:
                lines.update(index - 1)
    return {"n_traj": n, "n_steps": n_steps, "save_every": save_every, "warmup": n_warmup,
            "reference_integrator": ref_integ.name if ref_integ is not None else None, "path": os.fspath(out)}


def _steps_to_run(n_steps: int, save_every: int) -> int:
    """``n_steps`` cut to the last multiple of ``save_every`` (warning once, here, not once per solve); both counts
    must be integers >= 1 and at least one state after ``x0`` must be saved."""
    check_count("n_steps", n_steps, minimum=1)
    check_count("save_every", save_every, minimum=1)
    n_steps = steps_to_save(n_steps, save_every)
    if n_steps == 0:
        raise InvalidArgumentError(f"n_steps is less than save_every = {save_every}: no state after x0 would be saved")
    return n_steps


class _ProgressLines:
    """Progress as plain lines on stderr (for a log or a pipe, where a bar cannot redraw): one line at most
    every ``every`` seconds, ``DESCRIPTION: K/N UNIT (P %), T s elapsed, about R s left``."""

    def __init__(self, total: int, description: str, every: float = 10.0, *, unit: str = "steps") -> None:
        self.total, self.description, self.every, self.unit = total, description, every, unit
        self.start = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.every or done >= self.total:
            return
        self.last = now
        elapsed = now - self.start
        left = elapsed * (self.total - done) / max(done, 1)
        print(f"{self.description}: {done:,}/{self.total:,} {self.unit} ({100 * done / self.total:.0f} %), "
              f"{elapsed:.0f} s elapsed, about {left:.0f} s left", file=sys.stderr, flush=True)


class _Aligned:
    """The saved states of a stream, handed out in the chunk lengths another stream yields (two solves on the
    same grid with different substeps need not chunk alike)."""

    def __init__(self, stream: Any) -> None:
        self._chunks = iter(stream)
        self._buffer: list[Tensor] = []
        self._held = 0

    def take(self, length: int) -> Tensor:
        while self._held < length:
            chunk = next(self._chunks)  # (batch, chunk_len, 2 * dof)
            self._buffer.append(chunk)
            self._held += chunk.shape[1]
        joined = torch.cat(self._buffer, dim=1) if len(self._buffer) > 1 else self._buffer[0]
        out, rest = joined[:, :length], joined[:, length:]
        self._buffer, self._held = ([rest] if rest.shape[1] else []), rest.shape[1]
        return out
