"""Conservation and accuracy audits of rollouts: metrics, structural checks, a typed report, plots.

``audit_trajectories(states, t, system=..., reference=..., model=..., integrator=..., dt=...)`` audits
tensors; ``audit_file(path)`` audits a rollout file or a dataset file. Both return an
:class:`AuditReport`; ``report.failures()`` lists the violated :class:`Thresholds`. See ``docs/audit.md``.
"""

from hnnlab.audit.checker import audit_file, audit_trajectories
from hnnlab.audit.report import (
    AccuracyAudit,
    AuditReport,
    EnergyAudit,
    Failure,
    InvariantAudit,
    NonFiniteAudit,
    StructureAudit,
    Thresholds,
)

__all__ = [
    "AccuracyAudit",
    "AuditReport",
    "EnergyAudit",
    "Failure",
    "InvariantAudit",
    "NonFiniteAudit",
    "StructureAudit",
    "Thresholds",
    "audit_file",
    "audit_trajectories",
]
