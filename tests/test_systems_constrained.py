"""Constrained Cartesian systems: the chain matches the angle chain, constraints and energy are conserved."""

from __future__ import annotations

import pytest
import torch

from hnnlab.integrators import get_integrator
from hnnlab.rollout import rollout
from hnnlab.systems.constrained import (
    CartesianChainPendulum,
    ConstraintViolationError,
    DistanceConstraints,
    SingularConstraintError,
)


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
