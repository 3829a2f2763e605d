"""Yoshida's fourth-order composition of leapfrog steps."""

from __future__ import annotations

from typing import ClassVar

from hnnlab.integrators.registry import register_integrator
from hnnlab.integrators.splitting import AbstractSplittingIntegrator

_CBRT2 = 2.0 ** (1.0 / 3.0)
W1 = 1.0 / (2.0 - _CBRT2)  # outer substeps
W0 = -_CBRT2 / (2.0 - _CBRT2)  # the (negative) middle substep; 2 W1 + W0 = 1


@register_integrator("yoshida4")
class Yoshida4(AbstractSplittingIntegrator):
    """Yoshida (1990) triple jump: ``S(w1 dt) S(w0 dt) S(w1 dt)`` with ``S`` the leapfrog step,
    ``w1 = 1 / (2 - 2^(1/3))``, ``w0 = -2^(1/3) / (2 - 2^(1/3))``.

    A symmetric composition of a symmetric second-order method whose weights satisfy
    ``2 w1 + w0 = 1`` and ``2 w1^3 + w0^3 = 0`` cancels the third-order error term: order 4,
    explicit, symmetric, symplectic for a separable ``H = T(p) + V(q)``.

    Written as kicks and drifts, the half-kicks where two leapfrog substeps meet act at the same ``q``
    and merge: kicks ``(w1/2, (w1+w0)/2, (w0+w1)/2, w1/2) dt``, drifts ``(w1, w0, w1) dt``, seven
    half-field evaluations per step (six in a rollout) instead of nine. (The middle drift runs
    backwards in time, ``w0 < 0``.)
    """

    name: ClassVar[str] = "yoshida4"
    order: ClassVar[int] = 4
    symmetric: ClassVar[bool] = True
    kicks: ClassVar[tuple[float, ...]] = (W1 / 2, (W1 + W0) / 2, (W0 + W1) / 2, W1 / 2)
    drifts: ClassVar[tuple[float, ...]] = (W1, W0, W1)
