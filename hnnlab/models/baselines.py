"""Baselines without physical structure: a neural ODE and a second-order neural ODE.

Any claim that a physics model wins must hold against both (Gruver et al. 2022 showed that a
second-order neural ODE matches HNNs on conservative systems).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from hnnlab.errors import InvalidArgumentError
from hnnlab.models.base import AbstractModel, check_coordinates
from hnnlab.models.registry import register_model


@register_model("node")
class NeuralODE(AbstractModel):
    """Neural ODE (Chen et al. 2018): ``dx/dt = f_theta(x)`` with ``f_theta`` an MLP
    ``(..., 2 * dof) -> (..., 2 * dof)``; Greydanus et al. (2019)'s baseline.

    No energy, not separable. It learns in whichever coordinates the data use: ``coordinates``
    (``"canonical"`` by default, ``"lagrangian"`` for ``(q, q_dot)`` data) only declares which.

    Args:
        dof: degrees of freedom; states are ``(..., 2 * dof)``.
        hidden, activation, orthogonal_init: the default network ``MLP(2 * dof, hidden, 2 * dof, ...)``.
        coordinates: ``"canonical"`` or ``"lagrangian"``.
        net: a module mapping ``(..., 2 * dof)`` to ``(..., 2 * dof)`` used as ``f_theta`` instead of the
            default network (your own architecture).
    """

    name: ClassVar[str] = "node"
    is_separable: ClassVar[bool] = False
    differentiates_state: ClassVar[bool] = False

    def __init__(
        self,
        dof: int,
        hidden: Sequence[int] = (200, 200),
        activation: str = "tanh",
        orthogonal_init: bool = False,
        coordinates: str = "canonical",
        net: nn.Module | None = None,
    ) -> None:
        super().__init__(dof)
        architecture = {"hidden": hidden, "activation": activation, "orthogonal_init": orthogonal_init}
        self.coordinates = check_coordinates(coordinates)  # type: ignore[misc]  # per instance
        self.net = self.network(net, 2 * self.dof, 2 * self.dof, architecture, bias_last=True)

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        x = self.check_state(x)
        return _check_output(self.net(x), (*x.shape[:-1], 2 * self.dof), x, "net")  # (..., 2 * dof)


@register_model("second_order_node")
class SecondOrderNeuralODE(AbstractModel):
    """Second-order neural ODE (Gruver et al. 2022): ``q_dd = a_theta(q, q_dot)`` with ``a_theta`` an
    MLP ``(..., 2 * dof) -> (..., dof)``, and ``dx/dt = (q_dot, a_theta(q, q_dot))``.

    ``dq/dt = q_dot`` holds exactly, so states are ``(q, q_dot)`` (Lagrangian coordinates). No
    energy, not separable.

    Args:
        dof: degrees of freedom; states are ``(..., 2 * dof)``.
        hidden, activation, orthogonal_init: the default network ``MLP(2 * dof, hidden, dof, ...)``.
        net: a module mapping ``(..., 2 * dof)`` to ``(..., dof)`` used as ``a_theta`` instead of the
            default network (your own architecture, e.g. one that sees ``(cos q, sin q)``).
    """

    name: ClassVar[str] = "second_order_node"
    coordinates: ClassVar[str] = "lagrangian"
    is_separable: ClassVar[bool] = False
    differentiates_state: ClassVar[bool] = False

    def __init__(
        self,
        dof: int,
        hidden: Sequence[int] = (200, 200),
        activation: str = "tanh",
        orthogonal_init: bool = False,
        net: nn.Module | None = None,
    ) -> None:
        super().__init__(dof)
        architecture = {"hidden": hidden, "activation": activation, "orthogonal_init": orthogonal_init}
        self.net = self.network(net, 2 * self.dof, self.dof, architecture, bias_last=True)

    def accelerations(self, x: Tensor) -> Tensor:
        """``q_dd = a_theta(q, q_dot)``, ``(..., dof)``."""
        x = self.check_state(x)
        return _check_output(self.net(x), (*x.shape[:-1], self.dof), x, "net")

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        x = self.check_state(x)
        return torch.cat([x[..., self.dof :], self.accelerations(x)], dim=-1)


def _check_output(value: Tensor, shape: tuple[int, ...], x: Tensor, what: str) -> Tensor:
    """``value`` if it has ``shape``, else a clear error naming the network and the shapes."""
    if value.shape != shape:
        raise InvalidArgumentError(
            f"{what} must map inputs of shape (..., {x.shape[-1]}) to shape (..., {shape[-1]}); for input shape "
            f"{tuple(x.shape)} it returned shape {tuple(value.shape)}"
        )
    return value
