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

from hnnlab.fields import AbstractSeparableField, AbstractVectorField
from hnnlab.integrators import AbstractIntegrator, get_integrator
from hnnlab.rollout import iter_solve
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

    A trajectory that turns non-finite (or whose implicit solve fails) is recorded in the file at its exact
    first bad step (``first_nonfinite_step``) while the others reach the horizon; nothing is raised.
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
        model=model.describe() if isinstance(model, AbstractVectorField) else None,
        reference_integrator={**ref_integ.describe(), "substeps": ref_sub} if ref_integ is not None else None,
        **(metadata or {}),
    )
    has_energy = isinstance(model, AbstractVectorField) and model.has_energy
    energy_fn = model.energy if has_energy else None
    with RolloutWriter(out, n, width // 2, x0.dtype, meta, with_reference=system is not None, overwrite=overwrite,
                       with_energy_model=has_energy) as writer:
        # One masked solve for the model (a trajectory that blows up is NaN from its first bad step while the
        # others go on to the horizon) and one for the reference, streamed chunk by chunk on the same grid.
        pred = iter_solve(model, integ, x0, dt, n_steps, save_every, progress=progress, description="rollout")
        ref = None
        if system is not None:
            ref = iter_solve(system, ref_integ, x0, dt / ref_sub, n_steps * ref_sub, save_every * ref_sub,
                             on_nonfinite="raise")
        ref_chunks = iter(ref) if ref is not None else None
        with torch.no_grad():
            for chunk in pred:  # (n, chunk_len, 2 * dof)
                reference = next(ref_chunks) if ref_chunks is not None else None
                energy = energy_fn(chunk) if energy_fn is not None else None
                writer.append(chunk, reference=reference, energy_model=energy)
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
        "first_nonfinite_step": first_bad,
        "path": os.fspath(out),
    }
