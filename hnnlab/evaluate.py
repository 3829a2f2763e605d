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
        pred_iter = iter_rollout(model, integ, x0, dt, n_steps, save_every, progress=progress)
        ref_iter = (
            iter_rollout(system, ref_integ, x0, dt / ref_sub, n_steps * ref_sub, save_every * ref_sub)
            if system is not None else None
        )
        with torch.no_grad():
            while True:
                try:
                    chunk = next(pred_iter)
                except StopIteration:
                    break
                except NonFiniteStateError as exc:
                    writer.mark_nonfinite(exc.trajectory, exc.step)
                    first_bad = exc.step
                    break
                ref = next(ref_iter) if ref_iter is not None else None
                energy = energy_fn(chunk) if has_energy else None
                writer.append(chunk, reference=ref, energy_model=energy)
    return {
        "integrator": integ.name,
        "reference_integrator": ref_integ.name if ref_integ is not None else None,
        "n_traj": n,
        "n_steps": n_steps,
        "first_nonfinite_step": first_bad,
        "path": os.fspath(out),
    }
