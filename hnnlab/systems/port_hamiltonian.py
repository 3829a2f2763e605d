"""Open (driven and damped) systems in port-Hamiltonian form.

``dx/dt = (J - R(x)) grad H(x) + F(t, x) + G(x) u(t)`` with ``x = (q, p)``, ``J = [[0, I], [-I, 0]]``, a
dissipation matrix ``R(x)`` that is symmetric positive semi-definite, an external force ``F`` and an input map
``G`` with inputs ``u``. Since ``grad H^T J grad H = 0``, the energy balance along any solution is

    dH/dt = -grad H^T R grad H + grad H^T (F + G u),

the dissipated power (``<= 0``) plus the power the force and the inputs inject: the audit checks this balance
instead of conservation for these systems (:func:`hnnlab.audit.balance.energy_balance`).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.dynamics import input_gradient
from hnnlab.errors import InvalidArgumentError
from hnnlab.systems._params import interval, require_count
from hnnlab.systems.base import AbstractSystem, check_sample_args, require_positive, uniform
from hnnlab.systems.registry import register_system


class AbstractPortHamiltonianSystem(AbstractSystem):
    """A port-Hamiltonian system ``dx/dt = (J - R) grad H + F(t, x) + G(x) u(t)`` in canonical coordinates.

    Subclasses define :meth:`hamiltonian` and :meth:`dissipation`, and where they have them :meth:`force`,
    :meth:`input_map` with ``n_inputs > 0`` and :meth:`inputs`. ``conservative`` is ``False`` (energy is
    exchanged with the environment); :meth:`energy_rate` and its parts give the balance in closed form.
    """

    conservative: ClassVar[bool] = False
    n_inputs: ClassVar[int] = 0

    @abc.abstractmethod
    def hamiltonian(self, x: Tensor) -> Tensor:
        """``H(x)``, ``(...,)``."""

    @abc.abstractmethod
    def dissipation(self, x: Tensor) -> Tensor:
        """``R(x)``, ``(..., 2 * dof, 2 * dof)``, symmetric positive semi-definite."""

    def force(self, t: Tensor | float, x: Tensor) -> Tensor:
        """The external force ``F(t, x)``, ``(..., 2 * dof)`` (zero unless a subclass has one)."""
        return torch.zeros_like(x)

    def input_map(self, x: Tensor) -> Tensor:
        """``G(x)``, ``(..., 2 * dof, n_inputs)``."""
        return x.new_zeros(*x.shape, self.n_inputs)

    def inputs(self, t: Tensor | float, x: Tensor) -> Tensor:
        """The inputs ``u(t)``, ``(..., n_inputs)`` (the batch shape of ``x``)."""
        return x.new_zeros(*x.shape[:-1], self.n_inputs)

    def input_names(self) -> list[str]:
        """Names of the inputs, ``n_inputs`` of them (``u1, u2, ...``)."""
        return [f"u{i + 1}" for i in range(self.n_inputs)]

    def grad_hamiltonian(self, x: Tensor) -> Tensor:
        """``grad H(x)``, ``(..., 2 * dof)`` (autograd unless a subclass writes it in closed form)."""
        return input_gradient(self.hamiltonian, x)

    def energy(self, x: Tensor) -> Tensor:
        return self.hamiltonian(x)

    def drive(self, t: Tensor | float, x: Tensor, u: Tensor | None = None) -> Tensor:
        """What the environment adds, ``F(t, x) + G(x) u``, ``(..., 2 * dof)``, with the inputs ``u``
        ``(..., n_inputs)`` given, or else the system's own :meth:`inputs`."""
        out = self.force(t, x)
        if self.n_inputs:
            u = self.inputs(t, x) if u is None else u
            out = out + (self.input_map(x) @ u[..., None])[..., 0]
        return out

    def _damping(self, x: Tensor, grad: Tensor) -> Tensor:
        """``R(x) grad H``, ``(..., 2 * dof)``."""
        return (self.dissipation(x) @ grad[..., None])[..., 0]

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self.field_with_inputs(t, x, None)

    def field_with_inputs(self, t: Tensor | float, x: Tensor, u: Tensor | None) -> Tensor:
        """``dx/dt`` with the inputs ``u`` ``(..., n_inputs)`` in place of the system's own :meth:`inputs` (``None``:
        its own); :class:`hnnlab.inputs.DrivenField` calls it with per-trajectory inputs."""
        self.check_state(x)
        if u is not None and (self.n_inputs == 0 or u.shape != (*x.shape[:-1], self.n_inputs)):
            raise InvalidArgumentError(
                f"{type(self).__name__} takes n_inputs = {self.n_inputs} inputs: u must have shape "
                f"{(*x.shape[:-1], self.n_inputs)} for states of shape {tuple(x.shape)}, got {tuple(u.shape)}"
            )
        grad = self.grad_hamiltonian(x)
        dof = self.dof
        j_grad = torch.cat([grad[..., dof:], -grad[..., :dof]], dim=-1)  # J grad H
        return j_grad - self._damping(x, grad) + self.drive(t, x, u)

    def dissipated_power(self, x: Tensor) -> Tensor:
        """``-grad H^T R grad H``, ``(...,)``, ``<= 0``."""
        grad = self.grad_hamiltonian(x)
        return -(grad * self._damping(x, grad)).sum(-1)

    def injected_power(self, t: Tensor | float, x: Tensor, u: Tensor | None = None) -> Tensor:
        """``grad H^T (F + G u)``, ``(...,)``, with the inputs ``u`` ``(..., n_inputs)`` given, or else the system's
        own :meth:`inputs`."""
        return (self.grad_hamiltonian(x) * self.drive(t, x, u)).sum(-1)

    def energy_rate(self, t: Tensor | float, x: Tensor) -> Tensor:
        """``dH/dt`` along the flow, ``grad H^T (-R grad H + F + G u)`` (``grad H^T J grad H = 0``): the sum of
        :meth:`dissipated_power` and :meth:`injected_power`, ``(...,)``."""
        grad = self.grad_hamiltonian(x)
        return (grad * (self.drive(t, x) - self._damping(x, grad))).sum(-1)


