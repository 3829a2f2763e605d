"""Base class for time integrators and the checks shared by all of them.

An integrator advances states ``x`` of shape ``(..., 2 * dof)`` by one step of size ``dt`` for a
vector field ``f(t, x) -> dx/dt``. Each declares, as class attributes, its ``order``, whether it is
``symplectic``, ``explicit`` and ``symmetric`` (time-reversible), and whether it
``requires_separable`` ``H = T(p) + V(q)`` to be symplectic. A separable-only method paired with a
vector field that declares ``is_separable = False`` is refused before any step runs, unless the
integrator was built with ``allow_nonseparable=True`` (then it warns once).

Two forms of a step:

- :meth:`AbstractIntegrator.step`, the public one-step call: checks its arguments and raises on failure
  (:class:`~hnnlab.errors.ConvergenceError` for an implicit solve that does not converge);
- :meth:`AbstractIntegrator.init` and :meth:`AbstractIntegrator.advance`, the kernel of the one time loop
  (:func:`hnnlab.rollout.solve`): ``advance(f, t, x, dt, state) -> (x_new, state, failed)`` carries solver
  state between steps (the first-same-as-last force of the splitting methods, the step sizes of the adaptive
  ones, as diffrax's ``solver_state``) and reports the trajectories whose step failed as a mask instead of
  raising, so that the loop can freeze them while the rest of the batch goes on. A solver state is ``None``,
  a tensor or a tuple of tensors whose first axis is the batch (the loop selects rows of it).
"""

from __future__ import annotations

import abc
import math
import warnings
from typing import Any, ClassVar

import torch
from torch import Tensor

from hnnlab.errors import IncompatibleIntegratorError, InvalidArgumentError
from hnnlab.fields import HalfField, VectorFieldFn, declared_separable, describe_field, split_field

VectorField = VectorFieldFn  # f(t, x: (..., 2 * dof)) -> (..., 2 * dof)
SolverState = Any  # None, a tensor or a tuple of tensors, batch first
__all__ = ["AbstractIntegrator", "HalfField", "SolverState", "VectorField", "check_dt", "split_field"]

_NAMED: dict[str, type[AbstractIntegrator]] = {}  # every named integrator class, for error messages


