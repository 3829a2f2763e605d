"""The port-Hamiltonian network: the true parts give the true field, the dissipation is positive semi-definite by
construction, a trained one recovers the Duffing damping, and its rollout is audited for the energy balance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hnnlab.audit import audit_trajectories
from hnnlab.data.simulate import simulate
from hnnlab.dynamics import input_gradient
from hnnlab.errors import InvalidArgumentError
from hnnlab.inputs import DrivenField, InputSignal
from hnnlab.models import PortHamiltonianNN
from hnnlab.models.phnn import decomposition
from hnnlab.rollout import solve
from hnnlab.systems import get_system
from hnnlab.training import losses

PORT_SYSTEMS = ["duffing", "forced_pendulum", "spring_damper_chain"]
pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


class Part(nn.Module):
    """A known function as a module without parameters (a part fixed to its true value)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)


def true_model(system) -> PortHamiltonianNN:
    """A network whose H, R, F and G are the system's own."""
    d = system.dof
    zero = torch.zeros(2 * d, dtype=torch.float64)
    kwargs = {"net": Part(system.hamiltonian), "dissipation": system.dissipation(zero)[d:, d:].tolist()}
    if system.n_inputs:
        kwargs |= {"n_inputs": system.n_inputs, "input_map": system.input_map(zero)[d:].reshape(-1).tolist()}
    else:
        kwargs |= {"force": "time",
                   "force_net": Part(lambda t: system.force(t[..., 0], t.new_zeros(*t.shape[:-1], 2 * d))[..., d:])}
    return PortHamiltonianNN(d, **kwargs)


