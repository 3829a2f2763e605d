"""Projection onto the constraint manifold and long rollouts that project every K steps (issue 15, item 3)."""

from __future__ import annotations

import pytest
import torch

from hnnlab.errors import InvalidArgumentError
from hnnlab.models.chnn import CHNN, CLNN
from hnnlab.rollout import solve
from hnnlab.systems.constrained import CartesianChainPendulum, CartesianChainPendulumLagrangian
from hnnlab.systems.projection import project_states, solve_projected


def _model(cls, system):
    torch.manual_seed(0)
    model = cls.for_system(system, hidden=(8,)).double()
    with torch.no_grad():  # a mass matrix far from the identity, with off-diagonal terms
        model.mass_diagonal.copy_(torch.tensor([0.3, 1.2, -0.4]))
        model.mass_lower.copy_(torch.tensor([0.5, -0.2, 0.3]))
    return model


def _owners():
    chain = CartesianChainPendulum(n=3)
    return [chain, CartesianChainPendulumLagrangian(n=3), _model(CHNN, chain), _model(CLNN, chain)]


def _violations(f, states):
    constraints = f.constraint_set() if hasattr(f, "constraint_set") else f.constraints
    q, v = states.chunk(2, dim=-1)
    v = f.inverse_mass(v) if f.coordinates == "canonical" else v
    return (constraints.phi(q).abs().max().item(), constraints.velocity_constraint(q, v).abs().max().item())


@pytest.mark.parametrize("index", range(4), ids=["system", "system_lagrangian", "chnn", "clnn"])
def test_projection_puts_perturbed_states_on_the_manifold_and_leaves_states_on_it_unchanged(index):
    f = _owners()[index]
    chain = CartesianChainPendulum(n=3) if f.coordinates == "canonical" else CartesianChainPendulumLagrangian(n=3)
    with torch.no_grad():
        on = chain.sample_initial_states(5, torch.Generator().manual_seed(1))
        if index >= 2:  # the model's manifold: its own momenta (velocities tangent under any mass)
            on = f.momenta(chain.positions_and_velocities(on)) if f.coordinates == "canonical" else on
        off = on + 1e-3 * torch.randn(on.shape, generator=torch.Generator().manual_seed(2), dtype=on.dtype)
        assert min(_violations(f, off)) > 1e-5
        projected = project_states(f, off)
        phi, velocity = _violations(f, projected)
        assert phi < 1e-14 and velocity < 1e-13  # round-off (lengths 1, velocities O(1))
        assert (projected - off).abs().max() < 1e-2  # a small correction, not another state
        again = project_states(f, on)
        assert (again - on).abs().max() < 1e-14


def test_a_long_rk4_rollout_stays_on_the_manifold_with_projection_and_drifts_without():
    chain = CartesianChainPendulum(n=2)
    x0 = chain.sample_initial_states(2, torch.Generator().manual_seed(0))
    plain = solve(chain, "rk4", x0, 0.1, 500)
    projected = solve_projected(chain, "rk4", x0, 0.1, 500, project_every=1)
    phi = chain.constraint_set().phi
    assert plain.all_ok and projected.all_ok and projected.ys.shape == plain.ys.shape
    assert phi(plain.ys[..., :4]).abs().max() > 1e-3  # measured 2.8e-3 (|G v| 3.0e-2) at t = 50
    assert phi(projected.ys[..., :4]).abs().max() < 1e-14  # measured 5.6e-16
    assert chain.constraint_violation(projected.ys).max() < 1e-14  # measured 8.9e-16
    # Before the first projection the segments are the plain solve's steps, bit for bit.
    segmented = solve_projected(chain, "rk4", x0, 0.1, 40, 2, project_every=20)
    reference = solve(chain, "rk4", x0, 0.1, 40, 2)
    assert torch.equal(segmented.ys[:, :10], reference.ys[:, :10])
    assert torch.equal(segmented.ts, reference.ts) and segmented.stats["steps"] == 40
    assert segmented.stats["field_evaluations"] == reference.stats["field_evaluations"]


def test_bad_projection_arguments_are_refused_with_what_is_allowed():
    chain = CartesianChainPendulum(n=2)
    x0 = chain.sample_initial_states(1, torch.Generator().manual_seed(0))
    with pytest.raises(InvalidArgumentError, match=r"^project_every must be an integer >= 1, got 0$"):
        solve_projected(chain, "rk4", x0, 0.1, 10, project_every=0)
    with pytest.raises(InvalidArgumentError, match=r"^project_every = 3 must be a multiple of save_every = 2 "):
        solve_projected(chain, "rk4", x0, 0.1, 10, 2, project_every=3)
    unknown = CHNN.for_system(chain, known_lengths=False, hidden=(8,)).double()
    with pytest.raises(InvalidArgumentError, match=r"^CHNN: projecting onto the constraint manifold needs the "
                                                   r"constraint lengths, which were not given"):
        project_states(unknown, x0)
    with pytest.raises(InvalidArgumentError, match=r"^projection needs a constrained system or model .*got str$"):
        project_states("chain", x0)


class _BreaksLate(CartesianChainPendulum):
    """The chain whose field turns NaN after t = 2.55 where body 2 is right of x = 0.5 (and stays NaN)."""

    def vector_field(self, t, x):
        nan = torch.isnan(x).any(-1, keepdim=True)
        safe = torch.where(nan, self.from_angles(torch.zeros(4, dtype=x.dtype)), x)
        out = super().vector_field(t, safe)
        return torch.where(nan | ((float(t) > 2.55) & (x[..., 2:3] > 0.5)), float("nan"), out)


def test_trajectories_that_go_bad_are_frozen_at_the_same_steps_as_in_solve():
    chain = _BreaksLate(n=2)
    x0 = chain.sample_initial_states(4, torch.Generator().manual_seed(0))
    plain = solve(chain, "rk4", x0, 0.1, 60)
    projected = solve_projected(chain, "rk4", x0, 0.1, 60, project_every=20)
    assert plain.first_bad_step.tolist() == [55, -1, 28, 57]  # bad in the second and third segments
    assert torch.equal(projected.status, plain.status)
    assert torch.equal(projected.first_bad_step, plain.first_bad_step)
    assert torch.equal(projected.ys.isnan().any(-1), plain.ys.isnan().any(-1))
    assert projected.stats["steps"] == 60
