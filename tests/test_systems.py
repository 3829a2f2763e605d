"""Analytic systems: equations of motion against independent derivations, invariants, sampling, registry (the
generic autograd equations of hnnlab.dynamics against the closed forms: tests/test_dynamics.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor

from hnnlab.dynamics import euler_lagrange_accelerations
from hnnlab.errors import InvalidArgumentError, UnknownNameError
from hnnlab.systems import (
    SYSTEMS,
    AbstractHamiltonianSystem,
    ChainPendulum,
    ChainPendulumHamiltonian,
    CoupledOscillators,
    DampedOscillator,
    DoublePendulum,
    DoublePendulumHamiltonian,
    HenonHeiles,
    MassSpring,
    Pendulum,
    ThreeBody,
    TwoBody,
    get_system,
)

NAMES = SYSTEMS.names()
CONSERVATIVE = [n for n in NAMES if SYSTEMS.get(n).conservative]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sample(system, n: int = 32, seed: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
    return system.sample_initial_states(n, gen(seed), dtype=dtype)


def time_derivative(fn, x: Tensor, f: Tensor) -> Tensor:
    """``d fn(x(t)) / dt = grad fn(x) . f`` per sample (autograd, float64)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x).sum(), x)
    return (grad * f).sum(-1)


# ------------------------------------------------------------------------------------------------
# Equations of motion written out by hand, independently of the package.


def chain_cartesian_lagrangian(masses, lengths, g):
    """``L = T - V`` of a chain of point masses from their Cartesian positions and velocities."""
    m = torch.tensor(masses, dtype=torch.float64)
    l = torch.tensor(lengths, dtype=torch.float64)
    n = len(masses)

    def lagrangian(x: Tensor) -> Tensor:
        theta, omega = x[..., :n], x[..., n:]
        y = torch.cumsum(-l * torch.cos(theta), dim=-1)
        vx = torch.cumsum(l * torch.cos(theta) * omega, dim=-1)
        vy = torch.cumsum(l * torch.sin(theta) * omega, dim=-1)
        return (0.5 * m * (vx**2 + vy**2)).sum(-1) - (m * g * y).sum(-1)

    return lagrangian


def pairwise_gravity_field(system, x: Tensor) -> Tensor:
    """``dq_i/dt = p_i / m_i``, ``dp_i/dt = sum_{j != i} G m_i m_j (r_j - r_i) / |r_j - r_i|^3``, by loops."""
    nb = len(system.masses)
    q, p = x[..., : 2 * nb], x[..., 2 * nb :]
    dq, dp = torch.zeros_like(q), torch.zeros_like(p)
    for i in range(nb):
        dq[..., 2 * i : 2 * i + 2] = p[..., 2 * i : 2 * i + 2] / system.masses[i]
        for j in range(nb):
            if i != j:
                d = q[..., 2 * j : 2 * j + 2] - q[..., 2 * i : 2 * i + 2]
                r3 = (d**2).sum(-1, keepdim=True) ** 1.5
                dp[..., 2 * i : 2 * i + 2] += system.G * system.masses[i] * system.masses[j] * d / r3
    return torch.cat([dq, dp], dim=-1)


def coupled_oscillators_field(system, x: Tensor) -> Tensor:
    n, k, c, m = system.n, system.k, system.coupling, system.m
    q, p = x[..., :n], x[..., n:]
    dp = torch.zeros_like(p)
    for i in range(n):
        left = q[..., i - 1] if i > 0 else 0.0
        right = q[..., i + 1] if i < n - 1 else 0.0
        dp[..., i] = -k * q[..., i] - c * (q[..., i] - left) - c * (q[..., i] - right)
    return torch.cat([p / m, dp], dim=-1)