def _momentum_damping(x: Tensor, damping: Tensor | float, dof: int) -> Tensor:
    """``R = diag(0, ..., 0, c_1, ..., c_dof)`` broadcast to ``x``'s batch shape."""
    diag = torch.zeros(2 * dof, dtype=x.dtype, device=x.device)
    diag[dof:] = torch.as_tensor(damping, dtype=x.dtype, device=x.device)
    return torch.diag(diag).expand(*x.shape[:-1], 2 * dof, 2 * dof)


def _cosine_drive(t: Tensor | float, x: Tensor, amplitude: float, omega: float) -> Tensor:
    """``F = (0, amplitude cos(omega t))`` for a one-degree-of-freedom state ``x`` ``(..., 2)``."""
    drive = amplitude * torch.cos(torch.as_tensor(omega * t, dtype=x.dtype, device=x.device))
    return torch.stack([torch.zeros_like(x[..., 0]), drive.expand_as(x[..., 1])], dim=-1)


def _require_nonnegative(owner: object, **values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise InvalidArgumentError(
                f"{type(owner).__name__}: parameter {name!r} must be a number >= 0, got {value!r}"
            )


def _in_box(n: int, box: tuple[tuple[float, float], ...], generator: torch.Generator) -> Tensor:
    return torch.stack([uniform(n, low, high, generator) for low, high in box], dim=-1)


@register_system("duffing")
@dataclass
class ForcedDuffing(AbstractPortHamiltonianSystem):
    """The forced, damped Duffing oscillator ``q'' + delta q' + alpha q + beta q^3 = gamma cos(omega t)``.

    ``H = p^2 / 2 + alpha q^2 / 2 + beta q^4 / 4``, ``R = diag(0, delta)``, ``F = (0, gamma cos(omega t))``.
    The defaults ``alpha = -1, beta = 1, delta = 0.3, gamma = 0.5, omega = 1.2`` (a double well driven across its
    barrier) give the chaotic attractor of Guckenheimer and Holmes (1983, section 2.2). ``beta = 0`` with
    ``alpha > 0`` is the damped, forced linear oscillator (mass-spring-damper). Initial states uniform in
    ``q, p in [-1.5, 1.5]``.
    """

    name: ClassVar[str] = "duffing"
    dof: ClassVar[int] = 1
    alpha: float = -1.0
    beta: float = 1.0
    delta: float = 0.3
    gamma: float = 0.5
    omega: float = 1.2
    box: tuple[float, float] = (-1.5, 1.5)

    def __post_init__(self) -> None:
        require_positive(self, omega=self.omega)
        _require_nonnegative(self, beta=self.beta, delta=self.delta, gamma=self.gamma)
        if self.beta == 0 and not self.alpha > 0:  # H = p^2/2 + alpha q^2/2 must then be bounded below
            raise InvalidArgumentError(
                f"ForcedDuffing: beta = 0 (the linear oscillator) needs alpha > 0 (H bounded below), got alpha = "
                f"{self.alpha!r}"
            )
        self.box = interval(self, "box", self.box)

    def hamiltonian(self, x: Tensor) -> Tensor:
        q, p = x[..., 0], x[..., 1]
        return 0.5 * p**2 + 0.5 * self.alpha * q**2 + 0.25 * self.beta * q**4

    def grad_hamiltonian(self, x: Tensor) -> Tensor:
        q, p = x[..., 0], x[..., 1]
        return torch.stack([self.alpha * q + self.beta * q**3, p], dim=-1)

    def dissipation(self, x: Tensor) -> Tensor:
        return _momentum_damping(x, self.delta, 1)

    def force(self, t: Tensor | float, x: Tensor) -> Tensor:
        return _cosine_drive(t, x, self.gamma, self.omega)

    def state_names(self) -> list[str]:
        return ["q", "p"]

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        check_sample_args(n, generator)
        return _in_box(n, (self.box, self.box), generator).to(dtype=dtype, device=device)


@register_system("forced_pendulum")
@dataclass
class ForcedDampedPendulum(AbstractPortHamiltonianSystem):
    """The driven, damped pendulum ``theta'' + theta' / Q + sin(theta) = A cos(omega t)`` (time in units of
    ``1 / omega_0``).

    ``H = p^2 / 2 + 1 - cos(q)``, ``R = diag(0, 1 / Q)``, ``F = (0, A cos(omega t))``. The defaults ``Q = 2,
    A = 1.5, omega = 2/3`` are Baker and Gollub's chaotic regime (*Chaotic Dynamics*, 1990). Initial states
    uniform in ``q in [-pi, pi]``, ``p in [-2, 2]``.
    """

    name: ClassVar[str] = "forced_pendulum"
    dof: ClassVar[int] = 1
    quality: float = 2.0
    amplitude: float = 1.5
    omega: float = 2.0 / 3.0

    def __post_init__(self) -> None:
        require_positive(self, quality=self.quality, omega=self.omega)
        _require_nonnegative(self, amplitude=self.amplitude)

    def hamiltonian(self, x: Tensor) -> Tensor:
        return 0.5 * x[..., 1] ** 2 + 1.0 - torch.cos(x[..., 0])

    def grad_hamiltonian(self, x: Tensor) -> Tensor:
        return torch.stack([torch.sin(x[..., 0]), x[..., 1]], dim=-1)

    def dissipation(self, x: Tensor) -> Tensor:
        return _momentum_damping(x, 1.0 / self.quality, 1)

    def force(self, t: Tensor | float, x: Tensor) -> Tensor:
        return _cosine_drive(t, x, self.amplitude, self.omega)

    def state_names(self) -> list[str]:
        return ["theta", "p"]

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        check_sample_args(n, generator)
        return _in_box(n, ((-math.pi, math.pi), (-2.0, 2.0)), generator).to(dtype=dtype, device=device)


@register_system("spring_damper_chain")
@dataclass
class MassSpringDamperChain(AbstractPortHamiltonianSystem):
    """``n`` masses in a line, each tied to the previous one (the first to a wall) by a spring ``k`` and damped by
    ``c`` against the ground; a control force ``u(t)`` acts on the last mass.

    ``H = sum_i p_i^2 / (2 m) + k sum_i (q_i - q_{i-1})^2 / 2`` (``q_0 = 0``), ``R = diag(0, c I)``, ``G = e_{p_n}``
    (one input). The input is ``u(t) = input_amplitude sin(input_frequency t)`` (zero by default); datasets with
    other inputs set :meth:`inputs` per trajectory. Defaults ``n = 3, m = 1, k = 1, c = 0.1``. Initial states:
    displacements and momenta uniform in ``[-0.5, 0.5]``.
    """

    name: ClassVar[str] = "spring_damper_chain"
    n_inputs: ClassVar[int] = 1
    n: int = 3
    m: float = 1.0
    k: float = 1.0
    c: float = 0.1
    input_amplitude: float = 0.0
    input_frequency: float = 1.0

    def __post_init__(self) -> None:
        self.n = require_count(self, "n", self.n)
        require_positive(self, m=self.m, k=self.k, input_frequency=self.input_frequency)
        _require_nonnegative(self, c=self.c)

    @property
    def dof(self) -> int:
        return self.n

    def hamiltonian(self, x: Tensor) -> Tensor:
        q, p = x[..., : self.n], x[..., self.n :]
        stretch = torch.diff(q, dim=-1, prepend=torch.zeros_like(q[..., :1]))
        return (p**2).sum(-1) / (2 * self.m) + 0.5 * self.k * (stretch**2).sum(-1)

    def grad_hamiltonian(self, x: Tensor) -> Tensor:
        q, p = x[..., : self.n], x[..., self.n :]
        stretch = torch.diff(q, dim=-1, prepend=torch.zeros_like(q[..., :1]))  # q_i - q_{i-1}
        ahead = torch.cat([stretch[..., 1:], torch.zeros_like(q[..., :1])], dim=-1)  # q_{i+1} - q_i (0 at the end)
        return torch.cat([self.k * (stretch - ahead), p / self.m], dim=-1)

    def dissipation(self, x: Tensor) -> Tensor:
        return _momentum_damping(x, self.c, self.n)

    def input_map(self, x: Tensor) -> Tensor:
        g = x.new_zeros(*x.shape, 1)
        g[..., -1, 0] = 1.0
        return g

    def inputs(self, t: Tensor | float, x: Tensor) -> Tensor:
        u = self.input_amplitude * torch.sin(torch.as_tensor(self.input_frequency * t, dtype=x.dtype,
                                                             device=x.device))
        return u.expand(x.shape[:-1]).unsqueeze(-1)

    def state_names(self) -> list[str]:
        return [f"q{i + 1}" for i in range(self.n)] + [f"p{i + 1}" for i in range(self.n)]

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        check_sample_args(n, generator)
        return _in_box(n, ((-0.5, 0.5),) * (2 * self.n), generator).to(dtype=dtype, device=device)
