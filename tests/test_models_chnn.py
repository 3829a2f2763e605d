"""CHNN and CLNN: with the true mass and potential they are the constrained systems; rollouts stay on the manifold;
bad constraints, off-manifold states and singular Jacobians are refused; the constraints round-trip in checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from hnnlab.errors import IncompatibleIntegratorError, InvalidArgumentError
from hnnlab.integrators import get_integrator
from hnnlab.models import CHNN, CLNN
from hnnlab.rollout import rollout
from hnnlab.systems import SYSTEMS, get_system
from hnnlab.systems.constrained import (
    AbstractConstrainedSystem,
    CartesianChainPendulum,
    ConstraintViolationError,
    SingularConstraintError,
)
from tests.test_models import Scalar  # a known scalar function (a system's potential) wrapped as a network
from tests.test_training_checkpoint import save_and_load

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")

CONSTRAINED = [n for n in SYSTEMS.names() if issubclass(SYSTEMS.get(n), AbstractConstrainedSystem)]


def system_of(name: str, n: int) -> AbstractConstrainedSystem:
    if "chain" in name:  # the paper's chains: masses and lengths drawn from U(0.6, 1.4)
        return SYSTEMS.get(name).with_random_parameters(n, torch.Generator().manual_seed(n))
    return get_system(name, n=n)


def true_model(system: AbstractConstrainedSystem, **kwargs) -> CHNN | CLNN:
    """The model of ``system``'s kind with its constraints, its potential as the network and its masses set."""
    cls = CHNN if system.coordinates == "canonical" else CLNN
    model = cls.for_system(system, potential_net=Scalar(system.potential), **kwargs).double()
    with torch.no_grad():  # M_b = diag(m) = L L^T with L = diag(sqrt(m)): the softplus preimage of sqrt(m)
        root = torch.tensor(system.body_masses(), dtype=torch.float64).sqrt()
        model.mass_diagonal.copy_(root + torch.log(-torch.expm1(-root)))
        if model.mass_lower is not None:
            model.mass_lower.zero_()
    return model


