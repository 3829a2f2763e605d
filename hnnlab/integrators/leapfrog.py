"""Leapfrog / Stormer-Verlet (kick-drift-kick)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.integrators.base import (
    AbstractIntegrator,
    VectorField,
    declared_separable,
    join_state,
    split_field,
)
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

    def _steps(self, f: VectorField, t0: float, x: Tensor, dt: float, n_steps: int) -> Iterator[Tensor]:
        """Consecutive steps that evaluate the force once per step instead of twice.

        For a field that declares itself separable, ``dp/dt`` depends on ``q`` only, so the closing kick
        of one step and the opening kick of the next use the same force ``dp/dt(q_{n+1})``: it is
        evaluated once and reused ("first same as last"). The arithmetic is otherwise that of
        :meth:`_step`, so the states are the same, bit for bit. Fields that do not declare
        separability get the plain step-by-step loop.
        """
        if declared_separable(f) is not True:
            yield from super()._steps(f, t0, x, dt, n_steps)
            return
        dq_dt, dp_dt = split_field(f)
        dof = x.shape[-1] // 2
        half = 0.5 * dt
        q, p = x[..., :dof], x[..., dof:]  # (..., dof) each
        force = dp_dt(t0, x)
        for k in range(n_steps):
            t = t0 + k * dt
            p_half = torch.add(p, force, alpha=half)
            q = torch.add(q, dq_dt(t + half, join_state(q, p_half)), alpha=dt)
            force = dp_dt(t + dt, join_state(q, p_half))
            p = torch.add(p_half, force, alpha=half)
            yield join_state(q, p)