@pytest.mark.parametrize("name", PORT_SYSTEMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_true_parts_reproduce_the_true_field(name, dtype):
    system = get_system(name)
    g = torch.Generator().manual_seed(0)
    x = system.sample_initial_states(256, g, dtype=dtype)
    t = (20 * torch.rand(256, generator=g, dtype=torch.float64)).to(dtype)
    u = torch.randn(256, system.n_inputs, generator=g, dtype=torch.float64).to(dtype) if system.n_inputs else None
    model = true_model(system).to(dtype)
    assert sum(p.numel() for p in model.parameters()) == 0  # every part fixed
    got, want = model.field_with_inputs(t, x, u), system.field_with_inputs(t, x, u)
    assert got.dtype == dtype
    assert float((got - want).abs().max()) <= (1e-10 if dtype == torch.float64 else 1e-5)


def test_true_chain_network_driven_by_inputs_follows_the_true_trajectories():
    system = get_system("spring_damper_chain")
    x0 = system.sample_initial_states(3, torch.Generator().manual_seed(2))
    signal = InputSignal(torch.arange(11, dtype=torch.float64) * 0.5,
                         torch.randn(3, 11, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    model = solve(DrivenField(true_model(system), signal), "rk4", x0, 0.05, 100, 10).ys
    true = solve(DrivenField(system, signal), "rk4", x0, 0.05, 100, 10).ys
    assert float((model - true).abs().max()) < 1e-12


@pytest.mark.parametrize("dissipation", ["constant", "state"])
def test_learned_dissipation_is_positive_semi_definite_and_dissipates(dissipation):
    torch.manual_seed(0)
    model = PortHamiltonianNN(3, hidden=(16,), dissipation=dissipation).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()  # any weights
    x = torch.randn(500, 6, dtype=torch.float64)
    with torch.no_grad():
        r = model.dissipation(x)
    assert torch.equal(r, r.transpose(-1, -2)) and float(torch.linalg.eigvalsh(r).min()) > -1e-10
    assert bool((r[:, :3].abs() == 0).all())  # R acts on the momenta only
    # energy balance of the model's own field: dH/dt = grad H . f = -grad H^T R grad H <= 0 (no force, no inputs)
    grad = input_gradient(model.hamiltonian, x)
    rate = (grad * model(0.0, x)).sum(-1).detach()
    dissipated = -(grad[:, None, :] @ r @ grad[:, :, None])[:, 0, 0]
    torch.testing.assert_close(rate, dissipated, rtol=1e-10, atol=1e-10)
    assert float(rate.max()) <= 1e-12


def test_penalties_are_the_l1_norms_of_damping_and_force():
    torch.manual_seed(0)
    model = PortHamiltonianNN(2, hidden=(8,), dissipation="state", force="state_time", dissipation_l1=0.5,
                              force_l1=2.0).double()
    x, t = torch.randn(7, 4, dtype=torch.float64), torch.rand(7, dtype=torch.float64)
    want = 0.5 * model.damping(x).abs().sum((-1, -2)).mean() + 2.0 * model.force(t, x)[:, 2:].abs().sum(-1).mean()
    torch.testing.assert_close(model.penalty(t, x), want)
    assert PortHamiltonianNN(2).penalty(t, x.float()) is None


def test_full_network_round_trips_through_a_checkpoint(tmp_path):
    from tests.test_training_checkpoint import save_and_load

    torch.manual_seed(0)
    model = PortHamiltonianNN(2, hidden=(8,), separable=True, dissipation="state", force="state_time", n_inputs=2,
                              input_map="state", dissipation_l1=0.1).double()
    loaded = save_and_load(model, tmp_path / "phnn.ckpt")
    x, t, u = torch.randn(5, 4, dtype=torch.float64), torch.rand(5, dtype=torch.float64), torch.randn(5, 2).double()
    assert isinstance(loaded, PortHamiltonianNN) and loaded.n_inputs == 2
    assert torch.equal(loaded.field_with_inputs(t, x, u), model.field_with_inputs(t, x, u))


def test_bad_arguments_are_refused():
    with pytest.raises(InvalidArgumentError, match=r"^dissipation must be one of 'none', 'constant', 'state' or a"):
        PortHamiltonianNN(1, dissipation="linear")
    with pytest.raises(InvalidArgumentError, match="^a known dissipation must be symmetric positive semi-definite"):
        PortHamiltonianNN(2, dissipation=[[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(InvalidArgumentError, match=r"^dissipation must hold dof = 2 numbers \(a diagonal\)"):
        PortHamiltonianNN(2, dissipation=[1.0, 2.0, 3.0])
    with pytest.raises(InvalidArgumentError, match="^force_net needs force='time' or force='state_time'"):
        PortHamiltonianNN(1, force_net=nn.Linear(1, 1))
    with pytest.raises(InvalidArgumentError, match=r"^input_map must be 2 finite numbers, got \[1.0\]"):
        PortHamiltonianNN(2, n_inputs=1, input_map=[1.0])
    model = PortHamiltonianNN(1, n_inputs=1)
    with pytest.raises(InvalidArgumentError) as info:
        model(0.0, torch.zeros(3, 2))
    assert str(info.value) == (
        "PortHamiltonianNN(n_inputs=1) needs inputs u of shape (3, 1) for states of shape (3, 2), got none; roll it "
        "out as hnnlab.inputs.DrivenField(model, inputs)"
    )


@pytest.fixture(scope="module")
def trained_duffing():
    """A separable PHNN with a learned constant damping and a learned force f(t), trained by derivative matching on
    noise-free Duffing data (16 trajectories, 31 times, dt = 0.2): 800 full-batch Adam steps, ~6 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: threads only contend on a shared CPU
    torch.manual_seed(0)
    system = get_system("duffing")
    data = simulate(system, 16, dt=0.2, n_steps=30, seed=0, splits=(1.0, 0.0, 0.0)).splits["train"]
    x, dxdt, t = data.state.reshape(-1, 2), data.dxdt.reshape(-1, 2), data.t.repeat(data.n_traj)
    model = PortHamiltonianNN(1, hidden=(32, 32), separable=True, force="time").double()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 800, eta_min=1e-4)
    for _ in range(800):
        loss = losses.derivative_loss(model, x, dxdt, "mse", t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    torch.set_num_threads(threads)
    return system, model, x, t


def test_trained_network_recovers_the_duffing_damping(trained_duffing):
    system, model, x, t = trained_duffing
    report = decomposition(model, system, t, x)
    assert report["damping_true"][0][0] == pytest.approx(system.delta, rel=1e-12)
    assert abs(report["damping_learned"][0][0] - system.delta) / system.delta < 0.05
    assert report["force_rms_error"] < 0.15 * report["force_rms_true"]  # measured 10.5 % (up to a constant)


def test_audit_of_a_trained_rollout_reports_the_energy_balance(trained_duffing):
    """The trained model's rollout, judged by the true system's H and power, nearly balances (its field is fitted,
    not exact: the residual is the fit's error); the same H and force without the damping do not balance at all."""
    system, model, x, _ = trained_duffing
    x0 = x[:4]  # the initial states of the first trajectories seen in training (t = 0)
    undamped = PortHamiltonianNN(1, hidden=(32, 32), separable=True, force="time", dissipation="none").double()
    undamped.load_state_dict(model.state_dict(), strict=False)  # the same H and force, no damping
    with torch.no_grad():
        rollout = solve(model, "rk4", x0, 0.02, 150, 5)
        free = solve(undamped, "rk4", x0, 0.02, 150, 5).ys
    report = audit_trajectories(rollout.ys, rollout.ts, system=system, model=model, check_structure=False)
    balance = report.balance
    assert balance is not None and "balance" in report.to_dict()
    assert balance.dissipated < 0 and balance.max_relative_residual < 0.05  # measured 0.020
    free_balance = audit_trajectories(free, rollout.ts, system=system, check_structure=False).balance
    assert free_balance.verdict == "unbalanced"
    assert free_balance.max_relative_residual > 5 * balance.max_relative_residual


@pytest.mark.parametrize("kwargs", [{"force": "time"}, {"n_inputs": 1}, {}], ids=["force", "inputs", "autonomous"])
def test_rollout_loss_takes_time_dependent_and_driven_networks_with_a_non_separable_method(kwargs):
    # Windows are integrated as DrivenFields (their own start times and inputs: tests/test_training_losses.py);
    # a PHNN is never separable, so leapfrog is refused before any step.
    from hnnlab.errors import IncompatibleIntegratorError
    from hnnlab.training.module import DynamicsModule

    DynamicsModule(PortHamiltonianNN(1, **kwargs), loss="rollout", integrator="rk4")
    with pytest.raises(IncompatibleIntegratorError, match="integrator 'leapfrog' is symplectic only for a separable"):
        DynamicsModule(PortHamiltonianNN(1, **kwargs), loss="rollout", integrator="leapfrog")