class AbstractIntegrator(abc.ABC):
    """A one-step method ``x_{n+1} = step(f, t_n, x_n, dt)``.

    Subclasses implement :meth:`_step` (a pure function of its arguments, differentiable, batched,
    dtype- and device-agnostic, raising on failure) and declare the class attributes below; methods with
    state between steps or a failure that is not an exception override :meth:`init` and :meth:`advance`.
    """

    name: ClassVar[str] = ""
    order: ClassVar[int]
    symplectic: ClassVar[bool]
    explicit: ClassVar[bool]
    symmetric: ClassVar[bool]
    requires_separable: ClassVar[bool]
    adaptive: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _NAMED[cls.name] = cls

    def __init__(self, *, allow_nonseparable: bool = False) -> None:
        self.allow_nonseparable = allow_nonseparable

    @abc.abstractmethod
    def _step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        """One step without argument checks; raises on failure."""

    def init(self, f: VectorField, t0: float, x0: Tensor, dt: float) -> SolverState:
        """The solver state before the first step from ``x0`` ``(batch, 2 * dof)`` at ``t0``."""
        return None

    def advance(
        self, f: VectorField, t: float, x: Tensor, dt: float, state: SolverState
    ) -> tuple[Tensor, SolverState, Tensor | None]:
        """One step of the loop from ``x`` ``(batch, 2 * dof)`` at ``t``: the new states, the new solver state,
        and ``failed``, a ``(batch,)`` mask of the trajectories whose step failed (their new states are NaN),
        or ``None`` when no step can fail except by turning non-finite.

        The states are those of :meth:`step`, bit for bit.
        """
        return self._step(f, t, x, dt), state, None

    def restart(self, f: VectorField, t: float, x: Tensor, state: SolverState) -> SolverState:
        """The solver state for a step from ``x`` at ``t`` where the field may have jumped (a zero-order hold's sample
        time): field values the state carries from the last step (first-same-as-last) are dropped or recomputed
        with ``f``. The default keeps ``state`` (it holds no field values)."""
        return state

    def row_stats(self, state: SolverState) -> dict[str, Tensor]:
        """Per-trajectory counters kept in a solver state (``{}`` by default; the adaptive methods count their
        internal steps), each ``(batch,)``; :class:`hnnlab.rollout.Solution` reports them in ``stats``."""
        return {}

    def step(self, f: VectorField, t: Tensor | float, x: Tensor, dt: float) -> Tensor:
        """Advance ``x`` (``(..., 2 * dof)``) from time ``t`` by ``dt > 0``; returns the new state.

        ``dt`` is a Python number (a one-element tensor is converted to one); the step is differentiable
        with respect to ``x`` and anything ``f`` depends on.
        """
        check_dt(dt)
        dt = float(dt)
        if not isinstance(x, Tensor) or x.ndim == 0 or x.shape[-1] % 2 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InvalidArgumentError(
                f"x must be a floating tensor of shape (..., 2 * dof), coordinates then momenta; got {shape}"
            )
        self.check_compatible(f)
        return self._step(f, t, x, dt)

    def check_compatible(self, f: Any) -> None:
        """Refuse (or, with ``allow_nonseparable``, warn about) a separable-only method on a
        vector field that declares itself non-separable."""
        if not self.requires_separable or declared_separable(f) is not False:
            return
        message = (
            f"integrator {self.name!r} is symplectic only for a separable H = T(p) + V(q), but {describe_field(f)} "
            f"declares is_separable=False. Use one of the non-separable methods: "
            f"{', '.join(nonseparable_names())}, or pass allow_nonseparable=True to accept a "
            "non-symplectic result."
        )
        if not self.allow_nonseparable:
            raise IncompatibleIntegratorError(message)
        warnings.warn(message.replace("Use one of", "Proceeding anyway; consider"), stacklevel=3)

    def describe(self) -> dict[str, Any]:
        """Self-description for dataset and rollout metadata."""
        return {
            "name": self.name,
            "order": self.order,
            "symplectic": self.symplectic,
            "explicit": self.explicit,
            "symmetric": self.symmetric,
            "requires_separable": self.requires_separable,
            "adaptive": self.adaptive,
            **self.options(),
        }

    def options(self) -> dict[str, Any]:
        """Constructor options (tolerances, iteration caps) beyond ``allow_nonseparable``."""
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


class AbstractExplicitRK(AbstractIntegrator):
    """The explicit Runge-Kutta family (Euler, RK4, the adaptive Dormand-Prince pairs): explicit, neither
    symplectic nor symmetric, and valid for any vector field (no separability needed)."""

    symplectic: ClassVar[bool] = False
    explicit: ClassVar[bool] = True
    symmetric: ClassVar[bool] = False
    requires_separable: ClassVar[bool] = False


def check_dt(dt: Any) -> None:
    """Raise a clear error unless ``dt`` is a finite number > 0."""
    if isinstance(dt, Tensor):
        if dt.numel() != 1:
            raise InvalidArgumentError(f"dt must be a positive scalar, got a tensor of shape {tuple(dt.shape)}")
        dt = float(dt)
    if isinstance(dt, bool) or not isinstance(dt, int | float) or not math.isfinite(dt) or dt <= 0:
        raise InvalidArgumentError(f"dt must be a finite number > 0, got {dt!r}")


def nonseparable_names() -> list[str]:
    """Names of the integrators that are symplectic without a separable H."""
    return [name for name, cls in _NAMED.items() if cls.symplectic and not cls.requires_separable]


def join_state(q: Tensor, p: Tensor) -> Tensor:
    return torch.cat([q, p], dim=-1)
