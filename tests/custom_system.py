"""A user-defined system, found by ``get_system("tests.custom_system:Quartic")`` without registration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.systems import AbstractSeparableHamiltonianSystem
from hnnlab.systems.base import check_sample_args, require_positive, uniform


@dataclass
class Quartic(AbstractSeparableHamiltonianSystem):
    """Quartic oscillator: ``H = p^2 / 2 + a q^4``."""

    name: ClassVar[str] = "quartic"
    dof: ClassVar[int] = 1
    a: float = 1.0

    def __post_init__(self) -> None:
        require_positive(self, a=self.a)

    def kinetic(self, p: Tensor) -> Tensor:
        return 0.5 * (p**2).sum(-1)

    def potential(self, q: Tensor) -> Tensor:
        return self.a * (q**4).sum(-1)

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        check_sample_args(n, generator)
        return uniform((n, 2), -1.0, 1.0, generator, dtype=dtype, device=device)


class NotASystem:
    """Has the right shape of API but does not subclass AbstractSystem: must be refused."""

    def vector_field(self, t, x):
        return x
