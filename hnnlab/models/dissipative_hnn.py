"""Dissipative Hamiltonian neural network: a conservative and a dissipative part, learned separately."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from hnnlab.dynamics import input_gradient, symplectic_gradient
from hnnlab.models.base import AbstractModel
from hnnlab.models.mlp import scalar_output
from hnnlab.models.registry import register_model


@register_model("dissipative_hnn")
class DissipativeHNN(AbstractModel):
    """Dissipative HNN (Sosanya and Greydanus 2022): a Helmholtz decomposition of the vector field
    into a divergence-free part from a learned Hamiltonian ``H_theta`` and a curl-free part from a
    learned dissipation potential ``D_phi``:

        ``dx/dt = Omega^-1 grad H + grad D``,  i.e.  ``dq/dt = dH/dp + dD/dq``,  ``dp/dt = -dH/dq + dD/dp``.

    A damped oscillator ``dp/dt = -k q - gamma p / m`` is ``H = k q^2 / 2 + p^2 / (2 m)`` with
    ``D = -gamma p^2 / (2 m)`` (minus Rayleigh's dissipation function). ``D`` is not constrained, so
    ``grad D`` may also inject energy; :meth:`energy` is the conservative part ``H`` and
    ``dH/dt = grad H . grad D``. Not separable, so explicit symplectic integrators are refused; not
    conservative (``conservative = False``), so the audit does not expect ``H`` to be conserved.

    Args:
        dof: degrees of freedom; states are ``(..., 2 * dof)``.
        hidden, activation, orthogonal_init: the default networks ``MLP(2 * dof, hidden, 1, ...)``.
        net: module used as ``H`` ``(..., 2 * dof) -> (...,)`` or ``(..., 1)``.
        dissipation_net: module used as ``D``, same shapes.
    """

    name: ClassVar[str] = "dissipative_hnn"
    coordinates: ClassVar[str] = "canonical"
    is_separable: ClassVar[bool] = False
    conservative: ClassVar[bool] = False

    def __init__(
        self,
        dof: int,
        hidden: Sequence[int] = (200, 200),
        activation: str = "tanh",
        orthogonal_init: bool = True,
        net: nn.Module | None = None,
        dissipation_net: nn.Module | None = None,
    ) -> None:
        super().__init__(dof)
        architecture = {"hidden": hidden, "activation": activation, "orthogonal_init": orthogonal_init}
        self.net = self.network(net, 2 * self.dof, 1, architecture)
        self.dissipation_net = self.network(dissipation_net, 2 * self.dof, 1, architecture)

    def hamiltonian(self, x: Tensor) -> Tensor:
        """The conservative part ``H_theta``, ``(..., 2 * dof) -> (...,)``."""
        return scalar_output(self.net(x), x, what="the Hamiltonian network")

    def dissipation(self, x: Tensor) -> Tensor:
        """The dissipation potential ``D_phi``, ``(..., 2 * dof) -> (...,)``."""
        return scalar_output(self.dissipation_net(x), x, what="dissipation_net")

    def energy(self, x: Tensor) -> Tensor:
        return self.hamiltonian(self.check_state(x, differentiate=False))

    def conservative_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        """``Omega^-1 grad H``: the divergence-free part, ``(..., 2 * dof)``."""
        return symplectic_gradient(input_gradient(self.hamiltonian, self.check_state(x)))

    def dissipative_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        """``grad D``: the curl-free part, ``(..., 2 * dof)``."""
        return input_gradient(self.dissipation, self.check_state(x))

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self.conservative_field(t, x) + self.dissipative_field(t, x)


