"""Integrators: convergence orders, symplecticity, long-time conservation, reversibility, errors, gradients.

Every test is parametrized over the registry (filtered by the capabilities the integrators declare), so a
new integrator is tested as soon as it is registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import Tensor

from hnnlab.errors import ConvergenceError, IncompatibleIntegratorError, InvalidArgumentError, UnknownNameError
from hnnlab.integrators import INTEGRATORS, get_integrator
from hnnlab.rollout import rollout
from hnnlab.systems import AbstractHamiltonianSystem, AbstractSeparableHamiltonianSystem, MassSpring, Pendulum
from hnnlab.systems.base import uniform

ALL = INTEGRATORS.names()
CLASSES = {name: INTEGRATORS.get(name) for name in ALL}
FIXED = [n for n in ALL if not CLASSES[n].adaptive]
ADAPTIVE = [n for n in ALL if CLASSES[n].adaptive]
SYMPLECTIC = [n for n in ALL if CLASSES[n].symplectic]
SYMPLECTIC_ANY_H = [n for n in SYMPLECTIC if not CLASSES[n].requires_separable]
SEPARABLE_ONLY = [n for n in ALL if CLASSES[n].requires_separable]
NON_SYMPLECTIC_FIXED = [n for n in FIXED if not CLASSES[n].symplectic]
# The convergence-order tests below use one grid of step counts, which reaches round-off for orders above 4;
# the methods of orders 6 and 8 have their own grid in tests/test_integrators_high_order.py.
LOW_ORDER_FIXED = [n for n in FIXED if CLASSES[n].order <= 4]
SYMMETRIC = [n for n in ALL if CLASSES[n].symmetric]
EXPLICIT_SYMPLECTIC = [n for n in SYMPLECTIC if CLASSES[n].explicit]
# Methods that conserve angular momentum exactly: explicit splittings (each kick is along q, each drift
# along p, for a central force) and implicit midpoint (it conserves every quadratic invariant).
# (Orders 6 and 8 are so accurate at this test's step that the energy check below cannot tell; they have
# their own angular-momentum test at a larger step in tests/test_integrators_high_order.py.)
ANGULAR_MOMENTUM_EXACT = [n for n in EXPLICIT_SYMPLECTIC if CLASSES[n].order <= 4] + ["implicit_midpoint",
                                                                                     "gauss_legendre4"]


# ------------------------------------------------------------------------------------------------------
# Test systems.


@dataclass
class ProductHamiltonian(AbstractHamiltonianSystem):
    """A non-separable Hamiltonian: ``H = (q^2 + 1)(p^2 + 1) / 2``."""

    name: ClassVar[str] = ""
    dof: ClassVar[int] = 1
    is_separable: ClassVar[bool] = False

    def hamiltonian(self, x: Tensor) -> Tensor:
        q, p = x[..., 0], x[..., 1]
        return 0.5 * (q**2 + 1) * (p**2 + 1)

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        return uniform((n, 2), -1.0, 1.0, generator, dtype=dtype, device=device)


@dataclass
class Kepler(AbstractSeparableHamiltonianSystem):
    """Kepler problem in the plane: ``H = |p|^2 / 2 - 1 / |q|``; angular momentum ``q_x p_y - q_y p_x``."""

    name: ClassVar[str] = ""
    dof: ClassVar[int] = 2

    def kinetic(self, p: Tensor) -> Tensor:
        return 0.5 * (p**2).sum(-1)

    def potential(self, q: Tensor) -> Tensor:
        return -1.0 / q.norm(dim=-1)

    def dq_dt(self, t, x: Tensor) -> Tensor:
        return x[..., 2:]

    def dp_dt(self, t, x: Tensor) -> Tensor:
        q = x[..., :2]
        return -q / q.norm(dim=-1, keepdim=True) ** 3

    def angular_momentum(self, x: Tensor) -> Tensor:
        return x[..., 0] * x[..., 3] - x[..., 1] * x[..., 2]

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        return uniform((n, 4), -1.0, 1.0, generator, dtype=dtype, device=device)


def omega(dof: int) -> Tensor:
    eye = torch.eye(dof, dtype=torch.float64)
    zero = torch.zeros(dof, dof, dtype=torch.float64)
    return torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)


def step_jacobian(name: str, system, x: Tensor, dt: float) -> Tensor:
    integrator = get_integrator(name)
    return torch.autograd.functional.jacobian(lambda y: integrator.step(system, 0.0, y, dt), x)


def symplecticity_defect(name: str, system, x: Tensor, dt: float) -> float:
    """``max |J^T Omega J - Omega|`` for the one-step map at ``x``."""
    J = step_jacobian(name, system, x, dt)
    W = omega(system.dof)
    return float((J.T @ W @ J - W).abs().max())


def fitted_order(dts: list[float], errors: list[float]) -> float:
    return float(np.polyfit(np.log(dts), np.log(errors), 1)[0])


def final_state(name: str, system, x0: Tensor, T: float, n: int) -> Tensor:
    return rollout(system, name, x0, T / n, n, save_every=n)[:, -1]


# ------------------------------------------------------------------------------------------------------
# Convergence order.

X0_SPRING = torch.tensor([[0.7, -0.3], [0.2, 0.5]], dtype=torch.float64)
X0_PENDULUM = torch.tensor([[1.0, 0.5], [-0.4, 1.8]], dtype=torch.float64)
STEP_COUNTS = [16, 32, 64, 128]


@pytest.mark.parametrize("name", LOW_ORDER_FIXED)
def test_order_against_exact_harmonic_oscillator(name: str) -> None:
    system, T = MassSpring(), 1.0
    exact = system.exact_solution(X0_SPRING, torch.tensor([T], dtype=torch.float64))[:, -1]
    errors = [float((final_state(name, system, X0_SPRING, T, n) - exact).abs().max()) for n in STEP_COUNTS]
    assert fitted_order([T / n for n in STEP_COUNTS], errors) == pytest.approx(CLASSES[name].order, abs=0.3)


@pytest.fixture(scope="module")
def pendulum_reference() -> Tensor:
    dopri8 = get_integrator("dopri8", rtol=1e-13, atol=1e-13)
    return rollout(Pendulum(), dopri8, X0_PENDULUM, 1.0, 1)[:, -1]  # one adaptive step


@pytest.mark.parametrize("name", LOW_ORDER_FIXED)
def test_order_against_dopri8_reference_on_pendulum(name: str, pendulum_reference: Tensor) -> None:
    errors = [
        float((final_state(name, Pendulum(), X0_PENDULUM, 1.0, n) - pendulum_reference).abs().max())
        for n in STEP_COUNTS
    ]
    assert min(errors) > 1e-11  # the reference (error ~1e-13) is far more accurate than what is measured
    assert fitted_order([1.0 / n for n in STEP_COUNTS], errors) == pytest.approx(CLASSES[name].order, abs=0.3)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_adaptive_error_scales_with_rtol(name: str) -> None:
    # Adaptive methods have no step size to refine: their global error should follow the requested
    # tolerance instead (roughly proportionally), and stay within a small multiple of it.
    system, T = MassSpring(), 3.0
    exact = system.exact_solution(X0_SPRING, torch.tensor([T], dtype=torch.float64))[:, -1]
    rtols = [1e-5, 1e-7, 1e-9]
    errors = []
    for rtol in rtols:
        out = rollout(system, get_integrator(name, rtol=rtol, atol=rtol), X0_SPRING, T, 1)[:, -1]
        errors.append(float((out - exact).abs().max()))
    assert all(err < 30 * rtol for err, rtol in zip(errors, rtols, strict=True))
    assert 0.7 < fitted_order(rtols, errors) < 1.5


# ------------------------------------------------------------------------------------------------------
# Symplecticity of the one-step map.


@pytest.mark.parametrize("name", SYMPLECTIC)
@pytest.mark.parametrize(
    "system, x",
    [(Pendulum(), [1.0, 0.5]), (Kepler(), [1.0, 0.2, -0.1, 0.9])],
    ids=["pendulum", "kepler"],
)
def test_symplectic_on_separable_hamiltonian(name: str, system, x: list[float]) -> None:
    assert symplecticity_defect(name, system, torch.tensor(x, dtype=torch.float64), dt=0.1) < 1e-10


@pytest.mark.parametrize("name", SYMPLECTIC_ANY_H)
def test_symplectic_on_nonseparable_hamiltonian(name: str) -> None:
    x = torch.tensor([0.8, -0.6], dtype=torch.float64)
    assert symplecticity_defect(name, ProductHamiltonian(), x, dt=0.1) < 1e-10


@pytest.mark.parametrize("name", SEPARABLE_ONLY)
def test_separable_only_methods_are_not_symplectic_on_nonseparable_hamiltonian(name: str) -> None:
    # The reason for the refusal below: forced onto a non-separable H, the explicit splittings lose
    # symplecticity (and the refusal is then not a formality).
    x = torch.tensor([0.8, -0.6], dtype=torch.float64)
    integrator = get_integrator(name, allow_nonseparable=True)
    with pytest.warns(UserWarning):
        J = torch.autograd.functional.jacobian(lambda y: integrator.step(ProductHamiltonian(), 0.0, y, 0.1), x)
    assert float((J.T @ omega(1) @ J - omega(1)).abs().max()) > 1e-4


@pytest.mark.parametrize("name", NON_SYMPLECTIC_FIXED)
def test_non_symplectic_methods_violate_symplecticity(name: str) -> None:
    x = torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert symplecticity_defect(name, Pendulum(), x, dt=0.5) > 1e-4


# ------------------------------------------------------------------------------------------------------
# Long-time conservation and reversibility.


@pytest.fixture(scope="module")
def long_pendulum_energy_errors() -> dict[str, tuple[float, float]]:
    """Max relative energy error in the first and last tenth of 1e5 steps at dt = 0.1 (~3900 periods)."""
    system = Pendulum()
    x0 = torch.tensor([[1.0, 0.5], [-0.5, 1.2], [2.0, 0.0]], dtype=torch.float64)
    e0 = system.energy(x0)
    out = {}
    for name in ["leapfrog", "yoshida4", "rk4"]:
        with torch.inference_mode():  # the pendulum's field is closed-form: no autograd needed, less overhead
            states = rollout(system, name, x0, 0.1, 100_000, save_every=10)  # (3, 10001, 2)
        rel = ((system.energy(states) - e0[:, None]) / e0[:, None]).abs().amax(0)  # (10001,)
        tenth = rel.shape[0] // 10
        out[name] = (float(rel[1 : tenth + 1].max()), float(rel[-tenth:].max()))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["leapfrog", "yoshida4"])
def test_symplectic_energy_error_stays_bounded(name: str, long_pendulum_energy_errors) -> None:
    first, last = long_pendulum_energy_errors[name]
    assert last < 1.5 * first
    assert last < (0.1 ** CLASSES[name].order) * 10  # bounded at O(dt^order)


@pytest.mark.slow
def test_rk4_energy_drifts_secularly(long_pendulum_energy_errors) -> None:
    first, last = long_pendulum_energy_errors["rk4"]
    assert last > 5 * first
    assert last > 1e-2


@pytest.mark.parametrize("name", ANGULAR_MOMENTUM_EXACT)
def test_kepler_angular_momentum_conserved_to_round_off(name: str) -> None:
    system = Kepler()
    x0 = torch.tensor([[1.0, 0.0, 0.0, 1.1], [0.8, 0.3, -0.4, 0.9]], dtype=torch.float64)
    with torch.no_grad():
        states = rollout(system, name, x0, 0.02, 1000, save_every=50)  # about three orbits
    L = system.angular_momentum(states)
    assert float(((L - L[:, :1]) / L[:, :1]).abs().max()) < 1e-12
    # and it is a real test: energy is not conserved to round-off by these methods
    E = system.energy(states)
    assert float(((E - E[:, :1]) / E[:, :1]).abs().max()) > 1e-11


@pytest.mark.parametrize("name", SYMMETRIC)
def test_time_reversibility(name: str) -> None:
    system, n = Pendulum(), 200
    x0 = torch.tensor([[1.0, 0.5], [-2.0, 1.0]], dtype=torch.float64)
    flip = torch.tensor([1.0, -1.0], dtype=torch.float64)
    forward = rollout(system, name, x0, 0.05, n, save_every=n)[:, -1]
    back = rollout(system, name, forward * flip, 0.05, n, save_every=n)[:, -1] * flip
    assert float((forward - x0).abs().max()) > 0.1
    assert float((back - x0).abs().max()) < 1e-10


# ------------------------------------------------------------------------------------------------------
# Capabilities, options and error messages.


@pytest.mark.parametrize("name", SEPARABLE_ONLY)
def test_separable_only_method_refuses_nonseparable_system(name: str) -> None:
    x = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    expected = (
        f"integrator {name!r} is symplectic only for a separable H = T(p) + V(q), but ProductHamiltonian "
        f"declares is_separable=False. Use one of the non-separable methods: {', '.join(SYMPLECTIC_ANY_H)}"
    )
    with pytest.raises(IncompatibleIntegratorError) as info:
        get_integrator(name).step(ProductHamiltonian(), 0.0, x, 0.1)
    assert expected in str(info.value)
    with pytest.raises(IncompatibleIntegratorError):  # refused before the first step of a rollout
        rollout(ProductHamiltonian(), name, x, 0.1, 10)
    with pytest.warns(UserWarning, match=f"integrator {name!r} is symplectic only for a separable H"):
        out = rollout(ProductHamiltonian(), get_integrator(name, allow_nonseparable=True), x, 0.1, 3)
    assert out.shape == (1, 4, 2)


def test_nonseparable_methods_are_implicit_midpoint_and_gauss_legendre() -> None:
    assert SYMPLECTIC_ANY_H == ["gauss_legendre4", "gauss_legendre6", "implicit_midpoint"]


@pytest.mark.parametrize("name", SYMPLECTIC_ANY_H + ["rk4", "euler"])
def test_general_methods_accept_nonseparable_system(name: str) -> None:
    x = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    exact = ProductHamiltonian().vector_field(0.0, x)
    # one tiny step moves along the vector field
    out = get_integrator(name).step(ProductHamiltonian(), 0.0, x, 1e-6)
    torch.testing.assert_close((out - x) / 1e-6, exact, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dt", [0.0, -0.1, float("nan"), float("inf"), "0.1", True])
def test_invalid_dt(dt) -> None:
    x = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    with pytest.raises(InvalidArgumentError, match=r"dt must be a finite number > 0, got"):
        get_integrator("leapfrog").step(Pendulum(), 0.0, x, dt)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_integrator("leapfrogg")
    message = str(info.value)
    assert "unknown integrator 'leapfrogg'. Did you mean 'leapfrog'?" in message
    assert f"Valid names: {', '.join(ALL)}" in message


@pytest.mark.parametrize(
    "name, options, fragment",
    [
        ("leapfrog", {"tol": 1e-8}, "integrator 'leapfrog' has no option 'tol'; its options are: allow_nonseparable"),
        ("implicit_midpoint", {"rtol": 1e-8}, "its options are: tol, max_iter, allow_nonseparable"),
        ("dopri5", {"tol": 1e-8}, "its options are: rtol, atol, max_steps, allow_nonseparable"),
        ("implicit_midpoint", {"tol": 0.0}, "implicit_midpoint: tol must be a finite number > 0, got 0.0"),
        ("gauss_legendre4", {"max_iter": 0}, "gauss_legendre4: max_iter must be an integer >= 1, got 0"),
        ("dopri8", {"atol": -1.0}, "dopri8: atol must be a finite number > 0, got -1.0"),
    ],
)
def test_invalid_options(name: str, options: dict, fragment: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        get_integrator(name, **options)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "x", [torch.zeros(3), torch.zeros(2, 3), torch.tensor(1.0), torch.zeros(2, 2, dtype=torch.int64)]
)
def test_wrongly_shaped_state(x) -> None:
    with pytest.raises(InvalidArgumentError, match=r"x must be a floating tensor of shape \(\.\.\., 2 \* dof\)"):
        get_integrator("rk4").step(Pendulum(), 0.0, x, 0.1)


@pytest.mark.parametrize("name", ["implicit_midpoint", "gauss_legendre4"])
def test_nonconvergence_is_reported(name: str) -> None:
    stiff = MassSpring(k=1e4, m=1.0)  # dt * omega = 10: the fixed-point iteration cannot contract
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ConvergenceError, match=rf"{name}: the fixed-point iteration did not converge within "
                       r"max_iter=1 iterations in the step from t = 0\.3 \(dt = 0\.1\): the last update was"):
        get_integrator(name, max_iter=1).step(stiff, 0.3, x, 0.1)
    with pytest.raises(ConvergenceError, match=r"max_iter=50"):  # a higher cap does not help: it diverges
        get_integrator(name, max_iter=50).step(stiff, 0.3, x, 0.1)


@pytest.mark.parametrize("name", ["implicit_midpoint", "gauss_legendre4"])
def test_implicit_tolerance_is_met_and_reported(name: str) -> None:
    loose, tight = get_integrator(name, tol=1e-4), get_integrator(name, tol=1e-13)
    x = X0_PENDULUM
    reference = tight.step(Pendulum(), 0.0, x, 0.1)
    assert float((loose.step(Pendulum(), 0.0, x, 0.1) - reference).abs().max()) < 1e-4 * (1 + float(x.abs().max()))
    described = loose.describe()
    assert (described["tol"], described["max_iter"]) == (1e-4, 100)
    # float32 cannot resolve 1e-13: a floor of 16 machine epsilons is used instead
    assert tight.describe()["effective_tol"] == {"float32": 16 * torch.finfo(torch.float32).eps, "float64": 1e-13}


@pytest.mark.parametrize("name", ADAPTIVE)
def test_adaptive_tolerance_is_per_sample(name: str) -> None:
    # One trajectory in a batch of many identical easy ones: with an RMS norm over the batch its error
    # would be diluted; with the max-abs norm it matches the accuracy it gets alone.
    system, T = MassSpring(), 3.0
    hard = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    batch = torch.cat([hard, torch.full((1023, 2), 1e-6, dtype=torch.float64)])
    integrator = get_integrator(name, rtol=1e-6, atol=1e-6)
    exact = system.exact_solution(hard, torch.tensor([T], dtype=torch.float64))[:, -1]
    alone = integrator.step(system, 0.0, hard, T)
    in_batch = integrator.step(system, 0.0, batch, T)[:1]
    assert float((in_batch - exact).abs().max()) <= 2 * float((alone - exact).abs().max())
    assert float((in_batch - exact).abs().max()) < 3e-5


def test_describe_reports_capabilities() -> None:
    for name in ALL:
        described = get_integrator(name).describe()
        cls = CLASSES[name]
        assert described["name"] == name
        assert (described["order"], described["symplectic"], described["requires_separable"]) == (
            cls.order, cls.symplectic, cls.requires_separable,
        )
    assert get_integrator("dopri8", rtol=1e-9).options() == {"rtol": 1e-9, "atol": 1e-10}


# ------------------------------------------------------------------------------------------------------
# Gradients, dtypes.


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_through_steps(name: str) -> None:
    integrator = get_integrator(name, **({"rtol": 1e-6, "atol": 1e-6} if CLASSES[name].adaptive else {}))

    def three_steps(x: Tensor) -> Tensor:
        for i in range(3):
            x = integrator.step(Pendulum(), 0.1 * i, x, 0.1)
        return x

    x = torch.tensor([[1.0, 0.5], [-0.3, 1.5]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(three_steps, (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_float32_matches_float64(name: str) -> None:
    system = Pendulum() if CLASSES[name].requires_separable else ProductHamiltonian()
    x64 = torch.tensor([[1.0, 0.5], [-0.3, 1.5]], dtype=torch.float64)
    out32 = rollout(system, name, x64.float(), 0.05, 20)
    out64 = rollout(system, name, x64, 0.05, 20)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(name: str, dtype: torch.dtype) -> None:
    system = Pendulum()
    x = torch.tensor([[1.0, 0.5], [-0.3, 1.5]], dtype=dtype)
    cpu = rollout(system, name, x, 0.05, 20)
    cuda = rollout(system, name, x.cuda(), 0.05, 20)
    assert cuda.device.type == "cuda" and cuda.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=tol, atol=tol)
