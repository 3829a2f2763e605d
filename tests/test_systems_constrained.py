"""Constrained Cartesian systems: the chain matches the angle chain, constraints and energy are conserved."""

from __future__ import annotations

import math

import pytest
import torch

from hnnlab.errors import IncompatibleIntegratorError, InvalidArgumentError
from hnnlab.integrators import get_integrator
from hnnlab.rollout import rollout
from hnnlab.systems.constrained import (
    CartesianChainPendulum,
    ConstraintViolationError,
    CoupledPendulumsCartesian,
    DistanceConstraints,
    SingularConstraintError,
)

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")  # one thread: small batched solves


def _chain(n: int) -> CartesianChainPendulum:
    return CartesianChainPendulum.with_random_parameters(n, torch.Generator().manual_seed(3))


@pytest.mark.slow  # 1000 dopri8 steps at 1e-12 on both forms: about 45 s on 2 cores
@pytest.mark.parametrize("n", [1, 2])
def test_cartesian_chain_matches_the_angle_chain_over_1000_steps(n):
    cart = _chain(n)
    angles = cart.angle_system()
    x0a = angles.sample_initial_states(4, torch.Generator().manual_seed(0))
    x0c = cart.sample_initial_states(4, torch.Generator().manual_seed(0))
    assert torch.equal(cart.from_angles(x0a), x0c)  # same draw, same physical states
    reference = get_integrator("dopri8", rtol=1e-12, atol=1e-12)
    ya, yc = rollout(angles, reference, x0a, 0.03, 1000), rollout(cart, reference, x0c, 0.03, 1000)
    assert float((cart.from_angles(ya) - yc).abs().max()) < 1e-7
    assert float((cart.to_angles(yc) - ya).abs().max()) < 1e-7
    assert float(cart.constraint_violation(yc).max()) < 1e-10


def test_off_manifold_state_and_singular_jacobian_are_refused():
    cart = _chain(2)
    x0 = cart.sample_initial_states(2, torch.Generator().manual_seed(0))
    bad = x0.clone()
    bad[0, 0] += 1e-3
    with pytest.raises(ConstraintViolationError, match="off the constraint manifold by"):
        cart.check_on_manifold(bad)
    collapsed = x0.clone()
    collapsed[:, 2:4] = collapsed[:, 0:2]  # body 2 on body 1: the link's direction is undetermined
    with pytest.raises(SingularConstraintError, match="singular"):
        cart.vector_field(0.0, collapsed)
    with pytest.raises(Exception, match="fixed point of body 0 has 3 coordinates"):
        DistanceConstraints(2, 2, fixed=((0, (0.0, 0.0, 0.0), 1.0),))


@pytest.mark.parametrize("n", [1, 3])
def test_implicit_midpoint_keeps_the_chains_energy_and_constraints_to_round_off(n):
    """Why an O(dt^2) energy check fails on the chain: ``H = sum |p|^2 / 2m + g sum m y`` is quadratic in the state
    and the projected field conserves it, and ``phi``, ``G M^-1 p``, everywhere (not only on the manifold), so
    implicit midpoint, which keeps every quadratic invariant, keeps them to the solve's round-off at any dt."""
    cart = _chain(n)
    x0 = cart.sample_initial_states(4, torch.Generator().manual_seed(0))
    for dt in (0.04, 0.02):
        ys = rollout(cart, get_integrator("implicit_midpoint"), x0, dt, int(round(2.0 / dt)))
        assert float((cart.energy(ys) - cart.energy(x0)[:, None]).abs().max()) < 1e-12
        assert float(cart.constraint_violation(ys).max()) < 1e-12


@pytest.mark.parametrize(("method", "order", "keeps_constraints"),
                         [("implicit_midpoint", 2, True), ("gauss_legendre4", 4, True), ("rk4", 4, False)])
def test_coupled_pendulums_energy_error_has_the_methods_order_and_gauss_methods_keep_the_constraints(
    method, order, keeps_constraints
):
    """The springs make ``V`` non-quadratic: the energy error of each method falls as ``dt^order``; the Gauss
    methods keep the quadratic invariants ``phi`` and ``G M^-1 p`` to round-off, rk4 only to its error (which also
    falls as ``dt^4``)."""
    system = CoupledPendulumsCartesian()
    x0 = system.sample_initial_states(4, torch.Generator().manual_seed(0))
    energy_errors, violations = [], []
    for dt in (0.08, 0.04, 0.02) if method == "gauss_legendre4" else (0.04, 0.02, 0.01):
        ys = rollout(system, get_integrator(method), x0, dt, int(round(2.0 / dt)))
        energy_errors.append(float((system.energy(ys) - system.energy(x0)[:, None]).abs().max()))
        violations.append(float(system.constraint_violation(ys).max()))
    slopes = [math.log2(a / b) for a, b in zip(energy_errors, energy_errors[1:], strict=False)]
    assert all(order - 0.5 < s < order + 1.5 for s in slopes), slopes  # rk4: 5.2, 4.6 (pre-asymptotic)
    if keeps_constraints:
        assert max(violations) < 1e-13
    else:
        assert all(3.5 < math.log2(a / b) < 5 for a, b in zip(violations, violations[1:], strict=False))


def test_the_constrained_field_is_not_separable_though_h_is():
    """``H = T(p) + V(x)`` is separable, its projected field is not: ``dx/dt`` depends on ``x`` (the projection)
    and ``dp/dt`` on ``p`` (the centripetal multipliers), so the systems declare ``is_separable = False`` and
    explicit splitting methods are refused."""
    cart = _chain(2)
    x = cart.sample_initial_states(4, torch.Generator().manual_seed(0))
    jac = torch.func.vmap(torch.func.jacrev(lambda y: cart.vector_field(0.0, y)))(x)
    d = cart.dof
    assert float(jac[:, :d, :d].abs().amax()) > 1e-2 and float(jac[:, d:, d:].abs().amax()) > 1e-2
    assert cart.is_separable is False
    with pytest.raises(IncompatibleIntegratorError):
        rollout(cart, get_integrator("leapfrog"), x, 0.01, 2)


def test_constraints_are_built_on_the_states_device_and_skip_the_value_check_under_vmap():
    """On ``meta`` (no values) the field runs; under vmap the singularity check cannot read values and is left to
    the untransformed call, which refuses the singular state."""
    cart = _chain(2)
    x = cart.sample_initial_states(2, torch.Generator().manual_seed(0), dtype=torch.float32, device="meta")
    assert cart.vector_field(0.0, x).device.type == "meta"
    D, a, lengths = cart.constraint_set().tensors(x)
    assert {D.device.type, a.device.type, lengths.device.type} == {"meta"}
    structure = DistanceConstraints(2, 2, pairs=((0, 1, None),), fixed=((0, (0.0, 0.0), None),))
    assert not structure.lengths_known
    with pytest.raises(InvalidArgumentError, match="phi needs the lengths, which were not given"):
        structure.phi(torch.zeros(4))
    with pytest.raises(InvalidArgumentError, match="give every constraint's length or none of them"):
        DistanceConstraints(2, 2, pairs=((0, 1, None),), fixed=((0, (0.0, 0.0), 1.0),))
