"""Analytic physical systems: equations of motion, energy, invariants, initial states.

``get_system(name, **params)`` builds one by registered name or ``package.module:ClassName``;
``SYSTEMS.names()`` lists the registered names. To add your own, subclass one of the base classes
(see :mod:`hnnlab.systems.base`) and pass ``"your.module:YourClass"`` wherever a system name is taken.
"""

from hnnlab.systems import chain_pendulum as _chain_pendulum  # noqa: F401  (registers)
from hnnlab.systems import constrained as _constrained  # noqa: F401
from hnnlab.systems import coupled_oscillators as _coupled_oscillators  # noqa: F401
from hnnlab.systems import damped_oscillator as _damped_oscillator  # noqa: F401
from hnnlab.systems import double_pendulum as _double_pendulum  # noqa: F401
from hnnlab.systems import henon_heiles as _henon_heiles  # noqa: F401
from hnnlab.systems import mass_spring as _mass_spring  # noqa: F401
from hnnlab.systems import pendulum as _pendulum  # noqa: F401
from hnnlab.systems import port_hamiltonian as _port_hamiltonian  # noqa: F401
from hnnlab.systems import three_body as _three_body  # noqa: F401
from hnnlab.systems import two_body as _two_body  # noqa: F401
from hnnlab.systems._nbody import AbstractPlanarGravity as AbstractPlanarGravity
from hnnlab.systems.base import AbstractHamiltonianSystem as AbstractHamiltonianSystem
from hnnlab.systems.base import AbstractLagrangianSystem as AbstractLagrangianSystem
from hnnlab.systems.base import AbstractSeparableHamiltonianSystem as AbstractSeparableHamiltonianSystem
from hnnlab.systems.base import AbstractSystem as AbstractSystem
from hnnlab.systems.chain_pendulum import ChainPendulum as ChainPendulum
from hnnlab.systems.chain_pendulum import ChainPendulumHamiltonian as ChainPendulumHamiltonian
from hnnlab.systems.coupled_oscillators import CoupledOscillators as CoupledOscillators
from hnnlab.systems.damped_oscillator import DampedOscillator as DampedOscillator
from hnnlab.systems.double_pendulum import DoublePendulum as DoublePendulum
from hnnlab.systems.double_pendulum import DoublePendulumHamiltonian as DoublePendulumHamiltonian
from hnnlab.systems.henon_heiles import HenonHeiles as HenonHeiles
from hnnlab.systems.mass_spring import MassSpring as MassSpring
from hnnlab.systems.pendulum import Pendulum as Pendulum
from hnnlab.systems.port_hamiltonian import AbstractPortHamiltonianSystem as AbstractPortHamiltonianSystem
from hnnlab.systems.port_hamiltonian import ForcedDampedPendulum as ForcedDampedPendulum
from hnnlab.systems.port_hamiltonian import ForcedDuffing as ForcedDuffing
from hnnlab.systems.port_hamiltonian import MassSpringDamperChain as MassSpringDamperChain
from hnnlab.systems.registry import SYSTEMS as SYSTEMS
from hnnlab.systems.registry import get_system as get_system
from hnnlab.systems.three_body import ThreeBody as ThreeBody
from hnnlab.systems.two_body import TwoBody as TwoBody

__all__ = [
    "AbstractHamiltonianSystem",
    "AbstractLagrangianSystem",
    "AbstractPlanarGravity",
    "AbstractPortHamiltonianSystem",
    "AbstractSeparableHamiltonianSystem",
    "AbstractSystem",
    "ChainPendulum",
    "ChainPendulumHamiltonian",
    "CoupledOscillators",
    "DampedOscillator",
    "DoublePendulum",
    "DoublePendulumHamiltonian",
    "ForcedDampedPendulum",
    "ForcedDuffing",
    "HenonHeiles",
    "MassSpring",
    "MassSpringDamperChain",
    "Pendulum",
    "SYSTEMS",
    "ThreeBody",
    "TwoBody",
    "get_system",
]
