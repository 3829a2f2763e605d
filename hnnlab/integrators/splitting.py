"""Explicit splitting (kick-drift) methods for separable Hamiltonians, and the loop they share.

For ``H = T(p) + V(q)`` the flows of ``T`` alone (a *drift*, ``q += a dt dT/dp(p)``) and of ``V`` alone
(a *kick*, ``p += b dt (-dV/dq(q))``) are exact shears, hence symplectic, and so is any composition
``K(b_m dt) D(a_{m-1} dt) ... K(b_1 dt) D(a_0 dt) K(b_0 dt)``. A method is its coefficient lists: leapfrog
is ``kicks = (1/2, 1/2)``, ``drifts = (1,)``; symplectic Euler ``kicks = (1, 0)``, ``drifts = (1,)``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.fields import declared_separable, split_field
from hnnlab.integrators.base import AbstractIntegrator, SolverState, VectorField, join_state


def kick_drift(
    f: VectorField,
    t: Tensor | float,
    x: Tensor,
    dt: float,
    kicks: tuple[float, ...],
    drifts: tuple[float, ...],
    first_force: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Apply ``K(kicks[0] dt)``, ``D(drifts[0] dt)``, ``K(kicks[1] dt)``, ..., ``K(kicks[-1] dt)`` to ``x``.

    A kick evaluates ``dp/dt`` at the current state (at the time reached by the drifts so far), a drift
    evaluates ``dq/dt`` at the current state and the middle of its time interval; zero coefficients are
    skipped. ``first_force``, when given, replaces the first kick's ``dp/dt(t, x)``. Returns the new state
    ``(..., 2 * dof)`` and the last kick's force (``None`` when that kick is zero).

    Without a graph to record (gradients disabled: rollouts, simulation) the additions update a copy of ``x``
    in place, so that the halves see the current state without a ``torch.cat`` per evaluation; the values are
    the same either way. A half may return a view of the state it is given (``dq/dt = p``): a kick reads only
    ``q`` and writes only ``p`` (a drift the reverse), the last kick comes after the last drift (so its force,
    kept for the next step, is not written after it is computed), and ``x`` itself is never written.
    """
    dq_dt, dp_dt = split_field(f)
    in_place = not torch.is_grad_enabled()
    if in_place:
        x = x.clone()
    dof = x.shape[-1] // 2
    q, p = x[..., :dof], x[..., dof:]
    current: Tensor | None = x  # the join of (q, p) while it is up to date, else None
    add = Tensor.add_ if in_place else torch.add  # add(a, b, alpha=c): a + c b, in place or new

    tau = t
    force = None
    for i, b in enumerate(kicks):
        force = None
        if b:
            if i == 0 and first_force is not None:
                force = first_force
            else:
                force = dp_dt(tau, current if current is not None else join_state(q, p))
            p = add(p, force, alpha=b * dt)
            current = x if in_place else None
        if i < len(drifts):
            a = drifts[i]
            velocity = dq_dt(tau + 0.5 * a * dt, current if current is not None else join_state(q, p))
            q = add(q, velocity, alpha=a * dt)
            tau = tau + a * dt
            current = x if in_place else None
    return (current if current is not None else join_state(q, p)), force


class AbstractSplittingIntegrator(AbstractIntegrator):
    """A kick-drift composition given by the class attributes ``kicks`` and ``drifts`` (fractions of ``dt``,
    ``len(kicks) == len(drifts) + 1``, ``sum(drifts) == 1``).

    Explicit, symplectic for a separable ``H = T(p) + V(q)`` (and refused, unless
    ``allow_nonseparable=True``, for fields that declare themselves non-separable).
    """

    kicks: ClassVar[tuple[float, ...]]
    drifts: ClassVar[tuple[float, ...]]
    symplectic: ClassVar[bool] = True
    explicit: ClassVar[bool] = True
    requires_separable: ClassVar[bool] = True

    def _step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        return kick_drift(f, t, x, dt, self.kicks, self.drifts)[0]

    def init(self, f: VectorField, t0: float, x0: Tensor, dt: float) -> SolverState:
        """The first step's opening force ``dp/dt(t0, x0)`` ``(batch, dof)`` where :meth:`advance` reuses forces
        (the force that step would evaluate itself, so the states are the same), else ``None``. With it, the solver
        state has one form at every step (a compiled chunk of steps is traced once)."""
        if not (self.kicks[0] and self.kicks[-1]) or declared_separable(f) is not True:
            return None
        return split_field(f)[1](t0, x0)

    def advance(
        self, f: VectorField, t: float, x: Tensor, dt: float, state: SolverState
    ) -> tuple[Tensor, SolverState, None]:
        """One step that reuses the previous step's last force as its first ("first same as last").

        For a separable field, ``dp/dt`` depends on ``q`` only, so the last kick of one step and the first
        kick of the next use the same force: the solver state holds it (``(batch, dof)``, ``None`` before the
        first step) and it is evaluated once. The arithmetic is otherwise that of :meth:`_step`, so the states
        are the same, bit for bit. Other fields, and methods whose first or last kick is zero, keep no state.
        """
        if not (self.kicks[0] and self.kicks[-1]) or declared_separable(f) is not True:
            return self._step(f, t, x, dt), None, None
        x_new, force = kick_drift(f, t, x, dt, self.kicks, self.drifts, state)
        return x_new, force, None

    def restart(self, f: VectorField, t: float, x: Tensor, state: SolverState) -> SolverState:
        """Drop the last kick's force: after a jump of the field the next step evaluates its own."""
        return None
