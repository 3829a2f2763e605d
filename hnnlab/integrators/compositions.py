"""Higher-order symmetric compositions of leapfrog: Yoshida's triple jumps (orders 6 and 8) and Kahan and Li's
optimised compositions (orders 6 and 8).

A composition ``S(w_1 dt) S(w_2 dt) ... S(w_s dt)`` of the leapfrog step ``S`` (order 2, symmetric) with
palindromic weights (``w_i = w_{s+1-i}``) summing to one is symmetric and symplectic for a separable
``H = T(p) + V(q)``; its order is set by further conditions on the weights. Written as kicks and drifts
(:class:`~hnnlab.integrators.splitting.AbstractSplittingIntegrator`), the half-kicks where two leapfrog
substeps meet act at the same ``q`` and merge:

    kicks  = (w_1 / 2, (w_1 + w_2) / 2, ..., (w_{s-1} + w_s) / 2, w_s / 2),    drifts = (w_1, ..., w_s),

``s + 1`` kicks and ``s`` drifts, of which the last kick's force is reused as the next step's first (first
same as last): ``2 s`` half-field evaluations per step in a rollout.

- The triple jump (Creutz and Gocksch 1989; Suzuki 1990; Yoshida 1990) raises a symmetric method of even
  order ``2k`` to ``2k + 2``: ``S_{2k+2}(h) = S_{2k}(z_1 h) S_{2k}(z_0 h) S_{2k}(z_1 h)`` with
  ``z_1 = 1 / (2 - 2^(1 / (2k + 1)))``, ``z_0 = 1 - 2 z_1``. From leapfrog: ``yoshida4`` (3 stages),
  ``yoshida6`` (9), ``yoshida8`` (27). Exact by construction, but with large negative substeps.
- Kahan and Li (1997, "Composition constants for raising the orders of unconventional schemes for ordinary
  differential equations", Math. Comp. 66) searched the compositions of minimal error constant: ``s9odr6a``
  (order 6, 9 stages) and ``s15odr8`` (order 8, 15 stages), the methods OrdinaryDiffEq.jl calls KahanLi6 and
  KahanLi8. Fewer stages and a far smaller error than the triple jumps of the same order.
"""

from __future__ import annotations

from typing import ClassVar

from hnnlab.integrators.registry import register_integrator
from hnnlab.integrators.splitting import AbstractSplittingIntegrator


def composition_tables(weights: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The kick and drift coefficients of the leapfrog composition with substep weights ``weights``."""
    kicks = [weights[0] / 2]
    kicks += [(a + b) / 2 for a, b in zip(weights[:-1], weights[1:], strict=True)]
    kicks.append(weights[-1] / 2)
    return tuple(kicks), tuple(weights)


def triple_jump(weights: tuple[float, ...], order: int) -> tuple[float, ...]:
    """The substep weights of the triple jump of the composition ``weights`` of (even) order ``order``:
    a composition of order ``order + 2``."""
    z1 = 1.0 / (2.0 - 2.0 ** (1.0 / (order + 1)))
    z0 = 1.0 - 2.0 * z1
    return tuple(z * w for z in (z1, z0, z1) for w in weights)


def palindrome(half: tuple[float, ...]) -> tuple[float, ...]:
    """``(w_1, ..., w_m)`` -> ``(w_1, ..., w_m, ..., w_1)``: the weights of a symmetric composition from its first
    half and middle weight ``w_m``."""
    return half + half[-2::-1]


YOSHIDA6_WEIGHTS = triple_jump(triple_jump((1.0,), 2), 4)
YOSHIDA8_WEIGHTS = triple_jump(YOSHIDA6_WEIGHTS, 6)

# Kahan and Li (1997), Table 3 ("s9odr6a") and Table 4 ("s15odr8"): the first half and the middle weight.
KAHAN_LI6_WEIGHTS = palindrome((
    0.39216144400731413927925056,
    0.33259913678935943859974864,
    -0.70624617255763935980996482,
    0.08221359629355080023149045,
    0.79854399093482996339895035,
))
KAHAN_LI8_WEIGHTS = palindrome((
    0.74167036435061295344822780,
    -0.40910082580003159399730010,
    0.19075471029623837995387626,
    -0.57386247111608226665638773,
    0.29906418130365592384446354,
    0.33462491824529818378495798,
    0.31529309239676659663205666,
    -0.79688793935291635401978884,
))


class AbstractLeapfrogComposition(AbstractSplittingIntegrator):
    """A symmetric composition of leapfrog steps given by its substep ``weights`` (class attribute)."""

    weights: ClassVar[tuple[float, ...]]
    symmetric: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "weights" in cls.__dict__:
            cls.kicks, cls.drifts = composition_tables(cls.weights)


def _composition(name: str, order: int, weights: tuple[float, ...], doc: str) -> type[AbstractLeapfrogComposition]:
    """Register the leapfrog composition ``name`` of order ``order`` with substep ``weights``."""
    cls = type(name.title().replace("_", ""), (AbstractLeapfrogComposition,), {
        "__doc__": doc + " Explicit, symmetric, symplectic for separable H.", "__module__": __name__,
        "name": name, "order": order, "weights": weights,
    })
    return register_integrator(name)(cls)


Yoshida6 = _composition("yoshida6", 6, YOSHIDA6_WEIGHTS, "Yoshida's sixth-order triple jump of ``yoshida4`` (itself "
                        "the triple jump of leapfrog): 9 leapfrog substeps, ``z_1 = 1 / (2 - 2^(1/5))``.")
Yoshida8 = _composition("yoshida8", 8, YOSHIDA8_WEIGHTS, "Yoshida's eighth-order triple jump of ``yoshida6``: 27 "
                        "leapfrog substeps, ``z_1 = 1 / (2 - 2^(1/7))``.")
KahanLi6 = _composition("kahan_li6", 6, KAHAN_LI6_WEIGHTS, "Kahan and Li (1997)'s optimised sixth-order "
                        "composition ``s9odr6a``: 9 leapfrog substeps.")
KahanLi8 = _composition("kahan_li8", 8, KAHAN_LI8_WEIGHTS, "Kahan and Li (1997)'s optimised eighth-order "
                        "composition ``s15odr8``: 15 leapfrog substeps.")
