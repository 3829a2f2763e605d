"""Open systems (hnnlab/systems/port_hamiltonian.py) and the energy-balance audit (hnnlab/audit/balance.py)."""

from __future__ import annotations

import pytest
import torch

from hnnlab.audit.balance import energy_balance
from hnnlab.errors import InvalidArgumentError
from hnnlab.rollout import rollout
from hnnlab.systems import get_system


def _rollout(system, n_steps=2000, dt=0.01, save_every=5, n=4):
    x0 = system.sample_initial_states(n, torch.Generator().manual_seed(0))
    states = rollout(system, "rk4", x0, dt, n_steps, save_every=save_every)
    t = torch.arange(states.shape[1], dtype=torch.float64) * dt * save_every
    return states, t


@pytest.mark.parametrize(
    ("name", "params"),
    [("duffing", {}), ("forced_pendulum", {}), ("spring_damper_chain", {"input_amplitude": 0.5})],
)
def test_true_trajectories_are_balanced(name, params):
    system = get_system(name, **params)
    states, t = _rollout(system)
    audit = energy_balance(system, states, t)
    assert audit.verdict == "balanced" and audit.unbalanced == []
    assert audit.max_relative_residual < 5e-4  # the trapezoid on saves 0.05 apart
    # The residual is the quadrature's alone: the Richardson estimate accounts for it, and it falls at the
    # trapezoid's order 2 when the saves are 5x denser (measured ratio 25.0).
    assert audit.max_relative_residual == pytest.approx(audit.quadrature_error, rel=0.05)
    fine_states, fine_t = _rollout(system, save_every=1)
    fine = energy_balance(system, fine_states, fine_t)
    assert audit.max_relative_residual / fine.max_relative_residual == pytest.approx(25.0, rel=0.05)
    assert audit.dissipated < 0 and audit.injected != 0  # the damping removed energy, the drive injected some


def test_power_decomposition_matches_the_vector_field():
    # dH/dt along the flow equals grad H . f: the closed-form energy rate is the field's.
    system = get_system("spring_damper_chain", input_amplitude=0.7, input_frequency=1.3)
    x = system.sample_initial_states(5, torch.Generator().manual_seed(1)).requires_grad_(True)
    t = 0.4
    (grad,) = torch.autograd.grad(system.energy(x).sum(), x)
    expected = (grad * system.vector_field(t, x)).sum(-1)
    torch.testing.assert_close(system.energy_rate(t, x), expected, rtol=1e-12, atol=1e-12)
    assert bool((system.dissipated_power(x) <= 0).all())


def test_a_trajectory_that_does_not_dissipate_is_unbalanced():
    # Trajectories of the undamped Duffing judged by the damped one's balance: energy the system should lose
    # is not lost.
    undamped = get_system("duffing", delta=0.0)
    damped = get_system("duffing")
    states, t = _rollout(undamped)
    audit = energy_balance(damped, states, t)
    assert audit.verdict == "unbalanced" and audit.unbalanced == [0, 1, 2, 3]
    assert audit.max_relative_residual > 0.1


def test_coarse_saves_are_allowed_for_by_the_quadrature_error_estimate():
    system = get_system("forced_pendulum")
    states, t = _rollout(system, n_steps=2000, dt=0.01, save_every=40)  # saves 0.4 apart
    audit = energy_balance(system, states, t)
    assert audit.verdict == "balanced"
    assert audit.quadrature_error > 1e-4  # the trapezoid is visibly inexact, and the estimate says so


