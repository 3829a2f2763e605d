"""From scalar functions to vector fields (hnnlab.dynamics): Hamilton's equations and the Euler-Lagrange equations
by autograd against every analytic system's closed form (the closed forms themselves are checked against
derivations by hand in tests/test_systems.py)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from hnnlab.dynamics import euler_lagrange_accelerations, hamiltonian_vector_field, lagrangian_energy
from hnnlab.systems import SYSTEMS, AbstractHamiltonianSystem, AbstractLagrangianSystem, get_system

HAMILTONIAN = [n for n in SYSTEMS.names() if issubclass(SYSTEMS.get(n), AbstractHamiltonianSystem)]
LAGRANGIAN = [n for n in SYSTEMS.names() if issubclass(SYSTEMS.get(n), AbstractLagrangianSystem)]


def sample(system, n: int = 32) -> Tensor:
    """``n`` float64 initial states of ``system`` (seed 0)."""
    return system.sample_initial_states(n, torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("name", HAMILTONIAN)
def test_closed_form_field_equals_autograd_of_hamiltonian(name):
    s = get_system(name)
    x = sample(s)
    torch.testing.assert_close(
        s.vector_field(0.0, x), hamiltonian_vector_field(s.hamiltonian, x), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("name", LAGRANGIAN)
def test_closed_form_accelerations_equal_euler_lagrange_of_lagrangian(name):
    s = get_system(name)
    x = sample(s)
    torch.testing.assert_close(
        s.accelerations(x), euler_lagrange_accelerations(s.lagrangian, x), rtol=1e-10, atol=1e-10
    )
    torch.testing.assert_close(s.energy(x), lagrangian_energy(s.lagrangian, x), rtol=1e-12, atol=1e-10)


def test_input_gradient_under_no_grad_of_a_view_of_a_leaf_that_requires_grad():
    """Under ``torch.no_grad`` a view of a leaf that requires grad still says ``requires_grad`` but is in no graph:
    the gradient is taken on a detached copy (it failed with "not used in the graph" before), and equals it."""
    from hnnlab.dynamics import input_gradient

    leaf = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        view = leaf.reshape(3, 2)[..., :1]
        assert view.requires_grad and view.grad_fn is None
        grad = input_gradient(lambda q: (q**3).sum(-1), view)
    assert torch.equal(grad, 3 * leaf.detach()[..., :1] ** 2) and not grad.requires_grad