def states(system, n: int = 16, seed: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
    return system.sample_initial_states(n, torch.Generator().manual_seed(seed), dtype=dtype)


# ------------------------------------------------------------------------------------------------
# The true mass and potential give the true constrained field (the constrained systems' counterpart of the HNN and
# LNN true-H/L tests of tests/test_models.py, which exclude them).


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("name", CONSTRAINED)
def test_true_mass_and_potential_reproduce_the_constrained_field(name: str, n: int) -> None:
    system = system_of(name, n)
    model = true_model(system)
    x = states(system)
    torch.testing.assert_close(model(0.0, x), system.vector_field(0.0, x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.energy(x), system.energy(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.mass_matrix(), torch.diag(system._mass_vector(x)), rtol=1e-14, atol=1e-14)
    model32, x32 = true_model(system).float(), x.float()
    y32 = model32(0.0, x32)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), system.vector_field(0.0, x), rtol=1e-4, atol=1e-4)


def test_the_field_needs_only_the_structure_not_the_lengths() -> None:
    system = system_of("chain_pendulum_cartesian", 3)
    known, unknown = true_model(system), true_model(system, known_lengths=False)
    assert unknown.describe()["init_args"]["pairs"] == [[0, 1], [1, 2]]
    x = states(system)
    torch.testing.assert_close(unknown(0.0, x), known(0.0, x), rtol=0, atol=0)


def test_the_mass_matrix_is_positive_definite_by_construction_and_isotropic() -> None:
    torch.manual_seed(0)
    model = CHNN(6, spatial_dim=2, pairs=[[0, 1], [1, 2]], fixed=[[0, [0.0, 0.0]]], hidden=(8,)).double()
    with torch.no_grad():  # large random raw parameters, negative diagonal entries included
        model.mass_diagonal.copy_(2 * torch.randn(3, dtype=torch.float64))
        model.mass_lower.copy_(2 * torch.randn(3, dtype=torch.float64))
    body = model.body_mass_matrix().detach()
    assert float(torch.linalg.eigvalsh(body).min()) > 0
    torch.testing.assert_close(model.mass_matrix(), torch.kron(body, torch.eye(2, dtype=torch.float64)))
    u = torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(model.inverse_mass(u), torch.linalg.solve(model.mass_matrix(), u.T).T)
    torch.testing.assert_close(model.apply_mass(model.inverse_mass(u)), u)


# ------------------------------------------------------------------------------------------------
# Rollouts stay on the manifold.


def learned_like(system: AbstractConstrainedSystem, dtype: torch.dtype = torch.float64) -> CHNN | CLNN:
    """A model with a random potential network and a random (coupled) mass matrix: what training starts from."""
    torch.manual_seed(0)
    cls = CHNN if system.coordinates == "canonical" else CLNN
    model = cls.for_system(system, hidden=(16, 16)).to(dtype)
    with torch.no_grad():
        if model.mass_lower is not None:
            model.mass_lower.copy_(0.3 * torch.randn_like(model.mass_lower))
    return model


@pytest.mark.parametrize("name", ["chain_pendulum_cartesian", "chain_pendulum_cartesian_lagrangian"])
@pytest.mark.parametrize("method", ["implicit_midpoint", "gauss_legendre4"])
def test_gauss_methods_keep_a_learned_models_constraints_to_round_off(name: str, method: str) -> None:
    """``phi`` and ``G v`` are quadratic invariants of the projected field everywhere, so Gauss methods keep them to
    their solve tolerance whatever the potential; float32 to its round-off."""
    system = system_of(name, 3)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
        model = learned_like(system, dtype)
        x0 = on_the_models_manifold(model, system, states(system, n=4, dtype=dtype))
        with torch.no_grad():
            ys = rollout(model, get_integrator(method), x0, 0.05, 40)
        positions = ys[..., : system.dof].double()
        assert float(system.constraint_set().phi(positions).abs().max()) < tol
        assert float(model.constraint_violation(ys).max()) < tol


def on_the_models_manifold(model: CHNN | CLNN, system: AbstractConstrainedSystem, x: Tensor) -> Tensor:
    """The system's states with the model's momenta ``p = M_model v`` (a CHNN's momentum constraint
    ``G M^-1 p = 0`` involves its own mass; a CLNN's ``G v = 0`` does not)."""
    xv = system.positions_and_velocities(x)
    return model.momenta(xv).detach() if model.coordinates == "canonical" else xv


def test_rk4_lets_a_learned_model_drift_off_the_manifold_at_its_order() -> None:
    system = system_of("chain_pendulum_cartesian", 2)
    model = learned_like(system)
    x0 = on_the_models_manifold(model, system, states(system, n=4))
    drift = []
    for dt in (0.04, 0.02):
        with torch.no_grad():
            ys = rollout(model, get_integrator("rk4"), x0, dt, int(round(2.0 / dt)))
        drift.append(float(model.constraint_violation(ys).max()))
    assert drift[1] > 1e-12 and 3.5 < math.log2(drift[0] / drift[1]) < 5.5, drift


def test_the_learned_energy_is_conserved_by_the_projected_flow() -> None:
    """``dH/dt = grad H . P J grad H = 0`` for any potential and mass (the projection keeps the field symplectic-
    orthogonal to grad H)."""
    system = system_of("chain_pendulum_cartesian", 3)
    model = learned_like(system)
    x = states(system).requires_grad_(True)
    (grad,) = torch.autograd.grad(model.energy(x).sum(), x)
    rate = (grad * model(0.0, x)).sum(-1)
    assert float(rate.abs().max()) < 1e-12 * float((grad.abs() * model(0.0, x).abs()).sum(-1).max())


# ------------------------------------------------------------------------------------------------
# Bad input.


def test_constraints_that_do_not_fit_the_state_are_refused_at_construction() -> None:
    cases = [
        (dict(dof=5, spatial_dim=2, pairs=[[0, 1]]),
         "CHNN: dof = 5 is not a whole number of bodies of spatial_dim = 2 coordinates each (dof must be n_bodies "
         "* spatial_dim)"),
        (dict(dof=4, spatial_dim=2, pairs=[[0, 2, 1.0]]),
         "CHNN (dof = 4, 2 bodies of spatial_dim 2): DistanceConstraints: pair (0, 2) must name two different "
         "bodies in 0..1"),
        (dict(dof=4, spatial_dim=2, fixed=[[0, [0.0, 0.0, 0.0], 1.0]]),
         "CHNN (dof = 4, 2 bodies of spatial_dim 2): DistanceConstraints: the fixed point of body 0 has 3 "
         "coordinates; d = 2"),
        (dict(dof=4, spatial_dim=2, pairs=[[0]]),
         "CHNN: every entry of pairs must be [i, j, length] or [i, j] (bodies numbered from 0), got [0]"),
        (dict(dof=4, spatial_dim=2, pairs=[[0, 1, -1.0]]),
         "CHNN (dof = 4, 2 bodies of spatial_dim 2): DistanceConstraints: the length of the pair (0, 1) must be "
         "finite and > 0, got -1.0"),
        (dict(dof=4, spatial_dim=2, pairs=[[0, 1]], fixed=[[0, [0.0, 0.0], 1.0]]),
         "CHNN (dof = 4, 2 bodies of spatial_dim 2): DistanceConstraints: give every constraint's length or none "
         "of them"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidArgumentError) as info:
            CHNN(**kwargs)
        assert str(info.value) == message


def test_off_manifold_states_and_a_singular_jacobian_are_named() -> None:
    system = system_of("chain_pendulum_cartesian", 2)
    model = true_model(system)
    x = states(system, n=3)
    model.check_on_manifold(x)  # on the manifold: accepted
    bad = x.clone()
    bad[1, 0] += 1e-3  # body 1's x moved: |x_1|^2 - l_1^2 changes by about 2e-3 |x_1|
    expected = float(system.constraint_violation(bad).max())
    with pytest.raises(ConstraintViolationError) as info:
        model.check_on_manifold(bad)
    assert str(info.value) == (
        f"CHNN: the state is off the constraint manifold by {expected:.3g} (max |phi| and |d phi/dt|); allowed: 1e-08"
    )
    moving_off = x.clone()
    moving_off[1, 4] += 1e-3  # body 0's momentum gains a component along its rod
    structure_only = true_model(system, known_lengths=False)
    with pytest.raises(ConstraintViolationError, match=r"by .* \(max \|d phi/dt\|; lengths not given\)"):
        structure_only.check_on_manifold(moving_off)
    collapsed = x.clone()
    collapsed[:, 2:4] = collapsed[:, 0:2]  # body 1 on body 0: the second link has no direction
    with pytest.raises(SingularConstraintError) as info:
        model(0.0, collapsed)
    assert str(info.value).startswith("CHNN: the constraint Jacobian is singular at state (0,)")


def test_explicit_splitting_methods_are_refused_for_the_projected_field() -> None:
    system = system_of("chain_pendulum_cartesian", 2)
    model = true_model(system)
    with pytest.raises(IncompatibleIntegratorError):
        rollout(model, get_integrator("leapfrog"), states(system, n=2), 0.01, 2)


# ------------------------------------------------------------------------------------------------
# Checkpoints.


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("cls", [CHNN, CLNN])
def test_the_constraint_structure_round_trips_through_a_checkpoint(cls, dtype: torch.dtype, tmp_path: Path) -> None:
    system = CartesianChainPendulum.with_random_parameters(3, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = cls.for_system(system, hidden=(8, 8)).to(dtype)
    with torch.no_grad():
        model.mass_lower.copy_(0.2 * torch.randn_like(model.mass_lower))
    loaded = save_and_load(model, tmp_path / "model.ckpt")
    assert type(loaded) is cls
    assert loaded.constraints == model.constraints
    x = states(system, n=5, dtype=dtype)
    assert torch.equal(loaded(0.0, x), model(0.0, x))
    assert torch.equal(loaded.energy(x), model.energy(x))
