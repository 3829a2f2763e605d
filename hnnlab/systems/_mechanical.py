"""The two forms of a mechanical system ``T = omega^T M(q) omega / 2``, ``V(q)``: what they share.

A parameter class provides ``velocities_to_momenta(q, omega)`` (``p = M(q) omega``), ``momenta_to_velocities(q, p)``
(``omega = M(q)^-1 p``), ``potential(q)`` and ``_sample_lagrangian(n, generator)`` (float64 ``(n, 2 dof)`` in
``(q, omega)``); :class:`LagrangianForm` and :class:`HamiltonianForm` then give the Lagrangian form its ``L`` and
``E``, both forms the Legendre transform between them, and initial states drawn alike (the same generator gives the
same physical states in either form). Used by the double and chain pendulums.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hnnlab.dynamics import split_state
from hnnlab.systems.base import check_sample_args


class _MechanicalForm:
    """The Legendre transform ``(q, omega) <-> (q, p = M(q) omega)`` of a mechanical system, and its initial states
    in the form's own coordinates (``coordinates``, declared by the system class)."""

    def legendre(self, x: Tensor) -> Tensor:
        """Legendre transform ``(theta, omega) -> (theta, p = M(theta) omega)``, shape of ``x``."""
        q, omega = split_state(x)
        return torch.cat([q, self.velocities_to_momenta(q, omega)], dim=-1)  # type: ignore[attr-defined]

    def inverse_legendre(self, x: Tensor) -> Tensor:
        """Inverse Legendre transform ``(theta, p) -> (theta, omega = M(theta)^-1 p)``, shape of ``x``."""
        q, p = split_state(x)
        return torch.cat([q, self.momenta_to_velocities(q, p)], dim=-1)  # type: ignore[attr-defined]

    def kinetic_energy(self, q: Tensor, omega: Tensor) -> Tensor:
        """``T = omega^T M(q) omega / 2``, ``(...,)``."""
        return 0.5 * (omega * self.velocities_to_momenta(q, omega)).sum(-1)  # type: ignore[attr-defined]

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        check_sample_args(n, generator)
        states = self._sample_lagrangian(n, generator)  # type: ignore[attr-defined]  # (q, omega)
        if self.coordinates == "canonical":  # type: ignore[attr-defined]
            states = self.legendre(states)
        return states.to(dtype=dtype, device=device)


class LagrangianForm(_MechanicalForm):
    """State ``(q, omega)``: ``L = T - V``, ``E = T + V``, and the Legendre transform to the canonical form
    (:meth:`to_canonical`) and back (:meth:`from_canonical`)."""

    to_canonical = _MechanicalForm.legendre
    from_canonical = _MechanicalForm.inverse_legendre

    def lagrangian(self, x: Tensor) -> Tensor:
        q, omega = split_state(x)
        return self.kinetic_energy(q, omega) - self.potential(q)  # type: ignore[attr-defined]

    def energy(self, x: Tensor) -> Tensor:
        q, omega = split_state(x)
        return self.kinetic_energy(q, omega) + self.potential(q)  # type: ignore[attr-defined]


class HamiltonianForm(_MechanicalForm):
    """State ``(q, p)``: the inverse Legendre transform to the Lagrangian form (:meth:`to_lagrangian`) and back
    (:meth:`from_lagrangian`); initial states are the Lagrangian form's mapped through the transform."""

    to_lagrangian = _MechanicalForm.inverse_legendre
    from_lagrangian = _MechanicalForm.legendre
