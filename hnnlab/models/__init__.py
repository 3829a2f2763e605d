"""Learned dynamics: Hamiltonian and Lagrangian networks and the baselines they must beat.

Every model is an :class:`AbstractModel`: a vector field ``model(t, x)`` usable with every integrator
and with :func:`hnnlab.rollout.rollout`, an ``energy(x)`` (``None`` for the baselines) and an
``is_separable`` flag. ``get_model(name, **kwargs)`` builds one by registered name.
"""

from hnnlab.models.base import AbstractModel as AbstractModel
from hnnlab.models.baselines import NeuralODE as NeuralODE
from hnnlab.models.baselines import SecondOrderNeuralODE as SecondOrderNeuralODE
from hnnlab.models.chnn import CHNN as CHNN
from hnnlab.models.chnn import CLNN as CLNN
from hnnlab.models.dissipative_hnn import DissipativeHNN as DissipativeHNN
from hnnlab.models.hnn import HNN as HNN
from hnnlab.models.lnn import LNN as LNN
from hnnlab.models.mlp import ACTIVATIONS as ACTIVATIONS
from hnnlab.models.mlp import MLP as MLP
from hnnlab.models.phnn import PortHamiltonianNN as PortHamiltonianNN
from hnnlab.models.registry import MODELS as MODELS
from hnnlab.models.registry import get_model as get_model
from hnnlab.models.separable_hnn import SeparableHNN as SeparableHNN
from hnnlab.models.structured_lnn import StructuredLNN as StructuredLNN

__all__ = [
    "ACTIVATIONS",
    "AbstractModel",
    "CHNN",
    "CLNN",
    "DissipativeHNN",
    "HNN",
    "LNN",
    "MLP",
    "MODELS",
    "NeuralODE",
    "PortHamiltonianNN",
    "SecondOrderNeuralODE",
    "SeparableHNN",
    "StructuredLNN",
    "get_model",
]