def test_bad_input_is_refused():
    with pytest.raises(InvalidArgumentError, match="energy_balance needs a port-Hamiltonian system"):
        energy_balance(get_system("pendulum"), torch.zeros(1, 3, 2), torch.arange(3.0))
    system = get_system("duffing")
    with pytest.raises(InvalidArgumentError, match=r"states must have shape \(n_traj, n_times, 2\), got \(3, 2\)"):
        energy_balance(system, torch.zeros(3, 2), torch.arange(3.0))
    with pytest.raises(InvalidArgumentError, match=r"t must have shape \(n_times,\) = \(3,\)"):
        energy_balance(system, torch.zeros(1, 3, 2), torch.arange(4.0))
    with pytest.raises(InvalidArgumentError, match="ForcedDuffing: parameter 'delta' must be a number >= 0"):
        get_system("duffing", delta=-1.0)
    with pytest.raises(InvalidArgumentError, match="MassSpringDamperChain: parameter 'n' must be an integer >= 1"):
        get_system("spring_damper_chain", n=0)


def test_duffing_spectrum_sums_to_minus_the_damping():
    # The flow contracts phase-space volume at the rate div f = -delta, so the exponents sum to -delta; on the
    # chaotic attractor (Guckenheimer-Holmes parameters) the largest is positive.
    from hnnlab.audit.lyapunov import lyapunov_spectrum

    system = get_system("duffing")
    x0 = torch.tensor([[0.5, 0.0]], dtype=torch.float64)
    spectrum = lyapunov_spectrum(system, x0, dt=0.05, n_steps=1500, integrator="rk4", renorm_every=25,
                                 transient_steps=200)[0]
    assert float(spectrum.sum()) == pytest.approx(-system.delta, abs=1e-5)
    assert float(spectrum[0]) > 0


def test_the_audit_of_an_open_system_checks_the_balance_and_can_gate_on_it():
    from hnnlab.audit import Thresholds, audit_trajectories

    damped = get_system("duffing")
    states, t = _rollout(damped)
    report = audit_trajectories(states, t, system=damped, check_structure=False,
                                thresholds=Thresholds(balanced_energy=True))
    assert report.balance is not None and report.balance.verdict == "balanced" and report.passed
    labels = [row[0] for row in report.rows()]
    assert "energy balance verdict" in labels
    undamped_states, _ = _rollout(get_system("duffing", delta=0.0))
    bad = audit_trajectories(undamped_states, t, system=damped, check_structure=False,
                             thresholds=Thresholds(balanced_energy=True))
    assert [f.name for f in bad.failures()] == ["balanced_energy"]
    assert bad.failures()[0].message.startswith("balanced_energy: the energy balance H(t) - H(0) = int P dt fails on 4")
    closed = audit_trajectories(states, t, system=get_system("pendulum"), check_structure=False,
                                thresholds=Thresholds(balanced_energy=True))
    assert closed.balance is None
    assert closed.failures()[0].message == ("balanced_energy: not measured (Pendulum is not an open "
                                            "(port-Hamiltonian) system)")


@pytest.mark.parametrize("family", ["steps", "sinusoids"])
def test_a_dataset_driven_by_stored_inputs_balances_with_them_and_not_without(family, tmp_path):
    from hnnlab.audit import audit_file
    from hnnlab.data import load_dataset, simulate, write_dataset
    from hnnlab.data.input_families import get_input_family

    chain = get_system("spring_damper_chain")
    result = simulate(chain, 6, dt=0.05, n_steps=200, inputs=get_input_family(family), seed=4, splits=(0.5, 0, 0.5))
    path = write_dataset(tmp_path / "chain.h5", result)
    report = audit_file(path, split="test", check_structure=False)
    assert report.balance.verdict == "balanced", report.balance  # measured residual 1e-4 (steps), 5e-4 (sinusoids)
    test = load_dataset(path).splits["test"]
    ignored = energy_balance(chain, test.state, test.t)  # the system's own u(t) = 0 instead of the stored inputs
    assert ignored.verdict == "unbalanced" and ignored.max_relative_residual > 0.05


