"""Constraint drift along saved trajectories of a constrained system or model (Cartesian coordinates with rigid links).

The exact flow of a constrained field (:mod:`hnnlab.systems.constrained`, :class:`hnnlab.models.CHNN`) keeps the
holonomic constraints ``phi(x) = |x_i - x_j|^2 - l^2 = 0`` and their time derivative ``G(x) v = 0``; a rollout keeps
them up to the integrator's error (Gauss methods to round-off: both are quadratic invariants of the projected field).
:func:`constraint_audit` measures

    ``max |Phi| = max_{trajectory, time, constraint} |phi_c(x)|``

over the trajectories finite to the horizon, and the velocity constraint ``max |G v|`` beside it. Without the
lengths (a model given only which bodies are linked) ``phi`` is measured from each trajectory's first state,
``|x_i - x_j|^2 - |x_i(0) - x_j(0)|^2``, which is the same number for a first state on the manifold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from hnnlab.dynamics import split_state
from hnnlab.systems.constrained import DistanceConstraints


@dataclass
class ConstraintAudit:
    """The constraint-drift section of an audit.

    Attributes:
        source: whose constraints were measured (``"system"`` or ``"model"``) and how many.
        max_violation: ``max |phi(x)|`` over trajectories, times and constraints (the drift when the first states are
            on the manifold).
        initial_violation: the same at the first saved time.
        max_velocity_violation: ``max |G(x) v|``, with ``v`` the velocities of the states in that field's
            coordinates (``M^-1 p`` with its own mass for canonical states).
        per_trajectory: ``max_t max_c |phi_c|`` per trajectory (``None`` for trajectories that turned non-finite).
        relative_to_first_state: ``True`` when the lengths were not known and ``phi`` was measured from each
            trajectory's first state.
    """

    source: str
    n_constraints: int
    max_violation: float
    initial_violation: float
    max_velocity_violation: float
    per_trajectory: list[float | None]
    relative_to_first_state: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def constraint_audit(
    constraints: DistanceConstraints, states: Tensor, velocities: Tensor, mask: Tensor, source: str
) -> ConstraintAudit:
    """Constraint drift of ``states`` ``(n_traj, n_times, 2 * dof)`` whose velocities are ``velocities``
    ``(n_traj, n_times, dof)``, over the saved times where ``mask`` ``(n_traj, n_times)`` is true."""
    q, _ = split_state(states.detach().to(torch.float64))
    v = velocities.detach().to(torch.float64)
    squared = constraints.squared_distances(q)  # (n_traj, n_times, C)
    relative = not constraints.lengths_known
    phi = squared - squared[:, :1] if relative else squared - constraints.tensors(q)[2] ** 2
    gv = constraints.velocity_constraint(q, v)  # (n_traj, n_times, C)
    keep = mask.to(phi.device)[..., None]
    per_step = torch.where(keep, phi.abs(), torch.zeros_like(phi)).amax(-1)  # (n_traj, n_times)
    finite = mask.all(dim=1)
    per_trajectory = [float(p) if bool(ok) else None for p, ok in zip(per_step.amax(-1), finite, strict=True)]
    return ConstraintAudit(
        source=source,
        n_constraints=constraints.count,
        max_violation=float(per_step.max()),
        initial_violation=float(torch.where(keep[:, 0], phi[:, 0].abs(), torch.zeros_like(phi[:, 0])).max()),
        max_velocity_violation=float(torch.where(keep, gv.abs(), torch.zeros_like(gv)).max()),
        per_trajectory=per_trajectory,
        relative_to_first_state=relative,
    )
