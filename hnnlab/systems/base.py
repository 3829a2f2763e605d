"""Base classes for analytic physical systems.

A system knows its equations of motion, its energy and other invariants, and how to sample initial
states. States have shape ``(..., 2 * dof)``: coordinates ``q`` first, then momenta ``p`` (canonical
systems) or velocities ``q_dot`` (Lagrangian systems).

To add a system, subclass one of

- :class:`AbstractSeparableHamiltonianSystem`: implement ``kinetic(p)``, ``potential(q)``, ``dof`` and
  ``sample_initial_states``; the vector field follows by automatic differentiation (override
  ``dq_dt``/``dp_dt`` with closed forms for speed);
- :class:`AbstractHamiltonianSystem`: implement ``hamiltonian(x)`` for a general ``H(q, p)``;
- :class:`AbstractLagrangianSystem`: implement ``lagrangian(x)`` for ``L(q, q_dot)``;

write the formula in the class docstring, declare parameters as dataclass fields with the literature's
defaults, and use it anywhere a system name is accepted as ``"package.module:ClassName"``::

    @dataclass
    class Quartic(AbstractSeparableHamiltonianSystem):
        '''H = p^2 / 2 + a q^4.'''
        name: ClassVar[str] = "quartic"
        a: float = 1.0
        dof: ClassVar[int] = 1
        def kinetic(self, p): return 0.5 * (p**2).sum(-1)
        def potential(self, q): return self.a * (q**4).sum(-1)
        def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
            return uniform(n, 2, -1.0, 1.0, generator, dtype=dtype, device=device)
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from hnnlab.dynamics import (
    euler_lagrange_accelerations,
    hamiltonian_vector_field,
    input_gradient,
    lagrangian_energy,
    split_state,
)
from hnnlab.errors import InvalidArgumentError
from hnnlab.fields import AbstractSeparableField, AbstractVectorField

Coordinates = Literal["canonical", "lagrangian"]
# The methods that take a state (..., 2 * dof): each one a class defines checks its argument first.
STATE_METHODS: tuple[str, ...] = ("vector_field", "energy", "dq_dt", "dp_dt")


def _check_states_of(cls: type) -> None:
    """Wrap each :data:`STATE_METHODS` method of ``cls`` (its own, or a mixin's that no system class wrapped yet) so
    that it checks its state first."""
    for name in STATE_METHODS:
        method = getattr(cls, name, None)
        if callable(method) and not getattr(method, "__isabstractmethod__", False):
            wrapped = _checking_state(method, takes_time=name != "energy")
            if wrapped is not method:
                setattr(cls, name, wrapped)


def _checking_state(method: Callable[..., Any], *, takes_time: bool) -> Callable[..., Any]:
    if getattr(method, "_checks_state", False):
        return method
    if takes_time:

        @functools.wraps(method)
        def checked(self: AbstractSystem, t: Tensor | float, x: Tensor) -> Any:
            if type(x) is not Tensor or x.ndim == 0 or x.shape[-1] != 2 * self.dof:  # the common case inline
                self.check_state(x)
            return method(self, t, x)
    else:

        @functools.wraps(method)
        def checked(self: AbstractSystem, x: Tensor) -> Any:  # type: ignore[misc]
            if type(x) is not Tensor or x.ndim == 0 or x.shape[-1] != 2 * self.dof:
                self.check_state(x)
            return method(self, x)

    checked._checks_state = True  # type: ignore[attr-defined]
    return checked


class AbstractSystem(AbstractVectorField):
    """An analytic dynamical system ``dx/dt = f(t, x)`` on states of shape ``(..., 2 * dof)``.

    Class attributes (the vector-field protocol of :mod:`hnnlab.fields`):
        name: the registry name (``get_system(name)``).
        coordinates: ``"canonical"`` for ``(q, p)``, ``"lagrangian"`` for ``(q, q_dot)``.
        is_separable: ``True`` when ``H = T(p) + V(q)`` in canonical coordinates, so that
            explicit symplectic integrators (leapfrog, Yoshida, ...) are symplectic for it; such systems
            are :class:`~hnnlab.fields.AbstractSeparableField` and provide ``dq_dt`` and ``dp_dt``.
        conservative: ``False`` for systems that lose energy (the audit's negative case).

    Every :data:`STATE_METHODS` method (``vector_field``, and so ``__call__``, ``energy``, ``dq_dt``, ``dp_dt``)
    that a subclass defines is wrapped when the class is created so that it first checks its state
    (:meth:`check_state`): a state of the wrong size is a clear error, never a wrong number.
    """

    name: ClassVar[str] = ""
    coordinates: ClassVar[Coordinates] = "canonical"
    is_separable: ClassVar[bool] = False
    conservative: ClassVar[bool] = True

    @property
    @abc.abstractmethod
    def dof(self) -> int:
        """Number of degrees of freedom (the state has ``2 * dof`` entries)."""

    @abc.abstractmethod
    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        """``dx/dt`` at time ``t`` and states ``x`` of shape ``(..., 2 * dof)``."""

    @abc.abstractmethod
    def energy(self, x: Tensor) -> Tensor:
        """Total energy of states ``(..., 2 * dof)``, shape ``(...,)``."""

    @abc.abstractmethod
    def sample_initial_states(
        self,
        n: int,
        generator: torch.Generator,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``n`` initial states, shape ``(n, 2 * dof)``, drawn from ``generator`` (on the CPU).

        The same generator state gives the same states on every device and dtype.
        """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_states_of(cls)

    def check_state(self, x: Tensor) -> None:
        """Raise a clear error, naming the system, unless ``x`` is a tensor of shape ``(..., 2 * dof)``."""
        if isinstance(x, Tensor) and x.ndim > 0 and x.shape[-1] == 2 * self.dof:
            return
        got = f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise InvalidArgumentError(
            f"{type(self).__name__}: the state must have shape (..., 2 * dof) = (..., {2 * self.dof}), "
            f"coordinates then {'momenta' if self.coordinates == 'canonical' else 'velocities'}; got {got}"
        )

    # ----------------------------------------------------------------------------------------------
    # Concrete helpers shared by every system.

    def __call__(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self.vector_field(t, x)

    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        """The coordinate part of the vector field, ``(..., dof)`` (a slice of it; separable systems, which are
        :class:`~hnnlab.fields.AbstractSeparableField`, evaluate it alone)."""
        return self.vector_field(t, x)[..., : self.dof]

    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        """The momentum (or velocity) part of the vector field, ``(..., dof)`` (see :meth:`dq_dt`)."""
        return self.vector_field(t, x)[..., self.dof :]

    def invariants(self, x: Tensor) -> dict[str, Tensor]:
        """Conserved quantities of states ``(..., 2 * dof)``, each of shape ``(...,)``.

        Always contains ``"energy"`` (conserved only when :attr:`conservative`); body problems add
        linear and angular momentum.
        """
        return {"energy": self.energy(x)}

    def state_names(self) -> list[str]:
        """Names of the ``2 * dof`` state components, coordinates first."""
        second = "p" if self.coordinates == "canonical" else "qdot"
        if self.dof == 1:
            return ["q", second]
        return [f"q{i}" for i in range(self.dof)] + [f"{second}{i}" for i in range(self.dof)]

    def params(self) -> dict[str, Any]:
        """Constructor parameters, JSON-serialisable (tuples become lists)."""
        if dataclasses.is_dataclass(self):
            return {
                f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init
            }
        return {}

    def describe(self) -> dict[str, Any]:
        """Self-description for dataset and rollout metadata."""
        cls = type(self)
        return {
            "name": self.name or f"{cls.__module__}:{cls.__qualname__}",
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "params": self.params(),
            "coordinates": self.coordinates,
            "dof": self.dof,
            "is_separable": self.is_separable,
            "conservative": self.conservative,
            "state_names": self.state_names(),
        }


_check_states_of(AbstractSystem)


class AbstractHamiltonianSystem(AbstractSystem):
    """A system given by a Hamiltonian ``H(q, p)``: ``dq/dt = dH/dp``, ``dp/dt = -dH/dq``."""

    coordinates: ClassVar[Coordinates] = "canonical"

    @abc.abstractmethod
    def hamiltonian(self, x: Tensor) -> Tensor:
        """``H`` of states ``(..., 2 * dof)``, shape ``(...,)``."""

    def energy(self, x: Tensor) -> Tensor:
        return self.hamiltonian(x)

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        return hamiltonian_vector_field(self.hamiltonian, x)


class AbstractSeparableHamiltonianSystem(AbstractHamiltonianSystem, AbstractSeparableField):
    """``H(q, p) = T(p) + V(q)``: explicit symplectic integrators are symplectic for it."""

    is_separable: ClassVar[bool] = True

    @abc.abstractmethod
    def kinetic(self, p: Tensor) -> Tensor:
        """Kinetic energy ``T(p)``, ``(..., dof) -> (...,)``."""

    @abc.abstractmethod
    def potential(self, q: Tensor) -> Tensor:
        """Potential energy ``V(q)``, ``(..., dof) -> (...,)``."""

    def hamiltonian(self, x: Tensor) -> Tensor:
        q, p = split_state(x)
        return self.kinetic(p) + self.potential(q)

    def dq_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        return input_gradient(self.kinetic, x[..., self.dof :])

    def dp_dt(self, t: Tensor | float, x: Tensor) -> Tensor:
        return -input_gradient(self.potential, x[..., : self.dof])

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        return torch.cat([self.dq_dt(t, x), self.dp_dt(t, x)], dim=-1)


class AbstractLagrangianSystem(AbstractSystem):
    """A system given by a Lagrangian ``L(q, q_dot)``; states are ``(q, q_dot)``.

    ``dx/dt = (q_dot, q_dd)`` with ``q_dd`` from the Euler-Lagrange equations, and energy
    ``E = q_dot . dL/dq_dot - L``. Explicit symplectic methods are not symplectic in these
    coordinates, so Lagrangian systems declare ``is_separable = False``.
    """

    coordinates: ClassVar[Coordinates] = "lagrangian"
    is_separable: ClassVar[bool] = False

    @abc.abstractmethod
    def lagrangian(self, x: Tensor) -> Tensor:
        """``L`` of states ``(..., 2 * dof)``, shape ``(...,)``."""

    def accelerations(self, x: Tensor) -> Tensor:
        """``q_dd`` of states ``(..., 2 * dof)``, shape ``(..., dof)``."""
        return euler_lagrange_accelerations(self.lagrangian, x)

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        return torch.cat([x[..., self.dof :], self.accelerations(x)], dim=-1)

    def energy(self, x: Tensor) -> Tensor:
        return lagrangian_energy(self.lagrangian, x)


# --------------------------------------------------------------------------------------------------
# Helpers for subclasses.


def require_positive(owner: object, **values: float) -> None:
    """Raise a clear error for any parameter that is not a finite positive number."""
    for key, value in values.items():
        message = f"{type(owner).__name__}: parameter {key!r} must be finite and > 0, got {value!r}"
        try:
            v = None if isinstance(value, bool | str) else torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            v = None
        if v is None:  # not a number (or a list of numbers): a type error, named (get_system says which system)
            raise TypeError(message)
        if not bool(torch.isfinite(v).all()) or bool((v <= 0).any()):
            raise InvalidArgumentError(
                f"{type(owner).__name__}: parameter {key!r} must be finite and > 0, got {value!r}"
            )


def uniform(
    shape: int | tuple[int, ...],
    low: float,
    high: float,
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Uniform samples in ``[low, high)`` drawn in float64 on the CPU from ``generator``."""
    shape = (shape,) if isinstance(shape, int) else shape
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return (low + (high - low) * u).to(dtype=dtype, device=device)


def normal(
    shape: int | tuple[int, ...],
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Standard normal samples drawn in float64 on the CPU from ``generator``."""
    shape = (shape,) if isinstance(shape, int) else shape
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)


def check_sample_args(n: int, generator: torch.Generator) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InvalidArgumentError(f"n must be a positive integer, got {n!r}")
    if not isinstance(generator, torch.Generator):
        raise InvalidArgumentError(
            f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), got "
            f"{type(generator).__name__}"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Tensor):
        return value.tolist()
    return value