def lagrangian_field_by_autograd(L, x: Tensor) -> Tensor:
    return torch.cat([x[..., x.shape[-1] // 2 :], euler_lagrange_accelerations(L, x)], dim=-1)


def canonical_field_from_lagrangian(L, x_lagrangian: Tensor) -> tuple[Tensor, Tensor]:
    """``(x_H, dx_H/dt)`` with ``x_H = (q, dL/dq_dot)`` and Hamilton's equations from Euler-Lagrange:
    ``q' = q_dot``, ``p' = d/dt dL/dq_dot = dL/dq``."""
    dof = x_lagrangian.shape[-1] // 2
    x = x_lagrangian.detach().requires_grad_(True)
    (dL,) = torch.autograd.grad(L(x).sum(), x)
    x_h = torch.cat([x_lagrangian[..., :dof], dL[..., dof:]], dim=-1)
    return x_h, torch.cat([x_lagrangian[..., dof:], dL[..., :dof]], dim=-1)


def kkt_constrained_field(masses, links, V, x: Tensor, *, velocities: bool) -> Tensor:
    """Point masses in the plane with rigid links, by Lagrange multipliers solved as one KKT system per state:
    ``[[M, G^T], [G, 0]] (a, lambda) = (-grad V, -dG/dt v)``, ``G`` the rows ``2 (x_i - x_j)`` of each link
    ``(i, j)`` (``j = None``: a pivot point ``a``, the row ``2 (x_i - a)``), ``dG/dt v = 2 |v_i - v_j|^2``.
    States ``(x, p)`` (``velocities=False``) or ``(x, v)``."""
    nb = len(masses)
    m = torch.tensor(masses, dtype=torch.float64).repeat_interleave(2)
    pos, second = x[..., : 2 * nb], x[..., 2 * nb :]
    vel = second if velocities else second / m
    pos_req = pos.detach().requires_grad_(True)
    (dV,) = torch.autograd.grad(V(pos_req).sum(), pos_req)
    out = []
    for b in range(x.shape[0]):
        P, W = pos[b].reshape(nb, 2), vel[b].reshape(nb, 2)
        G = torch.zeros(len(links), 2 * nb, dtype=torch.float64)
        rhs_c = torch.zeros(len(links), dtype=torch.float64)
        for c, (i, j, point) in enumerate(links):
            r = P[i] - (P[j] if j is not None else torch.tensor(point, dtype=torch.float64))
            w = W[i] - (W[j] if j is not None else 0.0)
            G[c, 2 * i : 2 * i + 2] += 2 * r
            if j is not None:
                G[c, 2 * j : 2 * j + 2] -= 2 * r
            rhs_c[c] = -2 * (w**2).sum()
        K = torch.zeros(2 * nb + len(links), 2 * nb + len(links), dtype=torch.float64)
        K[: 2 * nb, : 2 * nb] = torch.diag(m)
        K[: 2 * nb, 2 * nb :], K[2 * nb :, : 2 * nb] = G.T, G
        a = torch.linalg.solve(K, torch.cat([-dV[b], rhs_c]))[: 2 * nb]
        out.append(torch.cat([vel[b], a if velocities else m * a]))
    return torch.stack(out)


def hand_field(name: str, s, x: Tensor) -> Tensor:
    """The vector field of the default-parameter system ``s`` derived in the test."""
    q, p = x[..., : s.dof], x[..., s.dof :]
    if name == "mass_spring":
        return torch.cat([p / s.m, -s.k * q], dim=-1)
    if name == "pendulum":
        return torch.cat([p / (s.m * s.l**2), -s.m * s.g * s.l * torch.sin(q)], dim=-1)
    if name == "damped_oscillator":
        return torch.cat([p / s.m, -s.k * q - s.gamma * p / s.m], dim=-1)
    if name == "henon_heiles":
        X, Y = q[..., 0], q[..., 1]
        return torch.cat([p, torch.stack([-X - 2 * s.lam * X * Y, -Y - s.lam * (X**2 - Y**2)], -1)], dim=-1)
    if name in ("two_body", "three_body"):
        return pairwise_gravity_field(s, x)
    if name == "coupled_oscillators":
        return coupled_oscillators_field(s, x)
    if name in ("double_pendulum", "chain_pendulum"):
        masses = (s.m1, s.m2) if name == "double_pendulum" else s.masses
        lengths = (s.l1, s.l2) if name == "double_pendulum" else s.lengths
        return lagrangian_field_by_autograd(chain_cartesian_lagrangian(masses, lengths, s.g), x)
    if name == "duffing":  # q'' + delta q' + alpha q + beta q^3 = gamma cos(omega t), at t = 0
        return torch.cat([p, -s.alpha * q - s.beta * q**3 - s.delta * p + s.gamma], dim=-1)
    if name == "forced_pendulum":  # theta'' + theta' / Q + sin(theta) = A cos(omega t), at t = 0
        return torch.cat([p, -torch.sin(q) - p / s.quality + s.amplitude], dim=-1)
    if name == "spring_damper_chain":  # springs to the previous mass (the wall for the first); u(0) = 0
        left = torch.cat([torch.zeros_like(q[..., :1]), q[..., :-1]], dim=-1)
        right = torch.cat([q[..., 1:], q[..., -1:]], dim=-1)  # the last mass has no spring on its right
        return torch.cat([p / s.m, -s.k * (q - left) + s.k * (right - q) - s.c * p / s.m], dim=-1)
    if name.startswith("chain_pendulum_cartesian"):  # a chain hanging from the origin; V = g sum m_k y_k
        links = [(0, None, (0.0, 0.0))] + [(k, k - 1, None) for k in range(1, s.n)]
        m = torch.tensor(s.masses, dtype=torch.float64)
        return kkt_constrained_field(s.masses, links, lambda z: s.g * (m * z[..., 1::2]).sum(-1), x,
                                     velocities=name.endswith("_lagrangian"))
    if name == "coupled_pendulums_cartesian":  # bobs on rods from (spacing k, 0), springs between neighbours
        links = [(k, None, (s.spacing * k, 0.0)) for k in range(s.n)]

        def V(z: Tensor) -> Tensor:
            bobs = z.reshape(*z.shape[:-1], s.n, 2)
            stretch = (bobs[..., 1:, :] - bobs[..., :-1, :]).norm(dim=-1) - s.spacing
            return s.g * s.m * z[..., 1::2].sum(-1) + 0.5 * s.k_spring * (stretch**2).sum(-1)

        return kkt_constrained_field((s.m,) * s.n, links, V, x, velocities=False)
    raise KeyError(name)


# ------------------------------------------------------------------------------------------------
# Vector fields.


@pytest.mark.parametrize("name", [n for n in NAMES if not n.endswith("_hamiltonian")])
def test_vector_field_matches_hand_derivation(name):
    s = get_system(name)
    x = sample(s)
    torch.testing.assert_close(s.vector_field(0.0, x), hand_field(name, s, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_split_halves_equal_full_field(name):
    s = get_system(name)
    x = sample(s)
    f = s.vector_field(0.0, x)
    torch.testing.assert_close(s.dq_dt(0.0, x), f[..., : s.dof], rtol=0, atol=0)
    torch.testing.assert_close(s.dp_dt(0.0, x), f[..., s.dof :], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_declared_separability_is_true(name):
    """``is_separable`` means dq/dt depends on p only and dp/dt on q only; a non-separable H breaks it."""
    s = get_system(name)
    x = sample(s, n=4)
    jac = torch.func.vmap(torch.func.jacrev(lambda y: s.vector_field(0.0, y)))(x)  # (n, 2 dof, 2 dof)
    d = s.dof
    cross = jac[:, :d, :d].abs().amax() + jac[:, d:, d:].abs().amax()
    if s.is_separable:
        assert float(cross) == 0.0
    elif isinstance(s, AbstractHamiltonianSystem):
        assert float(cross) > 1e-3


@pytest.mark.parametrize(
    ("hamiltonian", "lagrangian_masses"),
    [
        (DoublePendulumHamiltonian(m1=1.3, m2=0.7, l1=0.9, l2=1.2, g=9.8), None),
        (ChainPendulumHamiltonian.with_random_parameters(4, gen(3)), "chain"),
    ],
    ids=["double_pendulum", "chain_pendulum_4"],
)
def test_hamiltonian_forms_follow_the_lagrangian_through_the_legendre_transform(hamiltonian, lagrangian_masses):
    if lagrangian_masses is None:
        h = hamiltonian
        L = chain_cartesian_lagrangian((h.m1, h.m2), (h.l1, h.l2), h.g)
    else:
        L = chain_cartesian_lagrangian(hamiltonian.masses, hamiltonian.lengths, hamiltonian.g)
    lagrangian_form = hamiltonian.lagrangian_form()
    x_l = sample(lagrangian_form)
    x_h, f_h = canonical_field_from_lagrangian(L, x_l)
    torch.testing.assert_close(hamiltonian.from_lagrangian(x_l), x_h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lagrangian_form.to_canonical(x_l), x_h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hamiltonian.to_lagrangian(x_h), x_l, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lagrangian_form.from_canonical(x_h), x_l, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(hamiltonian.vector_field(0.0, x_h), f_h, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(hamiltonian.hamiltonian(x_h), lagrangian_form.energy(x_l), rtol=1e-12, atol=1e-10)
    # Same generator -> the same physical states in both forms.
    torch.testing.assert_close(sample(hamiltonian), x_h, rtol=1e-12, atol=1e-12)


def test_double_pendulum_lagrangian_equals_cartesian_lagrangian():
    s = DoublePendulum(m1=1.3, m2=0.7, l1=0.9, l2=1.2, g=3.0)
    x = sample(s)
    L = chain_cartesian_lagrangian((1.3, 0.7), (0.9, 1.2), 3.0)
    torch.testing.assert_close(s.lagrangian(x), L(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s.vector_field(0.0, x), lagrangian_field_by_autograd(L, x), rtol=1e-10, atol=1e-10)


def test_chain_pendulum_with_one_link_is_the_ideal_pendulum():
    chain = ChainPendulum(n=1, masses=(0.5,), lengths=(1.5,), g=6.0)
    pendulum = Pendulum(m=0.5, l=1.5, g=6.0)
    x = sample(chain)
    moment = 0.5 * 1.5**2
    x_pendulum = torch.cat([x[..., :1], moment * x[..., 1:]], dim=-1)  # p = m l^2 omega
    torch.testing.assert_close(chain.accelerations(x), pendulum.dp_dt(0.0, x_pendulum) / moment, rtol=1e-12, atol=1e-12)
    offset = chain.energy(x) - pendulum.energy(x_pendulum)  # potentials differ by the constant m g l
    torch.testing.assert_close(offset, torch.full_like(offset, -0.5 * 6.0 * 1.5), rtol=1e-12, atol=1e-12)
    h = chain.hamiltonian_form()
    torch.testing.assert_close(
        h.vector_field(0.0, x_pendulum), pendulum.vector_field(0.0, x_pendulum), rtol=1e-12, atol=1e-12
    )


def test_chain_pendulum_with_two_links_is_the_double_pendulum():
    params = dict(m1=1.3, m2=0.7, l1=0.9, l2=1.2, g=9.8)
    double = DoublePendulum(**params)
    chain = ChainPendulum(n=2, masses=(1.3, 0.7), lengths=(0.9, 1.2), g=9.8)
    x = sample(double)
    torch.testing.assert_close(chain.vector_field(0.0, x), double.vector_field(0.0, x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(chain.energy(x), double.energy(x), rtol=1e-12, atol=1e-12)
    xh = double.to_canonical(x)
    torch.testing.assert_close(
        chain.hamiltonian_form().vector_field(0.0, xh),
        DoublePendulumHamiltonian(**params).vector_field(0.0, xh),
        rtol=1e-10,
        atol=1e-10,
    )


def test_chain_pendulum_random_parameters_against_cartesian_euler_lagrange():
    chain = ChainPendulum.with_random_parameters(5, gen(7), g=9.8)
    assert all(0.6 <= v < 1.4 for v in chain.masses + chain.lengths)
    assert chain.masses != chain.lengths
    x = sample(chain)
    L = chain_cartesian_lagrangian(chain.masses, chain.lengths, 9.8)
    torch.testing.assert_close(chain.vector_field(0.0, x), lagrangian_field_by_autograd(L, x), rtol=1e-10, atol=1e-10)
    # Drawn from the generator: same seed, same chain; the same draws for both forms.
    again = ChainPendulumHamiltonian.with_random_parameters(5, gen(7))
    assert (again.masses, again.lengths) == (chain.masses, chain.lengths)


@pytest.mark.parametrize(
    "system",
    [MassSpring(k=1.3, m=0.7), CoupledOscillators(n=5, m=0.7, k=0.3, coupling=2.0), DampedOscillator(gamma=0.4)],
)
def test_exact_solution_solves_the_equations_of_motion(system):
    x0 = sample(system, n=6)
    t = torch.linspace(0.0, 5.0, 11, dtype=torch.float64)
    traj = system.exact_solution(x0, t)  # (6, 11, 2 dof)
    assert traj.shape == (6, 11, 2 * system.dof)
    torch.testing.assert_close(traj[:, 0], x0, rtol=0, atol=1e-14)
    _, dtraj = torch.autograd.functional.jvp(lambda tt: system.exact_solution(x0, tt), t, torch.ones_like(t))
    torch.testing.assert_close(dtraj, system.vector_field(0.0, traj), rtol=1e-10, atol=1e-10)


def test_coupled_oscillator_modes_are_the_eigenvectors_of_the_stiffness_matrix():
    s = CoupledOscillators(n=6, m=0.7, k=0.3, coupling=2.0)
    w, U = s.normal_modes()
    K = s.stiffness_matrix()
    torch.testing.assert_close(U.T @ U, torch.eye(6, dtype=torch.float64), rtol=0, atol=1e-13)
    torch.testing.assert_close(K @ U, U * (s.m * w**2), rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.sort(s.m * w**2).values, torch.linalg.eigvalsh(K), rtol=1e-12, atol=1e-12)
    q = sample(s)[..., :6]
    torch.testing.assert_close(s.potential(q), 0.5 * ((q @ K) * q).sum(-1), rtol=1e-12, atol=1e-12)


def test_damped_oscillator_exact_solution_is_underdamped_cosine():
    s = DampedOscillator(k=2.0, m=0.5, gamma=0.2)
    decay = s.gamma / (2 * s.m)
    wd = math.sqrt(s.k / s.m - decay**2)
    t = torch.linspace(0, 10, 21, dtype=torch.float64)
    x = s.exact_solution(torch.tensor([1.0, 0.0], dtype=torch.float64), t)
    expected_q = torch.exp(-decay * t) * (torch.cos(wd * t) + decay / wd * torch.sin(wd * t))
    torch.testing.assert_close(x[:, 0], expected_q, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Invariants.


@pytest.mark.parametrize("name", CONSERVATIVE)
def test_invariants_are_conserved_by_the_flow(name):
    s = get_system(name)
    x = sample(s)
    f = s.vector_field(0.0, x)
    invariants = s.invariants(x)
    assert "energy" in invariants
    for key in invariants:
        rate = time_derivative(lambda y, key=key: s.invariants(y)[key], x, f)
        x_req = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(s.invariants(x_req)[key].sum(), x_req)
        scale = 1 + (grad.abs() * f.abs()).sum(-1)
        assert bool((rate.abs() <= 1e-9 * scale).all()), (key, rate.abs().max())


@pytest.mark.parametrize("name", ["two_body", "three_body"])
def test_body_problems_have_momentum_and_angular_momentum(name):
    s = get_system(name, masses=(1.0, 2.0, 0.5)[: SYSTEMS.get(name).n_bodies])
    x = sample(s)
    inv = s.invariants(x)
    assert set(inv) == {"energy", "momentum_x", "momentum_y", "angular_momentum"}
    nb = s.n_bodies
    q, p = x[:, : 2 * nb].reshape(-1, nb, 2), x[:, 2 * nb :].reshape(-1, nb, 2)
    torch.testing.assert_close(inv["momentum_x"], p[..., 0].sum(-1))
    torch.testing.assert_close(inv["angular_momentum"], (q[..., 0] * p[..., 1] - q[..., 1] * p[..., 0]).sum(-1))
    f = s.vector_field(0.0, x)
    for key in ("momentum_x", "momentum_y", "angular_momentum"):
        rate = time_derivative(lambda y, key=key: s.invariants(y)[key], x, f)
        assert float(rate.abs().max()) < 1e-9


def test_damped_oscillator_loses_energy_at_the_expected_rate():
    s = DampedOscillator(k=1.5, m=0.8, gamma=0.3)
    assert not s.conservative and not s.is_separable
    x = sample(s)
    rate = time_derivative(s.energy, x, s.vector_field(0.0, x))
    expected = -0.3 * x[:, 1] ** 2 / 0.8**2
    torch.testing.assert_close(rate, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(s.energy_rate(x), expected, rtol=1e-12, atol=1e-14)
    assert bool((rate < 0).all())


# ------------------------------------------------------------------------------------------------
# Shapes, dtypes.


@pytest.mark.parametrize("name", NAMES)
def test_any_batch_shape_and_float32(name):
    s = get_system(name)
    x = sample(s, n=12)
    f = s.vector_field(0.0, x)
    batched = x.reshape(3, 4, -1)
    torch.testing.assert_close(s.vector_field(0.0, batched), f.reshape(3, 4, -1), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(s.energy(batched), s.energy(x).reshape(3, 4), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(s.vector_field(0.0, x[0]), f[0], rtol=1e-13, atol=1e-13)
    x32 = x.float()
    f32, e32 = s.vector_field(0.0, x32), s.energy(x32)
    assert f32.dtype == torch.float32 and e32.dtype == torch.float32
    for key, value in s.invariants(x32).items():
        assert value.dtype == torch.float32, key
    torch.testing.assert_close(
        f32.double(), s.vector_field(0.0, x32.double()), rtol=1e-4, atol=1e-4 * float(f.abs().max())
    )


# ------------------------------------------------------------------------------------------------
# Sampling.


@pytest.mark.parametrize("name", NAMES)
def test_sampling_is_reproducible_and_typed(name):
    s = get_system(name)
    a = sample(s, n=7, seed=1)
    assert a.shape == (7, 2 * s.dof) and a.dtype == torch.float64 and a.device.type == "cpu"
    torch.testing.assert_close(sample(s, n=7, seed=1), a, rtol=0, atol=0)
    assert not torch.equal(sample(s, n=7, seed=2), a)
    b = s.sample_initial_states(7, gen(1), dtype=torch.float32, device="cpu")
    assert b.dtype == torch.float32
    torch.testing.assert_close(b, a.float(), rtol=0, atol=0)
    assert bool(torch.isfinite(a).all())


@pytest.mark.parametrize("name", NAMES)
def test_sampling_rejects_bad_arguments(name):
    s = get_system(name)
    with pytest.raises(InvalidArgumentError, match=r"n must be a positive integer, got 0"):
        s.sample_initial_states(0, gen())
    with pytest.raises(InvalidArgumentError, match=r"generator must be a torch.Generator .* got int"):
        s.sample_initial_states(3, 0)


@pytest.mark.parametrize(
    ("name", "radius"), [("mass_spring", (0.1, 1.0)), ("pendulum", (1.3, 2.3)), ("damped_oscillator", (0.1, 1.0))]
)
def test_one_dof_sampling_radius(name, radius):
    r = sample(get_system(name), n=2000).norm(dim=-1)
    assert radius[0] <= float(r.min()) < radius[0] + 0.01 and radius[1] - 0.01 < float(r.max()) <= radius[1]


def test_two_body_sampling_follows_greydanus():
    s = TwoBody()
    x = sample(s, n=2000)
    r1, r2, p1, p2 = x[:, 0:2], x[:, 2:4], x[:, 4:6], x[:, 6:8]
    assert float(r1.min()) >= 0.5 and float(r1.max()) <= 1.5
    torch.testing.assert_close(r2, -r1, rtol=0, atol=0)
    torch.testing.assert_close(p1 + p2, torch.zeros_like(p1), rtol=0, atol=1e-15)
    torch.testing.assert_close((r1 * p1).sum(-1), torch.zeros(2000, dtype=torch.float64), rtol=0, atol=1e-14)
    # Speed relative to the circular speed 1 / (2 sqrt r) is 1 + 0.05 N(0, 1).
    ratio = p1.norm(dim=-1) * 2 * r1.norm(dim=-1).sqrt()
    assert abs(float(ratio.mean()) - 1) < 0.005 and abs(float(ratio.std()) - 0.05) < 0.005
    assert float((p1[:, 1] * r1[:, 0] - p1[:, 0] * r1[:, 1]).min()) > 0  # counter-clockwise


def test_three_body_sampling_follows_greydanus():
    s = ThreeBody()
    x = sample(s, n=2000)
    r = x[:, :6].reshape(-1, 3, 2)
    v = x[:, 6:].reshape(-1, 3, 2)  # unit masses
    radius = r.norm(dim=-1)
    assert float(radius.min()) >= 0.9 and float(radius.max()) <= 1.2
    torch.testing.assert_close(radius, radius[:, :1].expand(-1, 3), rtol=1e-14, atol=0)
    c, s_ = math.cos(2 * math.pi / 3), math.sin(2 * math.pi / 3)
    rot = torch.tensor([[c, -s_], [s_, c]], dtype=torch.float64)
    torch.testing.assert_close(r[:, 1], r[:, 0] @ rot.T, rtol=0, atol=1e-14)
    torch.testing.assert_close(r[:, 2], r[:, 1] @ rot.T, rtol=0, atol=1e-14)
    circular = torch.stack([-r[..., 1], r[..., 0]], -1) * 3**-0.25 / radius[..., None] ** 1.5
    factor = v / circular  # 1 + 0.2 U(-1, 1) per component
    assert 0.8 <= float(factor.min()) < 0.805 and 1.195 < float(factor.max()) <= 1.2
    assert abs(float(factor.mean()) - 1) < 0.01


@pytest.mark.parametrize(
    "system",
    [TwoBody(orbit_noise=0.0), TwoBody(masses=(1.0, 3.0), G=2.0, orbit_noise=0.0), ThreeBody(velocity_noise=0.0)],
    ids=["two_body", "two_body_unequal", "three_body"],
)
def test_noise_free_samples_are_circular_orbits(system):
    """Without noise each body moves on a circle about the centre of mass: ``a_i = -|v_i|^2 rho_i / |rho_i|^2``."""
    x = sample(system, n=64)
    nb = system.n_bodies
    m = torch.tensor(system.masses, dtype=torch.float64)
    r = x[:, : 2 * nb].reshape(-1, nb, 2)
    v = x[:, 2 * nb :].reshape(-1, nb, 2) / m[:, None]
    com = (m[:, None] * r).sum(1, keepdim=True) / m.sum()
    rho = r - com
    a = system.dp_dt(0.0, x).reshape(-1, nb, 2) / m[:, None]
    centripetal = -(v**2).sum(-1, keepdim=True) * rho / (rho**2).sum(-1, keepdim=True)
    torch.testing.assert_close(a, centripetal, rtol=1e-12, atol=1e-12)


def test_double_pendulum_sampling_ranges():
    x = sample(DoublePendulum(), n=4000)
    theta, omega = x[:, :2], x[:, 2:]
    assert 0 <= float(theta.min()) < 0.01 and 2 * math.pi - 0.01 < float(theta.max()) < 2 * math.pi
    assert -10 <= float(omega.min()) < -9.95 and 9.95 < float(omega.max()) <= 10
    y = sample(DoublePendulum(angle_range=(0.0, 1.0), velocity_range=(0.0, 0.1)), n=100)
    assert float(y[:, :2].max()) <= 1.0 and float(y[:, 2:].max()) <= 0.1 and float(y.min()) >= 0


def test_chain_pendulum_sampling_is_standard_normal():
    x = sample(ChainPendulum(n=3), n=4000)
    assert float(x.mean(0).abs().max()) < 0.05 and float((x.std(0) - 1).abs().max()) < 0.05
    x2 = sample(ChainPendulum(n=3, angle_scale=0.5, velocity_scale=2.0), n=4000)
    torch.testing.assert_close(x2, x * torch.tensor([0.5] * 3 + [2.0] * 3, dtype=torch.float64))


@pytest.mark.parametrize("lam", [1.0, 2.0])
def test_henon_heiles_samples_have_energy_in_range_and_are_bounded(lam):
    lo, hi = 0.05 / lam**2, 0.12 / lam**2
    s = HenonHeiles(lam=lam, energy_range=(lo, hi))
    x = sample(s, n=1000)
    E = s.energy(x)
    assert float(E.min()) >= lo and float(E.max()) <= hi and float(E.max()) < 1 / (6 * lam**2)
    assert float(E.min()) < lo + 0.01 * (hi - lo) and float(E.max()) > hi - 0.01 * (hi - lo)
    # Bounded: inside the triangle of the three saddles (where V < 1/(6 lam^2) around the origin).
    X, Y = lam * x[:, 0], lam * x[:, 1]
    assert bool((Y > -0.5).all() and (Y < math.sqrt(3) * X + 1).all() and (Y < -math.sqrt(3) * X + 1).all())
    assert float(s.potential(x[:, :2]).sub(E).max()) < 0
    # Directions of position and momentum are spread out, not one orbit repeated.
    assert float(x[:, 0].std()) > 0.1 / lam and float(x[:, 2].std()) > 0.1 / lam


def test_coupled_oscillators_sampling_range():
    x = sample(CoupledOscillators(n=4, amplitude=0.5), n=1000)
    assert x.shape == (1000, 8) and float(x.abs().max()) <= 0.5 and float(x.abs().max()) > 0.49


# ------------------------------------------------------------------------------------------------
# Registry, parameters, description.


@pytest.mark.parametrize("name", NAMES)
def test_get_system_round_trips_its_parameters(name):
    s = get_system(name)
    assert SYSTEMS.get(name) is type(s) and s.name == name
    again = get_system(name, **s.params())
    assert again == s and again.params() == s.params()
    x = sample(s, n=4)
    torch.testing.assert_close(again.vector_field(0.0, x), s.vector_field(0.0, x), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_state_names_and_description(name):
    s = get_system(name)
    names = s.state_names()
    assert len(names) == 2 * s.dof and len(set(names)) == len(names)
    desc = s.describe()
    assert json.loads(json.dumps(desc)) == desc
    assert desc["name"] == name and desc["dof"] == s.dof and desc["conservative"] == s.conservative
    assert desc["class"] == f"{type(s).__module__}:{type(s).__qualname__}"


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        get_system("pendulumm")
    message = str(info.value)
    assert "unknown system 'pendulumm'. Did you mean 'pendulum'?" in message
    for name in NAMES:
        assert name in message
    assert "'package.module:ClassName'" in message


def test_unknown_parameter_is_refused():
    with pytest.raises(
        InvalidArgumentError, match=r"system 'pendulum' has no parameter 'mass'; its parameters are: m, l, g, radius"
    ):
        get_system("pendulum", mass=1.0)


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("two_body", {"masses": (1.0, -1.0)}, "TwoBody: parameter 'masses' must be finite and > 0, got (1.0, -1.0)"),
        ("double_pendulum", {"m2": 0.0}, "DoublePendulum: parameter 'm2' must be finite and > 0, got 0.0"),
        (
            "chain_pendulum",
            {"n": 3, "lengths": (1.0, 0.0, 1.0)},
            "ChainPendulum: parameter 'lengths' must be finite and > 0",
        ),
        ("henon_heiles", {"lam": -1.0}, "HenonHeiles: parameter 'lam' must be finite and > 0, got -1.0"),
        ("damped_oscillator", {"gamma": float("nan")}, "DampedOscillator: parameter 'gamma' must be finite and > 0"),
    ],
)
def test_non_positive_parameters_are_refused(name, params, fragment):
    with pytest.raises(InvalidArgumentError) as info:
        get_system(name, **params)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        (
            "three_body",
            {"masses": (1.0, 1.0)},
            "ThreeBody: parameter 'masses' must have 3 entries (one mass per body), got 2",
        ),
        (
            "two_body",
            {"masses": (1.0, 1.0, 1.0)},
            "TwoBody: parameter 'masses' must have 2 entries (one mass per body), got 3",
        ),
        (
            "chain_pendulum",
            {"n": 3, "masses": (1.0, 1.0)},
            "ChainPendulum: parameter 'masses' must have 3 entries (one per link), got 2",
        ),
        (
            "chain_pendulum_hamiltonian",
            {"lengths": (1.0,)},
            "ChainPendulumHamiltonian: parameter 'lengths' must have 2 entries",
        ),
        ("two_body", {"masses": 1.0}, "TwoBody: parameter 'masses' must be a sequence of 2 numbers"),
        ("chain_pendulum", {"n": 0}, "ChainPendulum: parameter 'n' must be an integer >= 1, got 0"),
        ("coupled_oscillators", {"n": 2.5}, "CoupledOscillators: parameter 'n' must be an integer >= 1, got 2.5"),
        ("coupled_oscillators", {"k": 0.0, "coupling": 0.0}, "parameters 'k' and 'coupling' cannot both be 0"),
        (
            "three_body",
            {"radius": (1.2, 0.9)},
            "ThreeBody: parameter 'radius' must be an interval (low, high) with low < high",
        ),
        (
            "henon_heiles",
            {"energy_range": (0.1, 0.2)},
            "must satisfy 0 < low < high < escape energy 1 / (6 lam^2) = 0.166667",
        ),
        ("mass_spring", {"k": "stiff"}, "system 'mass_spring':"),
    ],
)
def test_malformed_parameters_are_refused(name, params, fragment):
    with pytest.raises(InvalidArgumentError) as info:
        get_system(name, **params)
    assert fragment in str(info.value)


def test_class_path_builds_a_registered_class():
    s = get_system("hnnlab.systems.pendulum:Pendulum", g=3.0)
    assert s == Pendulum(g=3.0)


def test_user_defined_system_by_class_path():
    s = get_system("tests.custom_system:Quartic", a=0.5)
    assert s.name == "quartic" and s.is_separable and "quartic" not in SYSTEMS
    x = sample(s)
    q, p = x[:, :1], x[:, 1:]
    torch.testing.assert_close(s.vector_field(0.0, x), torch.cat([p, -2.0 * q**3], dim=-1), rtol=1e-12, atol=1e-12)
    assert s.describe()["class"] == "tests.custom_system:Quartic"


def test_class_path_to_a_non_system_is_refused():
    with pytest.raises(
        UnknownNameError,
        match=r"'tests.custom_system:NotASystem' is not a subclass of hnnlab.systems.base.AbstractSystem",
    ):
        get_system("tests.custom_system:NotASystem")
    with pytest.raises(UnknownNameError, match=r"cannot import module 'tests.no_such_module'"):
        get_system("tests.no_such_module:Quartic")
    with pytest.raises(UnknownNameError, match=r"module 'tests.custom_system' has no attribute 'Sextic'"):
        get_system("tests.custom_system:Sextic")


# ------------------------------------------------------------------------------------------------
# Devices: every tensor a system creates follows the state's device.


@pytest.mark.parametrize("name", NAMES)
def test_no_tensor_is_created_on_the_wrong_device(name):
    """On the ``meta`` device any CPU tensor mixed into the computation raises, so this runs on CPU CI."""
    s = get_system(name)
    x = s.sample_initial_states(4, gen(), dtype=torch.float32, device="meta")
    assert x.device.type == "meta"
    outputs = [s.vector_field(0.0, x), s.dq_dt(0.0, x), s.dp_dt(0.0, x), *s.invariants(x).values()]
    for out in outputs:
        assert out.device.type == "meta" and out.dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name):
    s = get_system(name)
    x = sample(s, n=64)
    xc = s.sample_initial_states(64, gen(), device="cuda")
    torch.testing.assert_close(xc.cpu(), x, rtol=0, atol=0)
    torch.testing.assert_close(s.vector_field(0.0, xc).cpu(), s.vector_field(0.0, x), rtol=1e-12, atol=1e-12)
    for key, value in s.invariants(xc).items():
        torch.testing.assert_close(value.cpu(), s.invariants(x)[key], rtol=1e-12, atol=1e-12)
    if hasattr(s, "exact_solution"):
        t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
        torch.testing.assert_close(s.exact_solution(xc, t).cpu(), s.exact_solution(x, t), rtol=1e-12, atol=1e-12)


def test_the_pendulum_refuses_a_state_of_the_wrong_size_instead_of_a_wrong_energy() -> None:
    """Issue 13: ``energy([[0.5, 0.1, 99.]])`` of the pendulum was 9801 (the 99 read as a momentum)."""
    bad = torch.tensor([[0.5, 0.1, 99.0]])
    message = (
        "Pendulum: the state must have shape (..., 2 * dof) = (..., 2), coordinates then momenta; got shape (1, 3)"
    )
    system = get_system("pendulum")
    for call in (lambda: system.energy(bad), lambda: system(0.0, bad), lambda: system.vector_field(0.0, bad),
                 lambda: system.dq_dt(0.0, bad), lambda: system.dp_dt(0.0, bad), lambda: system.invariants(bad)):
        with pytest.raises(InvalidArgumentError) as info:
            call()
        assert str(info.value) == message
    m, length, g = system.m, system.l, system.g
    expected = 0.1**2 / (2 * m * length**2) + m * g * length * (1 - math.cos(0.5))
    assert torch.allclose(system.energy(bad[:, :2]), torch.tensor([expected]))


@pytest.mark.parametrize("name", NAMES)
def test_every_system_checks_the_state_size_in_every_state_method(name: str) -> None:
    system = get_system(name)
    width = 2 * system.dof
    second = "momenta" if system.coordinates == "canonical" else "velocities"
    for bad in (torch.zeros(3, width + 1, dtype=torch.float64), torch.zeros(width - 1, dtype=torch.float64)):
        expected = (
            f"{type(system).__name__}: the state must have shape (..., 2 * dof) = (..., {width}), coordinates then "
            f"{second}; got shape {tuple(bad.shape)}"
        )
        for method in ("energy", "vector_field", "dq_dt", "dp_dt"):
            args = (bad,) if method == "energy" else (0.0, bad)
            with pytest.raises(InvalidArgumentError) as info:
                getattr(system, method)(*args)
            assert str(info.value) == expected, method
    with pytest.raises(InvalidArgumentError, match=r"coordinates then \w+; got list$"):
        system.energy([0.0] * width)
    good = system.sample_initial_states(3, torch.Generator().manual_seed(0))
    assert system(0.0, good).shape == good.shape and system.energy(good).shape == (3,)


def test_a_users_system_is_checked_too_without_doing_anything() -> None:
    """The check is installed on every subclass's own state methods when the class is created."""

    class Quartic(AbstractHamiltonianSystem):
        dof = 1

        def hamiltonian(self, x):
            return 0.5 * x[..., 1] ** 2 + x[..., 0] ** 4

        def energy(self, x):  # overridden: still checked
            return self.hamiltonian(x)

        def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
            return torch.zeros(n, 2, dtype=dtype, device=device)

    with pytest.raises(InvalidArgumentError, match=r"^Quartic: the state must have shape \(\.\.\., 2 \* dof\) = "):
        Quartic().energy(torch.zeros(1, 4))
    with pytest.raises(InvalidArgumentError, match=r"^Quartic: .*got shape \(2, 3\)$"):
        Quartic()(0.0, torch.zeros(2, 3))
    x = torch.tensor([[1.0, 2.0]])
    assert torch.equal(Quartic()(0.0, x), torch.tensor([[2.0, -4.0]]))


def test_a_parameter_that_is_not_a_number_is_named():
    for value in ("abc", None, True):
        with pytest.raises(InvalidArgumentError) as info:
            get_system("pendulum", g=value)
        assert str(info.value) == f"system 'pendulum': Pendulum: parameter 'g' must be finite and > 0, got {value!r}"