@pytest.mark.parametrize("family", ["steps", "sinusoids"])
def test_a_rollout_file_driven_by_stored_inputs_is_audited_with_them(family, tmp_path):
    # The true spring_damper_chain PHNN rolled out on driven test data (rk4, two steps per saved interval, every
    # step saved): the rollout file stores the inputs, and the audit of the file judges both the prediction and the
    # reference (the true system driven by the same inputs) with them.
    from hnnlab.audit import Thresholds, audit_file, audit_trajectories
    from hnnlab.data import load_dataset, simulate, write_dataset
    from hnnlab.data.input_families import get_input_family
    from hnnlab.evaluate import predict_to_file
    from hnnlab.inputs import InputSignal
    from hnnlab.rollout_io import read_rollout
    from tests.test_models_phnn import true_model

    chain = get_system("spring_damper_chain")
    result = simulate(chain, 4, dt=0.1, n_steps=60, inputs=get_input_family(family), seed=6, splits=(0.5, 0, 0.5))
    data = load_dataset(write_dataset(tmp_path / "chain.h5", result))
    test = data.splits["test"]
    signal = InputSignal(test.t, test.inputs, data.metadata["inputs"]["interpolation"])
    out = tmp_path / "rollout.h5"
    predict_to_file(true_model(chain), test.clean[:, 0], dt=0.05, n_steps=120, out=out, integrator="rk4",
                    system=chain, inputs=signal, progress=False)
    report = audit_file(out, check_structure=False, thresholds=Thresholds(balanced_energy=True))
    assert report.passed and report.balance.verdict == "balanced", report.balance
    assert report.reference_balance.verdict == "balanced", report.reference_balance
    assert report.balance.max_relative_residual < 1e-3  # measured 3.8e-4 (steps), 3.0e-4 (sinusoids)
    assert "reference energy balance verdict" in [row[0] for row in report.rows()]
    # the stored inputs, at the rollout's saved times (every step: a refinement of the input grid)
    stored = read_rollout(out)
    assert stored.t.numel() == 121 and torch.equal(stored.inputs.resample(stored.t).values[:, ::2], test.inputs)
    # The same trajectories with the inputs dropped from the check (the system's own u(t) = 0): not balanced.
    dropped = audit_trajectories(stored.state, stored.t, system=chain, reference=stored.reference,
                                 check_structure=False, thresholds=Thresholds(balanced_energy=True))
    assert dropped.balance.verdict == "unbalanced" and dropped.reference_balance.verdict == "unbalanced"
    assert dropped.balance.max_relative_residual > 0.05  # measured 1.70 (steps), 1.41 (sinusoids)
    assert [f.name for f in dropped.failures()] == ["balanced_energy"]


def test_duffing_with_beta_zero_is_the_forced_linear_oscillator():
    # q'' + c q' + q = g cos(w t) started on its periodic solution q = A cos(w t) + B sin(w t),
    # A = g (1 - w^2) / D, B = g c w / D, D = (1 - w^2)^2 + (c w)^2, stays on it (dopri8 at 1e-12).
    import math

    from hnnlab.integrators import get_integrator

    c, g, w = 0.3, 0.5, math.pi / 2
    system = get_system("duffing", alpha=1.0, beta=0.0, delta=c, gamma=g, omega=w)
    d = (1 - w**2) ** 2 + (c * w) ** 2
    a, b = g * (1 - w**2) / d, g * c * w / d
    x0 = torch.tensor([[a, b * w]], dtype=torch.float64)
    states = rollout(system, get_integrator("dopri8", rtol=1e-12, atol=1e-12), x0, 0.1, 100)[0]  # (101, 2)
    t = torch.arange(101, dtype=torch.float64) * 0.1
    cos, sin = torch.cos(w * t), torch.sin(w * t)
    exact = torch.stack([a * cos + b * sin, w * (b * cos - a * sin)], dim=-1)
    torch.testing.assert_close(states, exact, rtol=0, atol=1e-9)
    with pytest.raises(InvalidArgumentError) as info:
        get_system("duffing", beta=0.0)  # alpha = -1: unbounded below
    assert str(info.value) == ("ForcedDuffing: beta = 0 (the linear oscillator) needs alpha > 0 (H bounded below), got "
                               "alpha = -1.0")
