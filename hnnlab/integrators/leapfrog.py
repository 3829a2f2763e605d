"""Leapfrog / Stormer-Verlet (kick-drift-kick)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.integrators.base import AbstractIntegrator, VectorField, join_state, split_field
from hnnlab.integrators.registry import register_integrator


def leapfrog_substep(f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
    """One kick-drift-kick step (velocity Verlet): the building block of the composition methods.

    ``p_half = p + dt/2 dp/dt(q)``, ``q' = q + dt dq/dt(p_half)``, ``p' = p_half + dt/2 dp/dt(q')``.
    Each update is a single fused ``torch.add(..., alpha=...)`` (no separate scaling tensor).
    """
    dq_dt, dp_dt = split_field(f)
    dof = x.shape[-1] // 2
    q, p = x[..., :dof], x[..., dof:]
    half = 0.5 * dt
    p_half = torch.add(p, dp_dt(t, x), alpha=half)
    q_new = torch.add(q, dq_dt(t + half, join_state(q, p_half)), alpha=dt)
    p_new = torch.add(p_half, dp_dt(t + dt, join_state(q_new, p_half)), alpha=half)
    return join_state(q_new, p_new)


@register_integrator("leapfrog")
class Leapfrog(AbstractIntegrator):
    """Stormer-Verlet / leapfrog, kick-drift-kick. Order 2, symplectic and time-reversible for a
    separable ``H = T(p) + V(q)``; three half-field evaluations per step."""

    name: ClassVar[str] = "leapfrog"
    order: ClassVar[int] = 2
    symplectic: ClassVar[bool] = True
    explicit: ClassVar[bool] = True
    symmetric: ClassVar[bool] = True
    requires_separable: ClassVar[bool] = True

    def _step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        return leapfrog_substep(f, t, x, dt)
