"""Hamiltonian neural network with a general learned ``H(q, p)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from hnnlab.dynamics import check_backend, hamiltonian_vector_field
from hnnlab.models.base import AbstractModel
from hnnlab.models.mlp import scalar_output
from hnnlab.models.registry import register_model


@register_model("hnn")
class HNN(AbstractModel):
    """Hamiltonian neural network (Greydanus et al. 2019): a network ``H_theta(q, p)`` and

        ``dq/dt = dH_theta/dp``,  ``dp/dt = -dH_theta/dq``.

    The vector field is divergence-free (Liouville) and conserves ``H_theta`` exactly in continuous
    time, but ``H_theta`` is in general not separable: explicit symplectic integrators (leapfrog,
    Yoshida, ...) are refused for it; use an implicit symplectic method, or :class:`SeparableHNN`.

    Args:
        dof: degrees of freedom; states are ``(..., 2 * dof)``.
        hidden, activation, orthogonal_init: the default network, ``MLP(2 * dof, hidden, 1, ...)``
            without a bias on its output layer.
        net: a module mapping ``(..., 2 * dof)`` to ``(...,)`` or ``(..., 1)`` used as ``H`` instead of
            the default network (e.g. a known Hamiltonian, or your own architecture).
        backend: ``"autograd"`` (``torch.autograd.grad`` with ``create_graph``) or ``"func"``
            (``torch.func.grad``, the same numbers in a form ``torch.compile`` can compile).
    """

    name: ClassVar[str] = "hnn"
    coordinates: ClassVar[str] = "canonical"
    is_separable: ClassVar[bool] = False

    def __init__(
        self,
        dof: int,
        hidden: Sequence[int] = (200, 200),
        activation: str = "tanh",
        orthogonal_init: bool = True,
        net: nn.Module | None = None,
        backend: str = "autograd",
    ) -> None:
        super().__init__(dof)
        architecture = {"hidden": hidden, "activation": activation, "orthogonal_init": orthogonal_init}
        check_backend(backend)
        self.backend = backend
        self.net = self.network(net, 2 * self.dof, 1, architecture)

    def hamiltonian(self, x: Tensor) -> Tensor:
        """``H_theta`` of states ``(..., 2 * dof)``, shape ``(...,)``."""
        return scalar_output(self.net(x), x, what="the Hamiltonian network")

    def energy(self, x: Tensor) -> Tensor:
        return self.hamiltonian(self.check_state(x, differentiate=False))

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        x = self.check_state(x)
        return hamiltonian_vector_field(self.hamiltonian, x, backend=self.backend)
