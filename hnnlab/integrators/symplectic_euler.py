"""Symplectic Euler (kick then drift)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.integrators.base import AbstractIntegrator, VectorField, join_state, split_field
from hnnlab.integrators.registry import register_integrator


@register_integrator("symplectic_euler")
class SymplecticEuler(AbstractIntegrator):
    """Symplectic Euler, momentum first: ``p' = p + dt dp/dt(q, p)``, ``q' = q + dt dq/dt(q, p')``.

    Order 1, explicit, symplectic for a separable ``H = T(p) + V(q)`` (where ``dp/dt`` depends on ``q``
    only and ``dq/dt`` on ``p`` only, so each substep is an exact shear flow). Not symmetric: its adjoint
    is the drift-first variant. Two half-field evaluations per step.
    """

    name: ClassVar[str] = "symplectic_euler"
    order: ClassVar[int] = 1
    symplectic: ClassVar[bool] = True
    explicit: ClassVar[bool] = True
    symmetric: ClassVar[bool] = False
    requires_separable: ClassVar[bool] = True

    def _step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        dq_dt, dp_dt = split_field(f)
        dof = x.shape[-1] // 2
        q, p = x[..., :dof], x[..., dof:]
        p_new = torch.add(p, dp_dt(t, x), alpha=dt)
        q_new = torch.add(q, dq_dt(t, join_state(q, p_new)), alpha=dt)
        return join_state(q_new, p_new)
