"""Higher-order symplectic methods (hnnlab/integrators/compositions.py, gauss_legendre6.py): fitted convergence
order within 0.3 of the declared one on the pendulum and Henon-Heiles, symplecticity to round-off, no secular
energy drift, the composition tables."""

from __future__ import annotations

import math

import pytest
import torch

from hnnlab.audit.structure import one_step_map, step_jacobian, symplecticity_error
from hnnlab.integrators import get_integrator
from hnnlab.integrators.compositions import (
    KAHAN_LI6_WEIGHTS,
    KAHAN_LI8_WEIGHTS,
    YOSHIDA6_WEIGHTS,
    YOSHIDA8_WEIGHTS,
    composition_tables,
)
from hnnlab.rollout import rollout
from hnnlab.systems import get_system

NEW = ("yoshida6", "yoshida8", "kahan_li6", "kahan_li8", "gauss_legendre6")
ORDERS = {"yoshida6": 6, "yoshida8": 8, "kahan_li6": 6, "kahan_li8": 8, "gauss_legendre6": 6}
STEP_COUNTS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def _asymptotic_order(errors: list[float], counts: tuple[int, ...]) -> float:
    """Least-squares slope of log(error) against log(dt) over the points between round-off and the pre-asymptotic
    regime (1e-13 < error < 1e-7), at least three of them. (The triple jumps have substeps up to ~3 dt, so
    yoshida8 on Henon-Heiles shows its order only below about 1e-9.)"""
    pts = [(math.log(1 / n), math.log(e)) for n, e in zip(counts, errors, strict=True) if 1e-13 < e < 1e-7]
    assert len(pts) >= 3, errors
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


@pytest.fixture(scope="module")
def problems():
    pendulum = get_system("pendulum")
    henon = get_system("henon_heiles")
    x_p = torch.tensor([[1.0, 0.5], [2.0, -0.3]], dtype=torch.float64)
    x_h = torch.tensor([[0.1, -0.2, 0.3, 0.2], [0.0, 0.3, 0.25, -0.1]], dtype=torch.float64)
    reference = get_integrator("dopri8", rtol=1e-14, atol=1e-14)
    out = {}
    for name, system, x0, horizon in (("pendulum", pendulum, x_p, 4.0), ("henon_heiles", henon, x_h, 8.0)):
        out[name] = (system, x0, horizon, rollout(system, reference, x0, horizon / 8, 8))
    return out


@pytest.mark.parametrize("problem", ["pendulum", "henon_heiles"])
@pytest.mark.parametrize("name", NEW)
def test_fitted_order_matches_the_declared_one(name, problem, problems):
    system, x0, horizon, truth = problems[problem]
    integrator = get_integrator(name)
    assert integrator.order == ORDERS[name]
    # RMS error over 8 saved times of the horizon against dopri8 at rtol = atol = 1e-14.
    errors = [float((rollout(system, integrator, x0, horizon / n, n, save_every=n // 8) - truth)[:, 1:].pow(2)
                    .mean().sqrt()) for n in STEP_COUNTS]
    assert _asymptotic_order(errors, STEP_COUNTS) == pytest.approx(ORDERS[name], abs=0.3)


@pytest.mark.parametrize("name", NEW)
def test_symplectic_to_round_off(name, problems):
    for problem in ("pendulum", "henon_heiles"):
        system, x0, _, _ = problems[problem]
        jac = step_jacobian(one_step_map(system, get_integrator(name), 0.1), x0)
        assert symplecticity_error(jac).max() < 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_energy_error_is_bounded(name):
    # No secular drift: the energy error of the second half of the run is no larger than that of the first
    # (1e4 steps; 1e5-step runs are in benchmarks/bench_work_precision.py, too long for the suite).
    system = get_system("pendulum")
    x0 = system.sample_initial_states(4, torch.Generator().manual_seed(0))
    n = 2000 if name == "gauss_legendre6" else 10_000
    traj = rollout(system, name, x0, 0.1, n, save_every=10)
    energy = system.energy(traj)
    err = ((energy - energy[:, :1]) / energy[:, :1]).abs()
    half = err.shape[1] // 2
    assert err[:, half:].max() <= 2 * err[:, :half].max()
    assert err.max() < 1e-4  # small (measured at this dt: yoshida6 1.3e-5, yoshida8 2.8e-6, kahan_li8 1.7e-9)


def test_composition_tables_merge_adjacent_half_kicks():
    kicks, drifts = composition_tables((0.25, 0.5, 0.25))
    assert kicks == (0.125, 0.375, 0.375, 0.125) and drifts == (0.25, 0.5, 0.25)
    for weights, stages in ((YOSHIDA6_WEIGHTS, 9), (YOSHIDA8_WEIGHTS, 27), (KAHAN_LI6_WEIGHTS, 9),
                            (KAHAN_LI8_WEIGHTS, 15)):
        assert len(weights) == stages and weights == weights[::-1]  # symmetric compositions
        assert math.fsum(weights) == pytest.approx(1.0, abs=1e-14)
        assert math.fsum(w**3 for w in weights) == pytest.approx(0.0, abs=1e-12)  # order >= 4 condition
        assert math.fsum(w**5 for w in weights) == pytest.approx(0.0, abs=1e-12)  # order >= 6 condition


@pytest.mark.parametrize("name", ["yoshida6", "yoshida8", "kahan_li6", "kahan_li8"])
def test_explicit_compositions_refuse_a_non_separable_field(name):
    from hnnlab.errors import IncompatibleIntegratorError

    system = get_system("double_pendulum_hamiltonian")
    x0 = system.sample_initial_states(1, torch.Generator().manual_seed(0))
    with pytest.raises(IncompatibleIntegratorError, match=f"integrator '{name}' is symplectic only for a separable"):
        rollout(system, name, x0, 0.1, 1)


@pytest.mark.parametrize("name", NEW)
def test_kepler_angular_momentum_conserved_to_round_off(name):
    # Explicit splittings kick along q and drift along p (a central force keeps q x p); Gauss-Legendre conserves
    # every quadratic invariant. At dt = 0.1 the energy error is measurable, so the check is a real one.
    from tests.test_integrators import Kepler

    x0 = torch.tensor([[1.0, 0.0, 0.0, 1.1], [0.8, 0.3, -0.4, 0.9]], dtype=torch.float64)
    with torch.no_grad():
        states = rollout(Kepler(), name, x0, 0.1, 200, save_every=10)  # about three orbits
    ang = Kepler().angular_momentum(states)
    assert float(((ang - ang[:, :1]) / ang[:, :1]).abs().max()) < 1e-12
    energy = Kepler().energy(states)
    assert float(((energy - energy[:, :1]) / energy[:, :1]).abs().max()) > 1e-11
