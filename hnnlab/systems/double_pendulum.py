"""Double pendulum, in Lagrangian ``(theta, omega)`` and canonical ``(theta, p_theta)`` form."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.dynamics import split_state
from hnnlab.systems._mechanical import HamiltonianForm, LagrangianForm
from hnnlab.systems._params import interval
from hnnlab.systems.base import (
    AbstractHamiltonianSystem,
    AbstractLagrangianSystem,
    require_positive,
    uniform,
)
from hnnlab.systems.registry import register_system


@dataclass
class _DoublePendulumParameters:
    """Parameters, mass matrix, potential and sampling shared by both forms.

    Angles are measured from the downward vertical; bob 1 hangs from the pivot on a massless rod of
    length ``l1``, bob 2 from bob 1 on a rod of length ``l2``. With ``delta = theta1 - theta2``:

    ``M(theta) = [[(m1 + m2) l1^2, m2 l1 l2 cos(delta)], [m2 l1 l2 cos(delta), m2 l2^2]]``,
    ``V(theta) = -(m1 + m2) g l1 cos(theta1) - m2 g l2 cos(theta2)``.
    """

    m1: float = 1.0
    m2: float = 1.0
    l1: float = 1.0
    l2: float = 1.0
    g: float = 9.8
    angle_range: tuple[float, float] = (0.0, 2 * math.pi)
    velocity_range: tuple[float, float] = (-10.0, 10.0)

    dof: ClassVar[int] = 2

    def __post_init__(self) -> None:
        require_positive(self, m1=self.m1, m2=self.m2, l1=self.l1, l2=self.l2, g=self.g)
        self.angle_range = interval(self, "angle_range", self.angle_range)
        self.velocity_range = interval(self, "velocity_range", self.velocity_range)

    def mass_matrix(self, q: Tensor) -> Tensor:
        """``M(theta)``, ``(..., 2) -> (..., 2, 2)``: ``T = omega^T M omega / 2`` and ``p = M omega``."""
        c = torch.cos(q[..., 0] - q[..., 1])
        a = torch.full_like(c, (self.m1 + self.m2) * self.l1**2)
        b = self.m2 * self.l1 * self.l2 * c
        d = torch.full_like(c, self.m2 * self.l2**2)
        return torch.stack([torch.stack([a, b], -1), torch.stack([b, d], -1)], -2)

    def potential(self, q: Tensor) -> Tensor:
        """``V(theta)``, ``(..., 2) -> (...,)``."""
        return -(self.m1 + self.m2) * self.g * self.l1 * torch.cos(q[..., 0]) - self.m2 * self.g * self.l2 * torch.cos(
            q[..., 1]
        )

    def velocities_to_momenta(self, q: Tensor, omega: Tensor) -> Tensor:
        """``p = M(theta) omega``, ``(..., 2)``."""
        c = torch.cos(q[..., 0] - q[..., 1])
        w1, w2 = omega[..., 0], omega[..., 1]
        p1 = (self.m1 + self.m2) * self.l1**2 * w1 + self.m2 * self.l1 * self.l2 * c * w2
        p2 = self.m2 * self.l2**2 * w2 + self.m2 * self.l1 * self.l2 * c * w1
        return torch.stack([p1, p2], dim=-1)

    def momenta_to_velocities(self, q: Tensor, p: Tensor) -> Tensor:
        """``omega = M(theta)^-1 p`` in closed form, ``(..., 2)``; ``det M = m2 l1^2 l2^2 (m1 + m2 sin^2 delta)``."""
        delta = q[..., 0] - q[..., 1]
        c = torch.cos(delta)
        D = self.m1 + self.m2 * torch.sin(delta) ** 2
        p1, p2 = p[..., 0], p[..., 1]
        w1 = (self.l2 * p1 - self.l1 * c * p2) / (self.l1**2 * self.l2 * D)
        w2 = ((self.m1 + self.m2) * self.l1 * p2 - self.m2 * self.l2 * c * p1) / (self.m2 * self.l1 * self.l2**2 * D)
        return torch.stack([w1, w2], dim=-1)

    def _sample_lagrangian(self, n: int, generator: torch.Generator) -> Tensor:
        """``theta ~ U(angle_range)^2``, ``omega ~ U(velocity_range)^2`` (Cranmer et al. 2020), float64 ``(n, 4)``."""
        theta = uniform((n, 2), *self.angle_range, generator)
        omega = uniform((n, 2), *self.velocity_range, generator)
        return torch.cat([theta, omega], dim=-1)


@register_system("double_pendulum")
@dataclass
class DoublePendulum(_DoublePendulumParameters, LagrangianForm, AbstractLagrangianSystem):
    """Double pendulum, Lagrangian form, state ``(theta1, theta2, omega1, omega2)``.

    Angles from the downward vertical, ``delta = theta1 - theta2``:

    ``L = (m1 + m2) l1^2 omega1^2 / 2 + m2 l2^2 omega2^2 / 2 + m2 l1 l2 omega1 omega2 cos(delta)
    + (m1 + m2) g l1 cos(theta1) + m2 g l2 cos(theta2)``.

    The Euler-Lagrange equations ``theta1'' + a1 theta2'' = f1``, ``theta2'' + a2 theta1'' = f2`` with
    ``a1 = (l2 / l1) m2 / (m1 + m2) cos(delta)``, ``a2 = (l1 / l2) cos(delta)``,
    ``f1 = -(l2 / l1) m2 / (m1 + m2) omega2^2 sin(delta) - (g / l1) sin(theta1)``,
    ``f2 = (l1 / l2) omega1^2 sin(delta) - (g / l2) sin(theta2)`` give the closed-form accelerations
    ``theta1'' = (f1 - a1 f2) / (1 - a1 a2)``, ``theta2'' = (f2 - a2 f1) / (1 - a1 a2)``.

    Defaults ``m1 = m2 = l1 = l2 = 1, g = 9.8`` and sampling ``theta ~ U(0, 2 pi)^2``,
    ``omega ~ U(-10, 10)^2`` follow Cranmer et al. (2020). :meth:`to_canonical` / :meth:`from_canonical`
    are the Legendre transform to and from :class:`DoublePendulumHamiltonian`'s ``(theta, p_theta)``.
    """

    name: ClassVar[str] = "double_pendulum"

    def accelerations(self, x: Tensor) -> Tensor:
        t1, t2, w1, w2 = x.unbind(-1)
        delta = t1 - t2
        ratio = self.m2 / (self.m1 + self.m2)
        a1 = (self.l2 / self.l1) * ratio * torch.cos(delta)
        a2 = (self.l1 / self.l2) * torch.cos(delta)
        f1 = -(self.l2 / self.l1) * ratio * w2**2 * torch.sin(delta) - (self.g / self.l1) * torch.sin(t1)
        f2 = (self.l1 / self.l2) * w1**2 * torch.sin(delta) - (self.g / self.l2) * torch.sin(t2)
        det = 1 - a1 * a2
        return torch.stack([(f1 - a1 * f2) / det, (f2 - a2 * f1) / det], dim=-1)

    def hamiltonian_form(self) -> DoublePendulumHamiltonian:
        """The same pendulum in canonical coordinates."""
        return DoublePendulumHamiltonian(**self.params())

    def state_names(self) -> list[str]:
        return ["theta1", "theta2", "omega1", "omega2"]


@register_system("double_pendulum_hamiltonian")
@dataclass
class DoublePendulumHamiltonian(_DoublePendulumParameters, HamiltonianForm, AbstractHamiltonianSystem):
    """Double pendulum, canonical form, state ``(theta1, theta2, p1, p2)`` with ``p = M(theta) omega``.

    Angles from the downward vertical, ``delta = theta1 - theta2``, ``D = m1 + m2 sin^2(delta)``:

    ``H = [m2 l2^2 p1^2 + (m1 + m2) l1^2 p2^2 - 2 m2 l1 l2 p1 p2 cos(delta)] / (2 m2 l1^2 l2^2 D)
    - (m1 + m2) g l1 cos(theta1) - m2 g l2 cos(theta2)``.

    Not separable (the kinetic term depends on ``delta``): explicit symplectic methods are not
    symplectic for it. Hamilton's equations in closed form, with ``C1 = p1 p2 sin(delta) / (l1 l2 D)``
    and ``C2 = [numerator of T] sin(2 delta) / (2 l1^2 l2^2 D^2)``:
    ``theta' = M^-1 p``, ``p1' = -(m1 + m2) g l1 sin(theta1) - C1 + C2``,
    ``p2' = -m2 g l2 sin(theta2) + C1 - C2``.

    Initial states are :class:`DoublePendulum`'s (same generator, same physical states) mapped
    through the Legendre transform.
    """

    name: ClassVar[str] = "double_pendulum_hamiltonian"

    def _kinetic_parts(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(numerator of T, D, delta)`` of states ``(..., 4)``, each ``(...,)``."""
        t1, t2, p1, p2 = x.unbind(-1)
        delta = t1 - t2
        numerator = (
            self.m2 * self.l2**2 * p1**2
            + (self.m1 + self.m2) * self.l1**2 * p2**2
            - 2 * self.m2 * self.l1 * self.l2 * p1 * p2 * torch.cos(delta)
        )
        return numerator, self.m1 + self.m2 * torch.sin(delta) ** 2, delta

    def hamiltonian(self, x: Tensor) -> Tensor:
        numerator, D, _ = self._kinetic_parts(x)
        return numerator / (2 * self.m2 * self.l1**2 * self.l2**2 * D) + self.potential(x[..., :2])

    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        q, p = split_state(x)
        return self.momenta_to_velocities(q, p)

    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        t1, t2, p1, p2 = x.unbind(-1)
        numerator, D, delta = self._kinetic_parts(x)
        C1 = p1 * p2 * torch.sin(delta) / (self.l1 * self.l2 * D)
        C2 = numerator * torch.sin(2 * delta) / (2 * self.l1**2 * self.l2**2 * D**2)
        dp1 = -(self.m1 + self.m2) * self.g * self.l1 * torch.sin(t1) - C1 + C2
        dp2 = -self.m2 * self.g * self.l2 * torch.sin(t2) + C1 - C2
        return torch.stack([dp1, dp2], dim=-1)

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        return torch.cat([self.dq_dt(t, x), self.dp_dt(t, x)], dim=-1)

    def lagrangian_form(self) -> DoublePendulum:
        """The same pendulum in Lagrangian coordinates."""
        return DoublePendulum(**self.params())

    def state_names(self) -> list[str]:
        return ["theta1", "theta2", "p1", "p2"]
