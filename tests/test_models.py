"""Tests of hnnlab.models: the mathematics of every model's vector field, and its interface."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

from hnnlab.dynamics import input_gradient, lagrangian_energy
from hnnlab.errors import IncompatibleIntegratorError, InvalidArgumentError, UnknownNameError
from hnnlab.integrators import INTEGRATORS, get_integrator
from hnnlab.models import (
    CHNN,
    CLNN,
    HNN,
    LNN,
    MLP,
    MODELS,
    AbstractModel,
    DissipativeHNN,
    NeuralODE,
    PortHamiltonianNN,
    SecondOrderNeuralODE,
    SeparableHNN,
    StructuredLNN,
    get_model,
)
from hnnlab.rollout import rollout
from hnnlab.systems import SYSTEMS, get_system
from hnnlab.systems.constrained import AbstractConstrainedSystem

# Systems whose field follows from an unconstrained H or L: the constrained Cartesian systems project theirs onto
# the constraint manifold, so an HNN or LNN of their H or L does not give it; CHNN and CLNN with their true mass and
# potential do (tests/test_models_chnn.py, over every constrained system in the registry).
UNCONSTRAINED = [n for n in SYSTEMS.names() if not issubclass(SYSTEMS.get(n), AbstractConstrainedSystem)]
CANONICAL_CONSERVATIVE = [
    n for n in UNCONSTRAINED if SYSTEMS.get(n).coordinates == "canonical" and SYSTEMS.get(n).conservative
]
SEPARABLE = [n for n in CANONICAL_CONSERVATIVE if SYSTEMS.get(n).is_separable]
LAGRANGIAN = [n for n in UNCONSTRAINED if SYSTEMS.get(n).coordinates == "lagrangian"]
SMALL = (16, 16)  # hidden widths of the small random models used by the structural tests


class Scalar(nn.Module):
    """A known scalar function (a system's H, T, V or L) wrapped as a network."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def small_model(name: str, dof: int = 2, hidden: tuple[int, ...] = SMALL, **kwargs) -> AbstractModel:
    """A small random model of every registered kind, in float64."""
    torch.manual_seed(0)
    activation = "softplus" if name == "lnn" else "tanh"
    return get_model(name, dof=dof, hidden=hidden, activation=activation, **kwargs).double()


def random_states(model: AbstractModel, n: int = 5, seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2 * model.dof, generator=generator, dtype=torch.float64)


def states_of(system, n: int = 64, seed: int = 0) -> Tensor:
    return system.sample_initial_states(n, torch.Generator().manual_seed(seed), dtype=torch.float64)


def error_message(call, *args) -> str:
    """The message of the :class:`InvalidArgumentError` that ``call(*args)`` raises (the test fails if none)."""
    with pytest.raises(InvalidArgumentError) as info:
        call(*args)
    return str(info.value)


def jacobian_per_sample(f, x: Tensor) -> Tensor:
    """``d f(x)_i / d x_i`` for each sample ``i``, ``(n, d, d)``."""
    full = torch.autograd.functional.jacobian(f, x)  # (n, d, n, d)
    return torch.stack([full[i, :, i, :] for i in range(x.shape[0])])


# ------------------------------------------------------------------------------------------------
# Known energies: the models reproduce the analytic systems exactly.


@pytest.mark.parametrize("backend", ["autograd", "func"])
@pytest.mark.parametrize("system_name", CANONICAL_CONSERVATIVE)
def test_hnn_with_true_hamiltonian_reproduces_system_field(system_name: str, backend: str) -> None:
    system = get_system(system_name)
    model = HNN(system.dof, net=Scalar(system.energy), backend=backend)
    x = states_of(system)
    torch.testing.assert_close(model(0.0, x), system.vector_field(0.0, x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.energy(x), system.energy(x), rtol=0, atol=0)


@pytest.mark.parametrize("system_name", SEPARABLE)
def test_separable_hnn_with_true_kinetic_and_potential_reproduces_system_halves(system_name: str) -> None:
    system = get_system(system_name)
    model = SeparableHNN(system.dof, kinetic_net=Scalar(system.kinetic), potential_net=Scalar(system.potential))
    x = states_of(system)
    torch.testing.assert_close(model.dq_dt(0.0, x), system.dq_dt(0.0, x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.dp_dt(0.0, x), system.dp_dt(0.0, x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model(0.0, x), system.vector_field(0.0, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["autograd", "func"])
@pytest.mark.parametrize("system_name", LAGRANGIAN)
def test_lnn_with_true_lagrangian_reproduces_closed_form_accelerations(system_name: str, backend: str) -> None:
    system = get_system(system_name)
    model = LNN(system.dof, net=Scalar(system.lagrangian), backend=backend)
    x = states_of(system)
    expected = system.accelerations(x)  # closed form (double pendulum) or the system's own solve
    torch.testing.assert_close(model.accelerations(x), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model(0.0, x), torch.cat([x[:, system.dof :], expected], -1), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.energy(x), system.energy(x), rtol=1e-12, atol=1e-12)


class TrueCholeskyEntries(nn.Module):
    """The entries a StructuredLNN's ``mass_net`` must output for ``M(q)``: softplus^-1 of the diagonal of
    ``chol(M - eps I)``, then its strictly lower part row by row."""

    def __init__(self, mass_matrix, eps: float) -> None:
        super().__init__()
        self.mass_matrix, self.eps = mass_matrix, eps

    def forward(self, q: Tensor) -> Tensor:
        m = self.mass_matrix(q)
        dof = m.shape[-1]
        c = torch.linalg.cholesky(m - self.eps * torch.eye(dof, dtype=m.dtype))
        diagonal = c.diagonal(dim1=-2, dim2=-1)
        rows, cols = torch.tril_indices(dof, dof, offset=-1)
        return torch.cat([diagonal + torch.log(-torch.expm1(-diagonal)), c[..., rows, cols]], dim=-1)


@pytest.mark.parametrize("backend", ["autograd", "func"])
@pytest.mark.parametrize("system_name", LAGRANGIAN)
def test_structured_lnn_with_true_mass_and_potential_reproduces_closed_form_accelerations(
    system_name: str, backend: str
) -> None:
    system = get_system(system_name, **({"n": 3} if system_name == "chain_pendulum" else {}))
    eps = 1e-3
    model = StructuredLNN(system.dof, eps=eps, mass_net=TrueCholeskyEntries(system.mass_matrix, eps),
                          potential_net=Scalar(system.potential), backend=backend)
    x = states_of(system)
    q = x[:, : system.dof]
    torch.testing.assert_close(model.mass_matrix(q), system.mass_matrix(q), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.lagrangian(x), system.lagrangian(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.accelerations(x), system.accelerations(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.energy(x), system.energy(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dof", [1, 2, 3])
def test_structured_lnn_mass_matrix_is_positive_definite_and_is_the_velocity_hessian(dof: int) -> None:
    torch.manual_seed(dof)
    model = StructuredLNN(dof, hidden=SMALL, eps=1e-3).double()
    with torch.no_grad():  # large random weights: a general LNN's mass matrix would be indefinite here
        for p in model.parameters():
            p.mul_(5.0)
    x = 3 * torch.randn(200, 2 * dof, dtype=torch.float64)
    m = model.mass_matrix(x[:, :dof])
    torch.testing.assert_close(m, m.transpose(-1, -2), rtol=0, atol=0)
    assert torch.linalg.eigvalsh(m).min() >= 1e-3 * (1 - 1e-9)
    hessian = torch.func.vmap(torch.func.hessian(model.lagrangian))(x)[:, dof:, dof:]
    torch.testing.assert_close(hessian, m, rtol=1e-10, atol=1e-10)
    # E = T + V equals the general q_dot . dL/dq_dot - L, and the learned flow conserves it.
    torch.testing.assert_close(model.energy(x), lagrangian_energy(model.lagrangian, x), rtol=1e-12, atol=1e-10)
    dE_dt = (input_gradient(model.energy, x) * model(0.0, x)).sum(-1)
    scale = input_gradient(model.energy, x).abs().sum(-1) * model(0.0, x).abs().max(-1).values
    assert (dE_dt.abs() / scale).max() < 1e-10


def test_structured_lnn_rejects_bad_options_and_bad_networks() -> None:
    with pytest.raises(InvalidArgumentError, match=r"^eps must be a finite number > 0, got 0$"):
        StructuredLNN(2, eps=0)
    message = r"^solve_dtype must be None or one of 'float32', 'float64', got 'f16'$"
    with pytest.raises(InvalidArgumentError, match=message):
        StructuredLNN(2, solve_dtype="f16")
    model = StructuredLNN(2, mass_net=nn.Linear(2, 2))
    assert error_message(model, 0.0, torch.zeros(4, 4)) == (
        "mass_net must map (..., 2) to (..., 3) entries of the Cholesky factor; for input shape (4, 2) it "
        "returned shape (4, 2)"
    )


def test_lnn_test_covers_the_double_pendulum() -> None:
    assert "double_pendulum" in LAGRANGIAN, "DoublePendulum is not registered: the LNN reference test did not run"


def test_dissipative_hnn_with_true_parts_reproduces_damped_oscillator() -> None:
    system = get_system("damped_oscillator", k=2.0, m=0.5, gamma=0.3)

    def dissipation(x: Tensor) -> Tensor:  # D = -gamma p^2 / (2 m)
        return -system.gamma * x[..., 1] ** 2 / (2 * system.m)

    model = DissipativeHNN(1, net=Scalar(system.energy), dissipation_net=Scalar(dissipation))
    x = states_of(system)
    torch.testing.assert_close(model(0.0, x), system.vector_field(0.0, x), rtol=1e-12, atol=1e-12)
    # The energy is the conservative part, and it decays at the system's rate dH/dt = grad H . grad D.
    dH = input_gradient(model.energy, x)
    torch.testing.assert_close((dH * model(0.0, x)).sum(-1), system.energy_rate(x), rtol=1e-12, atol=1e-12)


def test_separable_hnn_known_diagonal_mass_matrix_learns_only_potential() -> None:
    system = get_system("mass_spring", k=2.0, m=0.5)
    model = SeparableHNN(1, mass_matrix=[0.5], potential_net=Scalar(system.potential))
    assert model.kinetic_net is None
    assert sum(p.numel() for p in model.parameters()) == 0  # T is fixed and V is given: nothing to learn
    x = states_of(system)
    torch.testing.assert_close(model(0.0, x), system.vector_field(0.0, x), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(model.energy(x), system.energy(x), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("layout", ["flat", "nested"])
def test_separable_hnn_full_mass_matrix_gives_velocity_m_inverse_p(layout: str) -> None:
    mass = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    given = mass.reshape(-1).tolist() if layout == "flat" else mass.tolist()
    model = SeparableHNN(2, hidden=SMALL, mass_matrix=given).double()
    x = torch.randn(7, 4, dtype=torch.float64)
    p = x[:, 2:]
    expected = torch.linalg.solve(mass, p.T).T
    torch.testing.assert_close(model.dq_dt(0.0, x), expected, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(model.kinetic(p), 0.5 * (p * expected).sum(-1), rtol=1e-14, atol=1e-14)
    # float32 model: M^-1 is cast to the state's dtype.
    assert model.float().dq_dt(0.0, x.float()).dtype == torch.float32


@pytest.mark.parametrize(
    ("mass_matrix", "fragment"),
    [
        ([1.0, 2.0, 3.0], "mass_matrix must hold dof = 2 numbers (a diagonal) or dof * dof = 4 numbers"),
        ([1.0, -2.0], "mass_matrix must be symmetric positive definite"),
        ([[1.0, 0.2], [0.3, 1.0]], "mass_matrix must be symmetric positive definite"),
        ([[1.0, 2.0], [2.0, 1.0]], "mass_matrix must be symmetric positive definite"),
    ],
)
def test_separable_hnn_rejects_bad_mass_matrix(mass_matrix, fragment: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        SeparableHNN(2, hidden=SMALL, mass_matrix=mass_matrix)
    assert str(info.value).startswith(fragment)


def test_separable_hnn_rejects_mass_matrix_with_kinetic_net() -> None:
    with pytest.raises(InvalidArgumentError, match="give at most one of mass_matrix .* and kinetic_net"):
        SeparableHNN(1, mass_matrix=[1.0], kinetic_net=nn.Linear(1, 1))


# ------------------------------------------------------------------------------------------------
# Structure of random (untrained) models.


@pytest.mark.parametrize("name", ["hnn", "separable_hnn"])
@pytest.mark.parametrize("backend", ["autograd", "func"])
def test_hamiltonian_fields_are_divergence_free_and_conserve_their_energy(name: str, backend: str) -> None:
    model = small_model(name, backend=backend) if name == "hnn" else small_model(name)
    x = random_states(model, n=6)
    J = jacobian_per_sample(lambda z: model(0.0, z), x)  # (n, 4, 4)
    divergence = J.diagonal(dim1=-2, dim2=-1).sum(-1)
    assert divergence.abs().max() < 1e-12
    # Liouville in the strong form: the Jacobian is Hamiltonian, Omega J symmetric.
    omega = torch.tensor([[0, 0, 1, 0], [0, 0, 0, 1], [-1, 0, 0, 0], [0, -1, 0, 0]], dtype=torch.float64)
    sym = omega @ J
    torch.testing.assert_close(sym, sym.transpose(-1, -2), rtol=0, atol=1e-12)
    dH_dt = (input_gradient(model.energy, x) * model(0.0, x)).sum(-1)
    assert dH_dt.abs().max() < 1e-12


def test_dissipative_and_neural_ode_fields_are_not_divergence_free() -> None:
    """The Liouville test can fail: the divergence of grad D is the Laplacian of D."""
    model = small_model("dissipative_hnn")
    x = random_states(model, n=4)
    divergence = jacobian_per_sample(lambda z: model(0.0, z), x).diagonal(dim1=-2, dim2=-1).sum(-1)
    laplacian = torch.stack(
        [torch.autograd.functional.hessian(lambda z: model.dissipation(z), xi).trace() for xi in x]
    )
    torch.testing.assert_close(divergence, laplacian, rtol=1e-10, atol=1e-12)
    assert laplacian.abs().min() > 1e-4
    node = small_model("node")
    node_div = jacobian_per_sample(lambda z: node(0.0, z), x).diagonal(dim1=-2, dim2=-1).sum(-1)
    assert node_div.abs().min() > 1e-4


@pytest.mark.parametrize("backend", ["autograd", "func"])
def test_lnn_field_conserves_its_energy(backend: str) -> None:
    """Along the Euler-Lagrange flow, dE/dt = grad E . (q_dot, q_dd) = 0 for any L with invertible mass."""
    model = small_model("lnn", backend=backend)
    x = random_states(model, n=6)
    dE_dt = (input_gradient(model.energy, x) * model(0.0, x)).sum(-1)
    scale = input_gradient(model.energy, x).abs().sum(-1) * model(0.0, x).abs().max(-1).values
    assert (dE_dt.abs() / scale).max() < 1e-10


@pytest.mark.parametrize("name", MODELS.names())
def test_batch_independence(name: str) -> None:
    model = small_model(name)
    x = random_states(model, n=4)
    y = model(0.0, x)
    x_changed = x.clone()
    x_changed[2] += 0.5
    y_changed = model(0.0, x_changed)
    assert torch.equal(y_changed[[0, 1, 3]], y[[0, 1, 3]])
    assert not torch.allclose(y_changed[2], y[2])
    # Stronger: the Jacobian of the batched field is block diagonal.
    full = torch.autograd.functional.jacobian(lambda z: model(0.0, z), x)  # (n, d, n, d)
    off_diagonal = full.clone()
    for i in range(x.shape[0]):
        off_diagonal[i, :, i, :] = 0
    assert torch.count_nonzero(off_diagonal) == 0


@pytest.mark.parametrize("name", MODELS.names())
def test_gradcheck_through_vector_field_in_state_and_parameters(name: str) -> None:
    model = small_model(name, dof=1, hidden=(6, 6))  # few parameters: gradcheck perturbs each one
    x = random_states(model, n=3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: model(0.0, z), (x,))
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())

    def field_of_parameters(*values: Tensor) -> Tensor:
        return functional_call(model, dict(zip(names, values, strict=True)), (0.0, x.detach()))

    assert torch.autograd.gradcheck(field_of_parameters, params)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_parameter_gets_a_gradient_from_a_vector_field_loss(name: str) -> None:
    """No unused parameter (DDP fails on one): in particular no bias on a scalar energy's output."""
    model = small_model(name)
    x = random_states(model, n=8)
    loss = (model(0.0, x) ** 2).mean()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MODELS.names())
def test_no_grad_rollout_mode_gives_same_values_without_graph(name: str) -> None:
    model = small_model(name)
    x = random_states(model)
    y_train = model(0.0, x)
    assert y_train.requires_grad
    with torch.no_grad():
        y_eval = model(0.0, x)
    assert not y_eval.requires_grad
    torch.testing.assert_close(y_eval, y_train.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS.names())
def test_float32_agrees_with_float64(name: str) -> None:
    model = small_model(name)
    x = random_states(model)
    y64 = model(0.0, x)
    model32 = small_model(name).float()
    y32 = model32(0.0, x.float())
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64.detach(), rtol=1e-4, atol=1e-4)
    e = model32.energy(x.float())
    assert (e is None) == (not model32.has_energy)
    if e is not None:
        assert e.dtype == torch.float32 and e.shape == (x.shape[0],)


@pytest.mark.parametrize("name", ["hnn", "lnn"])
def test_func_backend_equals_autograd_backend_in_values_and_parameter_gradients(name: str) -> None:
    results = []
    for backend in ("autograd", "func"):
        model = small_model(name, backend=backend)
        x = random_states(model, n=8)
        y = model(0.0, x)
        (y**2).mean().backward()
        results.append((y.detach(), [p.grad for p in model.parameters()]))
    (y_a, g_a), (y_f, g_f) = results
    torch.testing.assert_close(y_f, y_a, rtol=1e-12, atol=1e-12)
    for a, f in zip(g_a, g_f, strict=True):
        torch.testing.assert_close(f, a, rtol=1e-10, atol=1e-12)


def test_second_order_node_has_exact_kinematics() -> None:
    model = small_model("second_order_node")
    x = random_states(model)
    y = model(0.0, x)
    assert torch.equal(y[:, :2], x[:, 2:])
    torch.testing.assert_close(y[:, 2:], model.accelerations(x), rtol=0, atol=0)


def test_model_capabilities() -> None:
    expected = {
        "chnn": ("canonical", False, True),
        "clnn": ("lagrangian", False, True),
        "hnn": ("canonical", False, True),
        "separable_hnn": ("canonical", True, True),
        "dissipative_hnn": ("canonical", False, True),
        "lnn": ("lagrangian", False, True),
        "node": ("canonical", False, False),
        "phnn": ("canonical", False, True),
        "second_order_node": ("lagrangian", False, False),
        "structured_lnn": ("lagrangian", False, True),
    }
    assert sorted(expected) == MODELS.names()
    for name, (coordinates, separable, has_energy) in expected.items():
        model = small_model(name)
        assert (model.coordinates, model.is_separable, model.has_energy) == (coordinates, separable, has_energy)
        assert hasattr(model, "dq_dt") == separable
        assert (model.energy(random_states(model)) is None) == (not has_energy)
    assert NeuralODE(1, coordinates="lagrangian").coordinates == "lagrangian"


def test_conservative_is_declared_by_the_class() -> None:
    """``conservative`` is a class attribute, read, never probed: only the dissipative HNN is not."""
    assert DissipativeHNN(1).conservative is False and DissipativeHNN.conservative is False
    assert HNN(1).conservative is True
    for name in MODELS.names():
        cls = MODELS.get(name)
        assert cls.conservative is (name not in ("dissipative_hnn", "phnn")), name
        assert "conservative" not in vars(small_model(name))  # never set per instance
        assert small_model(name).describe()["conservative"] is cls.conservative


def test_baselines_take_an_injected_network_and_check_its_output_shape() -> None:
    torch.manual_seed(0)
    field = nn.Linear(4, 4).double()
    node = NeuralODE(2, net=field)
    x = torch.randn(5, 4, dtype=torch.float64)
    assert node.net is field and torch.equal(node(0.0, x), field(x))
    accelerations = nn.Linear(4, 2).double()
    second = SecondOrderNeuralODE(2, net=accelerations)
    assert torch.equal(second(0.0, x), torch.cat([x[:, 2:], accelerations(x)], dim=-1))
    with pytest.raises(InvalidArgumentError) as info:
        NeuralODE(2, net=nn.Linear(4, 3))(0.0, torch.zeros(5, 4))
    assert str(info.value) == (
        "net must map inputs of shape (..., 4) to shape (..., 4); for input shape (5, 4) it returned shape (5, 3)"
    )
    with pytest.raises(InvalidArgumentError, match=r"to shape \(\.\.\., 2\); for input shape \(5, 4\)"):
        SecondOrderNeuralODE(2, net=nn.Linear(4, 4))(0.0, torch.zeros(5, 4))


# ------------------------------------------------------------------------------------------------
# Models as vector fields: integrators and rollout.


@pytest.mark.parametrize("integrator_name", INTEGRATORS.names())
@pytest.mark.parametrize("model_name", ["separable_hnn", "hnn"])
def test_model_with_true_energy_rolls_out_like_the_system_with_every_integrator(
    model_name: str, integrator_name: str
) -> None:
    system = get_system("pendulum")
    if model_name == "hnn":
        model = HNN(1, net=Scalar(system.energy))
    else:
        model = SeparableHNN(1, kinetic_net=Scalar(system.kinetic), potential_net=Scalar(system.potential))
    x0 = states_of(system, n=3)
    integrator = get_integrator(integrator_name)
    if integrator.requires_separable and not model.is_separable:
        with pytest.raises(IncompatibleIntegratorError, match="declares is_separable=False"):
            rollout(model, integrator, x0, 0.05, 10)
        return
    with torch.no_grad():
        states = rollout(model, integrator, x0, 0.05, 10)
    expected = rollout(system, integrator, x0, 0.05, 10)
    assert states.shape == (3, 11, 2) and not states.requires_grad
    torch.testing.assert_close(states, expected, rtol=1e-9, atol=1e-9)


def test_lagrangian_model_rolls_out_and_backpropagates_through_the_rollout() -> None:
    model = small_model("lnn")
    x0 = random_states(model, n=3) * 0.1
    states = rollout(model, "rk4", x0, 0.01, 5)
    states[:, -1].pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_models_refuse_inference_mode_with_a_clear_message_but_baselines_run() -> None:
    model = small_model("hnn")
    x = random_states(model)
    with torch.inference_mode(), pytest.raises(InvalidArgumentError, match=r"use torch.no_grad\(\) instead"):
        model(0.0, x)
    with torch.inference_mode():
        x_inference = x.clone()
        assert small_model("node")(0.0, x_inference).shape == x.shape
        torch.testing.assert_close(model.energy(x_inference), model.net(x).squeeze(-1).detach())  # no derivative
    # An inference tensor used outside inference mode is accepted.
    torch.testing.assert_close(model(0.0, x_inference), model(0.0, x))


# ------------------------------------------------------------------------------------------------
# LNN numerics: singular mass matrices, regularisation and float64 solves.


def test_lnn_singular_mass_matrix_raises_a_clear_error() -> None:
    def rank_one(x: Tensor) -> Tensor:  # L = (q_dot1 + q_dot2)^2 / 2 - |q|^2 / 2: M = [[1, 1], [1, 1]]
        return 0.5 * (x[..., 2] + x[..., 3]) ** 2 - 0.5 * (x[..., :2] ** 2).sum(-1)

    model = LNN(2, net=Scalar(rank_one))
    x = torch.randn(4, 4, dtype=torch.float64)
    message = (
        "the mass matrix d2L/dq_dot2 is singular for sample 0 of the batch (regularization = 0.0); the "
        "Lagrangian must be strictly convex in the velocities: pass regularization > 0 to add regularization * I "
        "to the mass matrix"
    )
    with pytest.raises(InvalidArgumentError) as info:
        model(0.0, x)
    assert str(info.value) == message
    # Regularised: (M + eps I) q_dd = dL/dq (no mixed term here), solved exactly.
    eps = 0.25
    q_dd = LNN(2, net=Scalar(rank_one), regularization=eps).accelerations(x)
    mass = torch.ones(2, 2, dtype=torch.float64) + eps * torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(q_dd, torch.linalg.solve(mass, -x[:, :2].T).T, rtol=1e-12, atol=1e-12)


def test_lnn_float64_solve_keeps_float32_accuracy_on_ill_conditioned_mass() -> None:
    """The 8 x 8 Pascal matrix (integers, exact in float32, condition number ~2e7) as mass matrix:
    solved in float32 the accelerations are off by ~7e-6 relative (measured), in float64 only the final
    rounding to float32 remains."""
    n = 8
    mass = torch.tensor([[math.comb(i + j, i) for j in range(n)] for i in range(n)], dtype=torch.float64)
    force = torch.linspace(-1.0, 1.0, n, dtype=torch.float64).float().double()  # exact in float32

    def quadratic(x: Tensor) -> Tensor:  # L = q_dot^T M q_dot / 2 + force . q: M q_dd = force
        v = x[..., n:]
        return 0.5 * (v * (v @ mass.to(x.dtype))).sum(-1) + (x[..., :n] * force.to(x.dtype)).sum(-1)

    exact = torch.linalg.solve(mass, force)
    x = torch.randn(3, 2 * n)
    q_dd = LNN(n, net=Scalar(quadratic), solve_dtype="float64").accelerations(x)
    assert q_dd.dtype == torch.float32
    assert float((q_dd.double() - exact).abs().max() / exact.abs().max()) < 2e-7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"solve_dtype": "float16"}, "solve_dtype must be None or one of 'float32', 'float64', got 'float16'"),
        ({"regularization": -1.0}, "regularization must be a finite number >= 0, got -1.0"),
        ({"regularization": float("nan")}, "regularization must be a finite number >= 0, got nan"),
        ({"backend": "jax"}, "backend must be one of 'autograd', 'func', got 'jax'"),
    ],
)
def test_lnn_rejects_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        LNN(2, hidden=SMALL, **kwargs)
    assert str(info.value) == message


# ------------------------------------------------------------------------------------------------
# MLP, validation, registry and metadata.


def test_mlp_layout_and_output_layer_without_bias() -> None:
    mlp = MLP(3, (8, 5), 2, activation="silu")
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 8), (8, 5), (5, 2)]
    assert linears[-1].bias is None and all(m.bias is not None for m in linears[:-1])
    assert all(isinstance(m, nn.SiLU) for m in mlp.layers[1::2])
    assert mlp(torch.randn(4, 6, 3)).shape == (4, 6, 2)
    assert MLP(3, (), 1, bias_last=True)(torch.randn(2, 3)).shape == (2, 1)


def test_mlp_orthogonal_init() -> None:
    mlp = MLP(2, (50, 50), 1, orthogonal_init=True).double()
    w_in, w_mid, w_out = (m.weight for m in mlp.modules() if isinstance(m, nn.Linear))
    torch.testing.assert_close(w_in.T @ w_in, torch.eye(2, dtype=torch.float64), rtol=0, atol=1e-6)  # columns
    torch.testing.assert_close(w_mid @ w_mid.T, torch.eye(50, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(w_out @ w_out.T, torch.eye(1, dtype=torch.float64), rtol=0, atol=1e-6)  # a unit row
    biases = [m.bias for m in mlp.modules() if isinstance(m, nn.Linear) and m.bias is not None]
    assert all(torch.count_nonzero(b) == 0 for b in biases)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: MLP(2, activation="relu"),
            "activation must be one of tanh, softplus, silu, gelu, sigmoid (smooth, so that the network can be "
            "differentiated twice), got 'relu'",
        ),
        (lambda: HNN(0), "dof must be an integer >= 1, got 0"),
        (lambda: LNN(1.5), "dof must be an integer >= 1, got 1.5"),
        (lambda: HNN(1, hidden=200), "hidden must be a sequence of layer widths such as (200, 200), got 200"),
        (lambda: HNN(1, hidden=(200, 0)), "every width in hidden must be an integer >= 1, got 0"),
        (lambda: HNN(1, backend="jit"), "backend must be one of 'autograd', 'func', got 'jit'"),
        (
            lambda: NeuralODE(1, coordinates="polar"),
            "coordinates must be one of 'canonical', 'lagrangian', got 'polar'",
        ),
    ],
)
def test_invalid_arguments_are_named_with_value_and_allowed(build, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        build()
    assert str(info.value) == message


def test_wrong_state_shape_and_bad_net_output_are_clear_errors() -> None:
    model = HNN(2, hidden=SMALL)
    assert error_message(model, 0.0, torch.zeros(3, 2)) == (
        "x must be a floating tensor of shape (..., 2 * dof) = (..., 4) for HNN(dof=2), got shape (3, 2) and "
        "dtype torch.float32"
    )
    wide = HNN(1, net=nn.Linear(2, 3))
    assert error_message(wide, 0.0, torch.zeros(5, 2)) == (
        "the Hamiltonian network must map inputs of shape (..., 2) to a scalar per sample, shape (...,) or (..., 1); "
        "for input shape (5, 2) it returned shape (5, 3)"
    )


def test_registry_builds_every_model_and_names_unknown_ones() -> None:
    assert MODELS.names() == [
        "chnn", "clnn", "dissipative_hnn", "hnn", "lnn", "node", "phnn", "second_order_node", "separable_hnn",
        "structured_lnn",
    ]
    classes = {CHNN, CLNN, HNN, SeparableHNN, DissipativeHNN, LNN, NeuralODE, PortHamiltonianNN, SecondOrderNeuralODE,
               StructuredLNN}
    assert {type(get_model(n, dof=1, hidden=SMALL)) for n in MODELS.names()} == classes
    with pytest.raises(UnknownNameError, match="unknown model 'hn'. Did you mean 'hnn'?"):
        get_model("hn", dof=1)
    with pytest.raises(InvalidArgumentError) as info:
        get_model("hnn", dof=1, width=3)
    assert str(info.value) == (
        "model 'hnn' has no argument 'width'; its arguments are: dof, hidden, activation, orthogonal_init, net, backend"
    )
    assert isinstance(get_model("hnnlab.models:LNN", dof=2, hidden=SMALL), LNN)


@pytest.mark.parametrize("name", MODELS.names())
def test_describe_is_json_and_rebuilds_the_same_architecture(name: str) -> None:
    model = small_model(name)
    description = json.loads(json.dumps(model.describe()))
    assert description["name"] == name and description["dof"] == 2
    rebuilt = get_model(description["class_path"], **description["init_args"])
    assert type(rebuilt) is type(model)
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert [tuple(p.shape) for p in rebuilt.parameters()] == shapes
    assert description["n_parameters"] == sum(p.numel() for p in model.parameters())


def test_describe_names_an_injected_net_by_class_path() -> None:
    description = HNN(1, net=Scalar(get_system("pendulum").energy)).describe()
    assert description["init_args"]["net"] == f"{__name__}:Scalar"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", MODELS.names())
def test_models_on_gpu_match_cpu(name: str) -> None:
    model = small_model(name)
    x = random_states(model)
    expected = model(0.0, x).detach()
    y = model.cuda()(0.0, x.cuda())
    assert y.device.type == "cuda"
    torch.testing.assert_close(y.cpu().detach(), expected, rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        states = rollout(model, "rk4", x.cuda(), 0.01, 4)
    assert states.device.type == "cuda"


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.get(n).energy is not AbstractModel.energy])
def test_energy_keeps_its_graph_in_training_and_drops_it_under_no_grad(name: str) -> None:
    model = small_model(name)
    x = random_states(model)
    energy = model.energy(x)
    assert energy.shape == (x.shape[0],)
    energy.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with torch.no_grad():
        assert not model.energy(x).requires_grad


@pytest.mark.parametrize("name", sorted(MODELS.names()))
def test_a_state_in_another_dtype_than_the_parameters_gets_hnnlabs_message(name: str) -> None:
    """A float32 model given float64 states (and the reverse) is refused before torch's matmul error, naming
    both dtypes and the fix; after the cast the same states go through."""
    model = small_model(name).float()
    x = random_states(model)
    with pytest.raises(InvalidArgumentError) as info:
        model(0.0, x)
    cls = type(model).__name__
    assert str(info.value) == (
        f"{cls}(dof=2) has torch.float32 parameters but x is torch.float64: convert the model with "
        "model.to(torch.float64) (model.double() for float64, model.float() for float32), or the states with "
        "x.to(torch.float32)"
    )
    assert model.double()(0.0, x).dtype == torch.float64
    with pytest.raises(InvalidArgumentError, match=r"has torch\.float64 parameters but x is torch\.float32: "):
        model(0.0, x.float())
    if model.has_energy:
        with pytest.raises(InvalidArgumentError, match=r"has torch\.float64 parameters but x is torch\.float32"):
            model.energy(x.float())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_states_are_refused_with_the_allowed_dtypes(dtype: torch.dtype) -> None:
    model = small_model("hnn").to(dtype)
    with pytest.raises(InvalidArgumentError) as info:
        model(0.0, torch.zeros(3, 4, dtype=dtype))
    assert str(info.value) == f"x must be float32 or float64 for HNN(dof=2), got {dtype}"
    with pytest.raises(InvalidArgumentError, match=r"^x must be float32 or float64 for NeuralODE\(dof=1\), got "):
        NeuralODE(1).to(dtype)(0.0, torch.zeros(2, dtype=dtype))


def test_constructor_arguments_are_recorded_by_name_with_defaults_however_the_model_is_called() -> None:
    """Subclasses call ``super().__init__(dof)``; the arguments are bound to their signature (positional ones
    too), and a subclass that passes its own hyperparameters records those."""
    expected = {"dof": 1, "hidden": (8,), "activation": "tanh", "orthogonal_init": True, "net": None,
                "backend": "autograd"}
    assert HNN(1, (8,)).constructor_arguments() == expected
    assert HNN(dof=1, hidden=(8,)).constructor_arguments() == expected
    assert HNN(**expected).describe()["init_args"] == {**expected, "hidden": [8]}

    class Explicit(AbstractModel):
        def __init__(self, dof: int, scale: float = 2.0, **extra) -> None:
            super().__init__(dof, scale=scale * 10)
            self.weight = nn.Parameter(torch.ones(()))

        def vector_field(self, t, x):
            return self.weight * x

    class Recorded(Explicit):
        def __init__(self, dof: int, scale: float = 2.0, **extra) -> None:
            AbstractModel.__init__(self, dof)
            self.weight = nn.Parameter(torch.ones(()))

    assert Explicit(3).constructor_arguments() == {"dof": 3, "scale": 20.0}
    assert Recorded(3, 1.5, note="x").constructor_arguments() == {"dof": 3, "scale": 1.5, "note": "x"}
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'dof'"):
        HNN()


def test_a_subclass_with_its_own_signature_builds_its_parents_network_and_rebuilds():
    from hnnlab.models import HNN

    class SmallHNN(HNN):
        def __init__(self, dof: int = 1) -> None:
            super().__init__(dof, hidden=(16,), orthogonal_init=False)

    model = SmallHNN()
    assert [m.out_features for m in model.net.modules() if isinstance(m, torch.nn.Linear)] == [16, 1]
    assert model.constructor_arguments() == {"dof": 1}  # its own signature, which rebuilds it
    again = type(model)(**model.constructor_arguments())
    again.load_state_dict(model.state_dict())
    x = torch.randn(3, 2)
    assert torch.equal(again(0.0, x), model(0.0, x))
