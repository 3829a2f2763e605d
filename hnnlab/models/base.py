"""The interface shared by every model: a learned vector field ``f(t, x)`` with optional energy.

A model is itself a vector field: ``model(t, x) == model.vector_field(t, x)``, so it goes anywhere
a system does, e.g. ``rollout(model, "leapfrog", x0, dt, n_steps)`` or any integrator's ``step``.
Capabilities are class attributes that integrators, the training loop and the audit read before they
start, the same ones a system declares (:class:`hnnlab.systems.AbstractSystem`): ``dof``, ``coordinates``
(``"canonical"`` for ``(q, p)``, ``"lagrangian"`` for ``(q, q_dot)``), ``is_separable`` (``H = T(p) + V(q)``,
so explicit symplectic methods are symplectic for it), ``conservative`` (its flow conserves its energy)
and ``energy``. Readers read them; they never probe with ``getattr`` or ``hasattr``.
"""

from __future__ import annotations

import abc
import inspect
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from hnnlab.errors import InvalidArgumentError
from hnnlab.fields import AbstractVectorField
from hnnlab.models.mlp import MLP, check_positive_int, module_path

COORDINATES: tuple[str, ...] = ("canonical", "lagrangian")
STATE_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float64)


class AbstractModel(nn.Module, AbstractVectorField):
    """A learned dynamical system ``dx/dt = f(t, x)`` on states of shape ``(..., 2 * dof)``.

    Class attributes:
        name: the registry name (``get_model(name)``).
        coordinates: ``"canonical"`` or ``"lagrangian"``.
        is_separable: ``True`` only for ``H = T(p) + V(q)``; such models also provide ``dq_dt(t, x)``
            and ``dp_dt(t, x)`` so that split methods evaluate only the half they need.
        conservative: whether the model's flow conserves its energy (``False`` for a model with a
            dissipative part; the audit then does not expect the energy to be conserved). Baselines
            without an energy keep ``True``: nothing in them is dissipative by construction.
        differentiates_state: whether the vector field differentiates a network with respect to the
            state (then it cannot run under ``torch.inference_mode``).
        time_dependent: whether the field depends on ``t`` (a learned force ``F(t)``); the rollout loss, which
            starts every window at ``t = 0``, refuses such models.

    Subclasses call ``super().__init__(dof)`` and implement :meth:`vector_field`; models with an energy
    override :meth:`energy`. Every constructor argument, defaults included, is recorded when the model is
    created (bound to the subclass's ``__init__`` signature; for :meth:`describe` and for checkpoints, see
    :meth:`constructor_arguments`); a subclass may instead pass them itself,
    ``super().__init__(dof, **hyperparameters)``. :meth:`network` builds the default MLP of a network
    argument that was not given.
    """

    name: ClassVar[str] = ""
    coordinates: ClassVar[str] = "canonical"
    is_separable: ClassVar[bool] = False
    conservative: ClassVar[bool] = True
    differentiates_state: ClassVar[bool] = True
    time_dependent: ClassVar[bool] = False

    def __new__(cls, *args: Any, **kwargs: Any) -> AbstractModel:
        model = super().__new__(cls)
        try:  # the constructor's arguments by name, defaults included; a bad call fails in __init__ itself
            bound = inspect.signature(cls.__init__).bind(model, *args, **kwargs)
        except TypeError:
            return model
        bound.apply_defaults()
        arguments: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            kind = bound.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                arguments[name] = value
        object.__setattr__(model, "_constructor_call", arguments)
        return model

    def __init__(self, dof: int, **hyperparameters: Any) -> None:
        super().__init__()
        self.dof = check_positive_int("dof", dof)
        recorded = self.__dict__.pop("_constructor_call", {})
        self._hyperparameters = {"dof": dof, **(hyperparameters or recorded)}

    def network(
        self, net: nn.Module | None, in_dim: int, out_dim: int, architecture: dict[str, Any], *,
        bias_last: bool = False,
    ) -> nn.Module:
        """``net`` (an injected network, given as a constructor argument) if not ``None``, else the default
        ``MLP(in_dim, hidden, out_dim, activation, bias_last, orthogonal_init)`` from ``architecture``, the
        ``hidden``, ``activation`` and ``orthogonal_init`` arguments of the ``__init__`` that builds it
        (validated by :class:`MLP`). They are passed, not read from the recorded constructor arguments: a
        subclass with its own signature (``super().__init__(dof, hidden=(16,))``) records only its own."""
        if net is not None:
            return net
        return MLP(in_dim, architecture["hidden"], out_dim, architecture["activation"], bias_last,
                   architecture["orthogonal_init"])

    @abc.abstractmethod
    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        """``dx/dt`` at states ``x`` of shape ``(..., 2 * dof)``, same shape, dtype and device.

        Works under ``torch.no_grad`` (rollouts: the result carries no graph) and keeps the graph to
        the parameters when gradients are enabled (training: ``loss.backward()`` reaches them).
        """

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self.vector_field(t, x)

    def energy(self, x: Tensor) -> Tensor | None:
        """The model's energy of states ``(..., 2 * dof)``, shape ``(...,)``; ``None`` if it has none."""
        return None

    def penalty(self, t: Tensor | float, x: Tensor) -> Tensor | None:
        """A regularisation term ``()`` that training adds to the loss at a batch of states ``(B, 2 * dof)`` and their
        times (the port-Hamiltonian network's L1 penalties); ``None`` (the default) adds nothing."""
        return None

    @property
    def has_energy(self) -> bool:
        """Whether :meth:`energy` returns a tensor (the class overrides it)."""
        return type(self).energy is not AbstractModel.energy

    def constructor_arguments(self) -> dict[str, Any]:
        """The arguments the model was built with, by name, as given: an injected network is the module
        itself (the one the model uses, with its current weights). ``type(model)(**args)`` builds the
        same model again; :mod:`hnnlab.training.checkpoint` stores these to rebuild it."""
        return dict(self._hyperparameters)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable self-description for checkpoint and rollout metadata.

        An injected network appears in ``init_args`` as its class path only (metadata, not a recipe):
        a checkpoint stores what rebuilds it (see :func:`hnnlab.training.checkpoint.model_entry`).
        """
        cls = type(self)
        return {
            "name": self.name or None,
            "class_path": f"{cls.__module__}:{cls.__qualname__}",
            "init_args": {key: _jsonable(value) for key, value in self._hyperparameters.items()},
            "coordinates": self.coordinates,
            "dof": self.dof,
            "is_separable": self.is_separable,
            "conservative": self.conservative,
            "has_energy": self.has_energy,
            "n_parameters": sum(p.numel() for p in self.parameters()),
        }

    def check_state(self, x: Tensor, *, differentiate: bool = True) -> Tensor:
        """Return ``x`` if it is a float32 or float64 tensor ``(..., 2 * dof)`` in the dtype of the model's
        parameters (float16 and bfloat16 are refused), else raise a clear error.

        With ``differentiate`` (the caller differentiates a network with respect to ``x``, and the
        class declares :attr:`differentiates_state`), inference tensors (made under
        ``torch.inference_mode``) are cloned into normal tensors; inside ``inference_mode`` itself that
        is impossible, and the error says what to use instead.
        """
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim == 0 or x.shape[-1] != 2 * self.dof:
            got = f"shape {tuple(x.shape)} and dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
            raise InvalidArgumentError(
                f"x must be a floating tensor of shape (..., 2 * dof) = (..., {2 * self.dof}) for "
                f"{type(self).__name__}(dof={self.dof}), got {got}"
            )
        if x.dtype not in STATE_DTYPES:
            raise InvalidArgumentError(
                f"x must be float32 or float64 for {type(self).__name__}(dof={self.dof}), got {x.dtype}"
            )
        parameter = next(self.parameters(), None)
        if parameter is not None and parameter.dtype != x.dtype:
            raise InvalidArgumentError(
                f"{type(self).__name__}(dof={self.dof}) has {parameter.dtype} parameters but x is {x.dtype}: "
                f"convert the model with model.to({x.dtype}) (model.double() for float64, model.float() for "
                f"float32), or the states with x.to({parameter.dtype})"
            )
        if not (differentiate and self.differentiates_state) or torch.compiler.is_compiling():
            return x  # compiled (solve(..., compile=True)): the loop hands in no inference tensor; dynamo cannot ask
        if torch.is_inference_mode_enabled():
            raise InvalidArgumentError(
                f"{type(self).__name__} differentiates with respect to the state, which torch.inference_mode "
                "forbids; use torch.no_grad() instead (and Trainer(inference_mode=False) in Lightning)"
            )
        if x.is_inference():
            x = x.clone()
        return x


def check_coordinates(value: object) -> str:
    """``value`` if it names a coordinate system, else a clear error."""
    if value not in COORDINATES:
        raise InvalidArgumentError(f"coordinates must be one of {', '.join(map(repr, COORDINATES))}, got {value!r}")
    return value  # type: ignore[return-value]


def _jsonable(value: Any) -> Any:
    if isinstance(value, nn.Module):
        return module_path(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, Tensor):
        return value.tolist()
    return value
