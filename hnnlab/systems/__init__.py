"""Analytic physical systems: equations of motion, energy, invariants, initial states.

``get_system(name, **params)`` builds one by registered name or ``package.module:ClassName``.
"""

from hnnlab.systems import mass_spring as _mass_spring  # noqa: F401  (registers)
from hnnlab.systems import pendulum as _pendulum  # noqa: F401
from hnnlab.systems.base import (
    AbstractHamiltonianSystem as AbstractHamiltonianSystem,
    AbstractLagrangianSystem as AbstractLagrangianSystem,
    AbstractSeparableHamiltonianSystem as AbstractSeparableHamiltonianSystem,
    AbstractSystem as AbstractSystem,
)
from hnnlab.systems.mass_spring import MassSpring as MassSpring
from hnnlab.systems.pendulum import Pendulum as Pendulum
from hnnlab.systems.registry import SYSTEMS as SYSTEMS, get_system as get_system

__all__ = [
    "AbstractHamiltonianSystem",
    "AbstractLagrangianSystem",
    "AbstractSeparableHamiltonianSystem",
    "AbstractSystem",
    "MassSpring",
    "Pendulum",
    "SYSTEMS",
    "get_system",
]
