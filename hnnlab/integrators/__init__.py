"""Time integrators: symplectic (explicit and implicit), non-symplectic baselines, adaptive adapters.

``get_integrator(name, **options).step(f, t, x, dt)``; names are listed by ``INTEGRATORS.names()``.

========================  =====  ==========  ==================  =========================
name                      order  symplectic  needs separable H   notes
========================  =====  ==========  ==================  =========================
``symplectic_euler``      1      yes         yes                 explicit
``leapfrog``              2      yes         yes                 explicit, symmetric
``yoshida4``              4      yes         yes                 explicit, symmetric
``yoshida6``              6      yes         yes                 explicit, symmetric (triple jump)
``yoshida8``              8      yes         yes                 explicit, symmetric (triple jump)
``kahan_li6``             6      yes         yes                 explicit, symmetric (optimised)
``kahan_li8``             8      yes         yes                 explicit, symmetric (optimised)
``implicit_midpoint``     2      yes         no                  implicit (tol, max_iter)
``gauss_legendre4``       4      yes         no                  implicit (tol, max_iter)
``gauss_legendre6``       6      yes         no                  implicit (tol, max_iter)
``euler``                 1      no          no                  baseline
``rk4``                   4      no          no                  baseline
``dopri5`` / ``dopri8``   5 / 8  no          no                  adaptive (rtol, atol)
========================  =====  ==========  ==================  =========================
"""

from hnnlab.integrators import compositions as _compositions  # noqa: F401  (registers)
from hnnlab.integrators import dopri as _dopri  # noqa: F401
from hnnlab.integrators import euler as _euler  # noqa: F401
from hnnlab.integrators import gauss_legendre4 as _gauss_legendre4  # noqa: F401
from hnnlab.integrators import gauss_legendre6 as _gauss_legendre6  # noqa: F401
from hnnlab.integrators import implicit_midpoint as _implicit_midpoint  # noqa: F401
from hnnlab.integrators import leapfrog as _leapfrog  # noqa: F401
from hnnlab.integrators import rk4 as _rk4  # noqa: F401
from hnnlab.integrators import symplectic_euler as _symplectic_euler  # noqa: F401
from hnnlab.integrators import yoshida4 as _yoshida4  # noqa: F401
from hnnlab.integrators.base import AbstractIntegrator as AbstractIntegrator
from hnnlab.integrators.registry import INTEGRATORS as INTEGRATORS
from hnnlab.integrators.registry import get_integrator as get_integrator

__all__ = ["AbstractIntegrator", "INTEGRATORS", "get_integrator"]
