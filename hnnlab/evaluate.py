"""Long-horizon predictions of a trained model, streamed to a rollout file with the true reference.

:func:`predict_to_file` rolls a model out from given initial states with any integrator and, where the
system is known, integrates the true system on the same time grid at high accuracy, writing both in
chunks (memory does not grow with the number of steps).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from hnnlab.errors import NonFiniteStateError
from hnnlab.integrators import AbstractIntegrator, get_integrator
from hnnlab.rollout import iter_rollout
from hnnlab.rollout_io import RolloutMetadata, RolloutWriter
from hnnlab.systems import AbstractSystem


def default_integrator(model: Any) -> str:
    """A symplectic method that suits the model: leapfrog for a separable H, implicit midpoint for a
    general learned H (explicit leapfrog is not symplectic there), RK4 for models without an energy."""
    if getattr(model, "is_separable", False):
        return "leapfrog"
    if getattr(model, "coordinates", "canonical") == "canonical" and getattr(model, "has_energy", False):
        return "implicit_midpoint"
    return "rk4"


def reference_integrator(system: AbstractSystem) -> tuple[AbstractIntegrator, int]:
    """High-accuracy ground truth on a fixed grid: Yoshida-4 with 16 substeps per step for separable
    systems (symplectic, error ~ (dt/16)^4), dopri8 at rtol = atol = 1e-11 otherwise."""
    if system.is_separable:
        return get_integrator("yoshida4"), 16
    return get_integrator("dopri8", rtol=1e-11, atol=1e-11), 1


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
) -> dict[str, Any]:
    """Roll ``model`` out from ``x0`` ``(n, 2 * dof)`` and stream it (and the reference) to ``out``.

    A rollout that turns non-finite is recorded in the file (``first_nonfinite_step``), not raised.
    Returns a summary (integrators, shapes, first non-finite step or None).
    """
    integ = get_integrator(integrator or default_integrator(model))
    integ.check_compatible(model)
    n, width = x0.shape
    ref_integ, ref_sub = reference_integrator(system) if system is not None else (None, 1)
    meta = RolloutMetadata(
        integrator=integ.describe(),
        dt=float(dt),
        save_every=save_every,
        system=system.describe() if system is not None else None,
        model=model.describe() if hasattr(model, "describe") else None,
        reference_integrator={**ref_integ.describe(), "substeps": ref_sub} if ref_integ is not None else None,
        **(metadata or {}),
    )
    energy_fn = getattr(model, "energy", None)
    has_energy = bool(getattr(model, "has_energy", False))
    first_bad: int | None = None
    with RolloutWriter(out, n, width // 2, x0.dtype, meta, with_reference=system is not None, overwrite=overwrite,
                       with_energy_model=has_energy) as writer:
        stream = _Stream(writer, model, integ, system, ref_integ, ref_sub, dt, save_every,
                         energy_fn if has_energy else None, progress)
        try:
            stream.run(0, x0, x0, n_steps, first=True)
        except NonFiniteStateError:
            # Some trajectory blew up: continue every trajectory on its own from the last saved
            # states (or from the start if nothing was saved yet), so that the finite ones reach the
            # horizon and each bad one is recorded at its exact first non-finite step.
            resumed = stream.last_pred is not None
            done = stream.saved_steps if resumed else 0
            for i in range(n):
                sub = _Stream(writer, model, integ, system, ref_integ, ref_sub, dt, save_every,
                              energy_fn if has_energy else None, False)
                x_pred = stream.last_pred[i : i + 1] if resumed else x0[i : i + 1]
                x_ref = (stream.last_ref[i : i + 1] if resumed else x0[i : i + 1]) if system is not None else None
                try:
                    sub.run(i, x_pred, x_ref, n_steps - done, first=not resumed, t0=done * dt)
                except NonFiniteStateError as exc:
                    step = done + exc.step
                    writer.mark_nonfinite(i, step)
                    first_bad = step if first_bad is None else min(first_bad, step)
    return {
        "integrator": integ.name,
        "reference_integrator": ref_integ.name if ref_integ is not None else None,
        "n_traj": n,
        "n_steps": n_steps,
        "first_nonfinite_step": first_bad,
        "path": os.fspath(out),
    }


class _Stream:
    """Roll trajectories ``start .. start + batch`` out and append their saved states to ``writer``."""

    def __init__(self, writer, model, integ, system, ref_integ, ref_sub, dt, save_every, energy_fn, progress):
        self.writer, self.model, self.integ = writer, model, integ
        self.system, self.ref_integ, self.ref_sub = system, ref_integ, ref_sub
        self.dt, self.save_every, self.energy_fn, self.progress = dt, save_every, energy_fn, progress
        self.saved_steps = 0  # index of the last integrator step whose saved state was appended
        self.last_pred: Tensor | None = None
        self.last_ref: Tensor | None = None

    def run(self, start: int, x_pred: Tensor, x_ref: Tensor | None, n_steps: int, *, first: bool,
            t0: float = 0.0) -> None:
        pred_iter = iter_rollout(self.model, self.integ, x_pred, self.dt, n_steps, self.save_every, t0=t0,
                                 progress=self.progress)
        ref_iter = None
        if self.system is not None:
            ref_iter = iter_rollout(self.system, self.ref_integ, x_ref, self.dt / self.ref_sub,
                                    n_steps * self.ref_sub, self.save_every * self.ref_sub, t0=t0)
        skip = not first  # a resumed rollout's first saved state is already in the file
        if first:
            self.saved_steps = -self.save_every  # the first saved state is step 0
        with torch.no_grad():
            for chunk in pred_iter:  # (batch, chunk_len, 2 * dof)
                ref = next(ref_iter) if ref_iter is not None else None
                if skip:
                    chunk, ref = chunk[:, 1:], (ref[:, 1:] if ref is not None else None)
                    skip = False
                if chunk.shape[1] == 0:
                    continue
                energy = self.energy_fn(chunk) if self.energy_fn is not None else None
                self.writer.append(chunk, reference=ref, energy_model=energy, start=start)
                self.saved_steps += chunk.shape[1] * self.save_every
                self.last_pred, self.last_ref = chunk[:, -1], (ref[:, -1] if ref is not None else None)
