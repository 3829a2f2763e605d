"""Baselines without physical structure: a neural ODE and a second-order neural ODE.

Any claim that a physics model wins must hold against both (Gruver et al. 2022 showed that a
second-order neural ODE matches HNNs on conservative systems).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.models.base import AbstractModel, check_coordinates
from hnnlab.models.mlp import MLP
from hnnlab.models.registry import register_model


@register_model("node")
class NeuralODE(AbstractModel):
    """Neural ODE (Chen et al. 2018): ``dx/dt = f_theta(x)`` with ``f_theta`` an MLP
    ``(..., 2 * dof) -> (..., 2 * dof)``; Greydanus et al. (2019)'s baseline.

    No energy, not separable. It learns in whichever coordinates the data use: ``coordinates``
    (``"canonical"`` by default, ``"lagrangian"`` for ``(q, q_dot)`` data) only declares which.
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
    ) -> None:
        super().__init__(
            dof, hidden=hidden, activation=activation, orthogonal_init=orthogonal_init, coordinates=coordinates
        )
        self.coordinates = check_coordinates(coordinates)  # type: ignore[misc]  # per instance
        self.net = MLP(2 * self.dof, hidden, 2 * self.dof, activation, True, orthogonal_init)

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self.net(self.check_state(x))  # (..., 2 * dof)


@register_model("second_order_node")
class SecondOrderNeuralODE(AbstractModel):
    """Second-order neural ODE (Gruver et al. 2022): ``q_dd = a_theta(q, q_dot)`` with ``a_theta`` an
    MLP ``(..., 2 * dof) -> (..., dof)``, and ``dx/dt = (q_dot, a_theta(q, q_dot))``.

    ``dq/dt = q_dot`` holds exactly, so states are ``(q, q_dot)`` (Lagrangian coordinates). No
    energy, not separable.
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
    ) -> None:
        super().__init__(dof, hidden=hidden, activation=activation, orthogonal_init=orthogonal_init)
        self.net = MLP(2 * self.dof, hidden, self.dof, activation, True, orthogonal_init)

    def accelerations(self, x: Tensor) -> Tensor:
        """``q_dd = a_theta(q, q_dot)``, ``(..., dof)``."""
        return self.net(self.check_state(x))

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        x = self.check_state(x)
        return torch.cat([x[..., self.dof :], self.net(x)], dim=-1)
