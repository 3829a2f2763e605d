"""Tests of the conservation audit (hnnlab.audit); the `hnnlab audit` command is tested in tests/test_cli.py,
the rollout file itself in tests/test_rollout_io.py."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hnnlab.audit import Thresholds, audit_file, audit_trajectories, metrics, structure
from hnnlab.errors import HnnlabError, InvalidArgumentError, NonFiniteStateError
from hnnlab.integrators import get_integrator
from hnnlab.rollout import iter_rollout, rollout
from hnnlab.rollout_io import RolloutMetadata, RolloutWriter, read_rollout
from hnnlab.systems import Pendulum, get_system
from tests._rollout_helpers import grid, pendulum_states, write_rollout

DTYPES = [torch.float32, torch.float64]
EPS = {torch.float32: 1.2e-7, torch.float64: 2.3e-16}


# --------------------------------------------------------------------------------------------------
# Energy: leapfrog bounded, RK4 drifting, damped oscillator losing energy


@pytest.mark.parametrize("dtype", DTYPES)
def test_leapfrog_pendulum_rollout_passes_with_bounded_second_order_energy_error(tmp_path, dtype):
    system = Pendulum()
    x0 = pendulum_states(4, dtype=dtype)
    dt, n_steps = 0.1, 2000
    errors = {}
    for h in (dt, dt / 2):
        path = write_rollout(tmp_path / f"lf_{h}.h5", system, "leapfrog", x0, h, round(n_steps * dt / h), 10)
        thresholds = Thresholds(max_energy_error=2e-2, bounded_energy=True,
                                max_symplecticity_error=100 * EPS[dtype], max_volume_error=100 * EPS[dtype],
                                max_reversibility_error=1e5 * EPS[dtype])
        report = audit_file(path, thresholds=thresholds)
        assert report.failures() == [], report.format_text()
        assert report.energy.verdict == "bounded" and report.energy.n_drifting == 0
        assert abs(report.energy.drift) < report.energy.oscillation
        assert report.dtype == str(dtype).removeprefix("torch.")
        errors[h] = report.energy.max_error
    # leapfrog is order 2: halving dt divides the bounded energy error by 4
    assert errors[dt] / errors[dt / 2] == pytest.approx(4.0, rel=0.1)


def test_rk4_energy_drift_is_flagged_and_grows_linearly_with_the_horizon():
    system = Pendulum()
    x0 = pendulum_states(4)
    dt = 0.1
    states = rollout(system, "rk4", x0, dt, 2000, save_every=5)
    t = grid(states.shape[1], 5 * dt)
    report = audit_trajectories(states, t, system=system, integrator="rk4", dt=dt,
                                thresholds=Thresholds(bounded_energy=True), check_structure=False)
    e = report.energy
    assert e.verdict == "drifting" and e.n_drifting == 4
    assert e.drift < 0 and abs(e.drift) > 10 * e.oscillation  # RK4 dissipates the pendulum's energy
    assert [f.name for f in report.failures()] == ["bounded_energy"]
    half = states.shape[1] // 2 + 1
    first_half = audit_trajectories(states[:, :half], t[:half], system=system, check_structure=False).energy
    per_full = torch.tensor(e.per_trajectory_drift)
    per_half = torch.tensor(first_half.per_trajectory_drift)
    assert torch.allclose(per_full / per_half, torch.full((4,), 2.0), rtol=0.05)


@pytest.mark.parametrize("dtype", DTYPES)
def test_damped_oscillator_energy_loss_and_volume_contraction_are_flagged(dtype):
    system = get_system("damped_oscillator", gamma=0.1)
    x0 = system.sample_initial_states(3, torch.Generator().manual_seed(1), dtype=dtype)
    t = grid(201, 0.1)
    states = system.exact_solution(x0, t)  # (3, 201, 2): the exact flow, no integrator involved
    dt = 0.05
    report = audit_trajectories(states, t, system=system, integrator="rk4", dt=dt,
                                thresholds=Thresholds(max_energy_error=1e-2, bounded_energy=True))
    x = states.double()
    energy = system.k * x[..., 0] ** 2 / 2 + x[..., 1] ** 2 / (2 * system.m)
    expected = (1 - energy / energy[:, :1]).abs().max()
    assert report.energy.max_error == pytest.approx(float(expected), rel=1e-4 if dtype == torch.float32 else 1e-10)
    assert report.energy.verdict == "drifting" and report.energy.drift < -0.5
    assert {f.name for f in report.failures()} == {"max_energy_error", "bounded_energy"}
    # the flow contracts phase-space volume by exp(-gamma dt / m) per step; RK4's one-step matrix is the
    # Taylor polynomial R(hA) = I + hA + (hA)^2 / 2 + (hA)^3 / 6 + (hA)^4 / 24 of exp(hA)
    hA = dt * torch.tensor([[0.0, 1 / system.m], [-system.k, -system.gamma / system.m]], dtype=torch.float64)
    R = torch.eye(2, dtype=torch.float64) + hA + hA @ hA / 2 + hA @ hA @ hA / 6 + hA @ hA @ hA @ hA / 24
    contraction = 1 - float(torch.linalg.det(R))
    assert contraction == pytest.approx(1 - math.exp(-system.gamma * dt / system.m), rel=1e-5)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert report.structure.volume_error == pytest.approx(contraction, rel=tol)
    # for a linear 2x2 map, J^T Omega J = det(J) Omega, so the defect is sqrt(2) |det J - 1|
    assert report.structure.symplecticity_error == pytest.approx(math.sqrt(2) * contraction, rel=tol)
    assert any("not conservative" in note for note in report.structure.notes)


def test_secular_drift_separates_trend_from_oscillation():
    t = grid(1001, 0.01)  # 10 time units
    wiggle = 1e-3 * torch.sin(2 * math.pi * 1.3 * t)
    bounded = metrics.secular_drift(wiggle[None], t)
    drifting = metrics.secular_drift((wiggle + 5e-4 * t)[None], t)
    line = metrics.secular_drift((2e-6 * t)[None], t)
    assert not bool(bounded.drifting[0]) and abs(float(bounded.drift[0])) < 2e-4
    assert bool(drifting.drifting[0])
    assert float(drifting.rate[0]) == pytest.approx(5e-4, rel=0.05)
    assert float(line.rate[0]) == pytest.approx(2e-6, rel=1e-9)
    assert float(line.drift[0]) == pytest.approx(2e-5, rel=1e-9)
    assert float(line.oscillation[0]) < 1e-15 and bool(line.drifting[0])
    # a round-off floor keeps tiny trends "bounded"
    assert not bool(metrics.secular_drift((2e-6 * t)[None], t, floor=1e-4).drifting[0])


def test_two_body_invariants_leapfrog_keeps_angular_momentum_exactly_rk4_does_not():
    system = get_system("two_body")
    x0 = system.sample_initial_states(3, torch.Generator().manual_seed(0))
    dt = 0.05
    results = {}
    for name in ("leapfrog", "rk4"):
        states = rollout(system, name, x0, dt, 400, save_every=4)
        report = audit_trajectories(states, grid(states.shape[1], 4 * dt), system=system, check_structure=False)
        results[name] = {inv.name: inv.max_error for inv in report.invariants}
    assert set(results["leapfrog"]) == {"momentum_x", "momentum_y", "angular_momentum"}
    assert results["leapfrog"]["angular_momentum"] < 1e-12
    assert results["rk4"]["angular_momentum"] > 1e3 * results["leapfrog"]["angular_momentum"]
    assert results["leapfrog"]["momentum_x"] < 1e-12 and results["rk4"]["momentum_x"] < 1e-12


# --------------------------------------------------------------------------------------------------
# Structure of the one-step map


@pytest.mark.parametrize("dtype", DTYPES)
def test_symplecticity_tells_leapfrog_from_rk4(dtype):
    system = get_system("henon_heiles")
    x0 = system.sample_initial_states(8, torch.Generator().manual_seed(0), dtype=dtype)
    out = {}
    for name in ("leapfrog", "rk4"):
        step = structure.one_step_map(system, get_integrator(name), 0.3)
        jac = structure.step_jacobian(step, x0)
        assert jac.shape == (8, 4, 4)
        out[name] = float(structure.symplecticity_error(jac).max())
    assert out["leapfrog"] < 1e3 * EPS[dtype]
    assert out["rk4"] > 1e-4


def test_step_jacobian_equals_the_matrix_of_a_linear_step():
    system = get_system("mass_spring")
    step = structure.one_step_map(system, get_integrator("rk4"), 0.2)
    basis = torch.eye(2, dtype=torch.float64)
    matrix = step(basis).T  # columns: images of the basis vectors
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    jac = structure.step_jacobian(step, x)
    assert torch.allclose(jac, matrix.expand(5, 2, 2), atol=1e-14)
    assert torch.allclose(structure.volume_error(jac), (torch.linalg.det(matrix) - 1).abs().expand(5), atol=1e-15)


def test_structural_checks_of_a_learned_model_use_its_autograd_field():
    from hnnlab.models import HNN

    system = Pendulum()

    class TrueH(torch.nn.Module):
        def forward(self, x):
            return system.hamiltonian(x)

    model = HNN(1, net=TrueH()).double()
    x0 = pendulum_states(4)
    states = rollout(system, "leapfrog", x0, 0.1, 200, save_every=10)
    t = grid(states.shape[1], 1.0)
    report = audit_trajectories(states, t, system=system, model=model, integrator="implicit_midpoint", dt=0.1,
                                reversibility_steps=20)
    # implicit midpoint is symplectic and symmetric for any H (to its solver tolerance)
    assert report.structure.field == "model"
    assert report.structure.symplecticity_error < 1e-8
    assert report.structure.reversibility_error < 1e-8
    # the model's energy is the true H here: the two energy audits agree
    assert report.model_energy.max_error == pytest.approx(report.energy.max_error, rel=1e-12)
    rk4 = audit_trajectories(states, t, model=model, integrator="rk4", dt=0.1, reversibility_steps=20)
    assert rk4.structure.symplecticity_error > 1e-6
    assert rk4.structure.reversibility_error > 1e3 * report.structure.reversibility_error


def test_structural_checks_are_skipped_with_a_reason_never_silently():
    states = rollout(Pendulum(), "leapfrog", pendulum_states(2), 0.1, 20)
    t = grid(21, 0.1)
    no_field = audit_trajectories(states, t)
    assert no_field.structure is None
    assert "no vector field" in no_field.skipped["symplecticity"]
    assert "no system given" in no_field.skipped["energy"]
    adaptive = audit_trajectories(states, t, system=Pendulum(), integrator="dopri5", dt=0.1)
    assert adaptive.structure is None and "adaptive" in adaptive.skipped["reversibility"]
    gated = audit_trajectories(states, t, thresholds=Thresholds(max_symplecticity_error=1.0,
                                                                 min_valid_prediction_time=1.0))
    assert [f.name for f in gated.failures()] == ["max_symplecticity_error", "min_valid_prediction_time"]
    assert "not measured" in gated.failures()[0].message


# --------------------------------------------------------------------------------------------------
# Accuracy against a reference


def test_valid_prediction_time_matches_the_analytic_crossing():
    # reference: a circle of radius A (mean square A^2 / 2); prediction = reference + (c t, 0), so the
    # normalised error is (c t)^2 / 2 / (A^2 / 2) = (c t / A)^2 and crosses 0.01 at t* = 0.1 A / c.
    A, spacing = 2.0, 0.01
    t = grid(1001, spacing)  # horizon 10
    crossings = torch.tensor([4.005, 1.2345, 7.5555, math.inf], dtype=torch.float64)
    c = 0.1 * A / crossings  # 0 for the last one (never crosses)
    ref = A * torch.stack([torch.cos(t), torch.sin(t)], dim=-1).expand(4, -1, -1)
    pred = ref + torch.stack([c[:, None] * t, torch.zeros_like(t).expand(4, -1)], dim=-1)
    vpt, censored = metrics.valid_prediction_time(pred, ref, t)
    expected = torch.tensor([4.01, 1.24, 7.56, 10.0], dtype=torch.float64)  # first grid time past t*
    assert torch.allclose(vpt, expected, atol=1e-9)
    assert censored.tolist() == [False, False, False, True]
    report = audit_trajectories(pred, t, reference=ref, thresholds=Thresholds(min_valid_prediction_time=2.0))
    assert report.accuracy.vpt_min == pytest.approx(1.24)
    assert report.accuracy.n_censored == 1
    assert report.failures()[0].name == "min_valid_prediction_time"
    assert report.failures()[0].value == pytest.approx(1.24)


def test_mse_and_geometric_mean_relative_error_on_scaled_predictions():
    t = grid(50, 0.1)
    ref = torch.stack([torch.cos(t), 2 * torch.sin(t)], dim=-1).expand(3, -1, -1)
    eps = torch.tensor([0.1, 0.01, 0.001], dtype=torch.float64)
    pred = ref * (1 + eps[:, None, None])
    # rel(t) = eps |ref| / ((2 + eps) |ref|) = eps / (2 + eps), constant in time
    per_traj = metrics.geometric_mean_relative_error(pred, ref)
    assert torch.allclose(per_traj, eps / (2 + eps), rtol=1e-12)
    report = audit_trajectories(pred, t, reference=ref)
    assert report.accuracy.gmre == pytest.approx(float((eps / (2 + eps)).log().mean().exp()), rel=1e-12)
    expected_mse = float(((eps[:, None, None] * ref) ** 2).mean())
    assert report.accuracy.mse == pytest.approx(expected_mse, rel=1e-12)
    blown = pred.clone()
    blown[0, 10:] = math.nan
    rel = metrics.relative_error_series(blown, ref)
    assert float(rel[0, 10:].min()) == 1.0 and float(rel[0, 10:].max()) == 1.0


# --------------------------------------------------------------------------------------------------
# Non-finite rollouts


def blowup_field(t, x):
    """dq/dt = q^2 (blows up at t = 1 / q0), dp/dt = 0."""
    return torch.cat([x[..., :1] ** 2, torch.zeros_like(x[..., 1:])], dim=-1)


def unchecked_rollout(f, integrator, x0, dt, n_steps):
    integ = get_integrator(integrator)
    xs, x = [x0], x0
    for _ in range(n_steps):
        x = integ._step(f, 0.0, x, dt)
        xs.append(x)
    return torch.stack(xs, dim=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_rollout_that_blows_up_reports_its_first_bad_step(tmp_path, dtype):
    x0 = torch.tensor([[0.5, 1.0], [1.0, 0.0], [0.2, 0.3]], dtype=dtype)
    dt, n = 0.05, 60
    with pytest.raises(NonFiniteStateError) as info:  # the rollout loop's own account of the blow-up
        rollout(blowup_field, "rk4", x0, dt, n, check_every=1)
    states = unchecked_rollout(blowup_field, "rk4", x0, dt, n)
    t = grid(n + 1, dt)
    report = audit_trajectories(states, t, dt=dt)
    nf = report.nonfinite
    assert nf.first_step == info.value.step and nf.first_trajectory == info.value.trajectory == 1
    assert nf.n_nonfinite == 2 and nf.per_trajectory_step[2] == -1
    assert nf.first_time == pytest.approx(info.value.time)
    assert [f.name for f in report.failures()] == ["allow_nonfinite"]
    assert audit_trajectories(states, t, dt=dt, thresholds=Thresholds(allow_nonfinite=True)).passed
    # through a file saved every 4 steps: the data alone locate the step to within save_every, the
    # writer's mark_nonfinite (from the loop's error) makes it exact
    save_every = 4
    meta = RolloutMetadata(integrator=get_integrator("rk4").describe(), dt=dt, save_every=save_every)
    saved = states[:, ::save_every]
    for mark, expected in ((False, -(-info.value.step // save_every) * save_every), (True, info.value.step)):
        path = tmp_path / f"blowup_{mark}.h5"
        with RolloutWriter(path, 3, 1, dtype, meta) as writer:
            writer.append(saved)
            if mark:
                writer.mark_nonfinite(info.value.trajectory, info.value.step)
        assert read_rollout(path).first_nonfinite_step[1] == expected
        assert audit_file(path).nonfinite.first_step == expected


def test_energy_metrics_use_the_finite_prefix_only():
    system = Pendulum()
    states = rollout(system, "leapfrog", pendulum_states(2), 0.1, 100)
    clean = audit_trajectories(states, grid(101, 0.1), system=system).energy
    states[1, 60:] = math.inf
    broken = audit_trajectories(states, grid(101, 0.1), system=system).energy
    assert math.isfinite(broken.max_error)
    assert broken.per_trajectory_max_error[0] == clean.per_trajectory_max_error[0]
    expected = float(metrics.relative_energy_error(system.energy(states[1:, :60])).max())
    assert broken.per_trajectory_max_error[1] == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# Dataset files and options (the `hnnlab audit` command, bad files and JSON, plots: tests/test_cli.py)


def test_audit_of_a_dataset_file_uses_its_clean_states_and_integrator(tmp_path):
    from hnnlab.data.simulate import simulate
    from hnnlab.data.writer import write_dataset

    result = simulate(Pendulum(), 6, dt=0.1, n_steps=200, integrator="leapfrog", substeps=4, noise_std=0.1,
                      seed=0, splits=(0.5, 0.0, 0.5))
    path = write_dataset(tmp_path / "pend.h5", result)
    report = audit_file(path, split="test", thresholds=Thresholds(max_energy_error=1e-3, bounded_energy=True,
                                                                  max_symplecticity_error=1e-13))
    assert report.kind == "dataset[test]" and report.n_traj == 3
    assert report.failures() == [], report.format_text()
    assert report.dt == pytest.approx(0.025) and report.structure.integrator == "leapfrog"
    assert "ground truth itself" in report.skipped["accuracy"]
    with pytest.raises(HnnlabError, match="has no split 'val'"):
        audit_file(path, split="val")


def test_thresholds_and_options_are_validated():
    with pytest.raises(InvalidArgumentError, match="threshold max_energy_error must be a finite number >= 0"):
        Thresholds(max_energy_error=-1.0)
    with pytest.raises(InvalidArgumentError, match="threshold bounded_energy must be True or False"):
        Thresholds(bounded_energy="yes")
    states = torch.zeros(2, 5, 2)
    with pytest.raises(InvalidArgumentError, match=r"t must be a tensor of shape \(n_times,\) = \(5,\)"):
        audit_trajectories(states, torch.zeros(4))
    with pytest.raises(InvalidArgumentError, match="vpt_threshold must be a finite number > 0, got 0"):
        audit_trajectories(states, grid(5, 1.0), vpt_threshold=0)
    with pytest.raises(InvalidArgumentError, match="the system has dof = 1 but the states have 2 \\* dof = 4"):
        audit_trajectories(torch.zeros(2, 5, 4), grid(5, 1.0), system=Pendulum())


def test_rollout_file_of_a_learned_model_records_its_energy_and_needs_the_model_for_structure(tmp_path):
    from hnnlab.models import HNN

    system = Pendulum()

    class TrueH(torch.nn.Module):
        def forward(self, x):
            return system.hamiltonian(x)

    model = HNN(1, net=TrueH()).double()
    integ = get_integrator("implicit_midpoint")
    x0, dt = pendulum_states(2), 0.1
    meta = RolloutMetadata(integrator=integ.describe(), dt=dt, save_every=5, system=system.describe(),
                           model=model.describe(), checkpoint="model.ckpt")
    path = tmp_path / "model.h5"
    with RolloutWriter(path, 2, 1, torch.float64, meta, with_energy_model=True) as writer:
        for chunk in iter_rollout(model, integ, x0, dt, 100, 5, chunk_size=8):
            writer.append(chunk, energy_model=model.energy(chunk))
    plain = audit_file(path)
    assert plain.structure is None and "learned model that was not loaded" in plain.skipped["symplecticity"]
    assert plain.model == model.describe()
    # the model's energy is stored in the file and is the true H here
    assert plain.model_energy.max_error == pytest.approx(plain.energy.max_error, rel=1e-12)
    full = audit_file(path, model=model, reversibility_steps=10)
    assert full.structure.field == "model" and full.structure.symplecticity_error < 1e-8


def test_drift_verdict_catches_an_early_saturating_loss_and_keeps_bounded_oscillations() -> None:
    """Three synthetic relative-energy deviations on t in [0, 100]: a bounded oscillation that returns to
    zero every period, a linear drift, and a loss that saturates within the first 5% of the horizon
    (a model spiralling into a fixed point). Only the oscillation is bounded."""
    from hnnlab.audit.metrics import secular_drift

    t = torch.linspace(0.0, 100.0, 2001, dtype=torch.float64)
    oscillation = 1e-3 * torch.sin(2.0 * t) ** 2
    linear = 1e-4 * t + 1e-4 * torch.sin(2.0 * t) ** 2
    saturating = -(1.0 - torch.exp(-t / 1.5))
    fit = secular_drift(torch.stack([oscillation, linear, saturating]), t)
    assert fit.drifting.tolist() == [False, True, True]
    # The linear fit alone calls the saturating loss bounded (flat after t ~ 5): the second rule decides.
    assert float(fit.drift[2].abs()) < float(fit.oscillation[2])


# --------------------------------------------------------------------------------------------------
# Non-conservative models: the energy is audited, and not expected to be conserved


class _Potential(torch.nn.Module):
    """A known scalar function of the state as a network: ``H`` or ``D`` of the damped oscillator."""

    def __init__(self, kind: str, k: float, m: float, gamma: float) -> None:
        super().__init__()
        self.kind, self.k, self.m, self.gamma = kind, k, m, gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, p = x[..., 0], x[..., 1]
        if self.kind == "H":
            return self.k * q**2 / 2 + p**2 / (2 * self.m)
        return -self.gamma * p**2 / (2 * self.m)  # D: grad D = (0, -gamma p / m)


def test_a_dissipative_model_rollout_reports_its_energy_as_not_expected_to_be_conserved(tmp_path):
    """A DissipativeHNN with the damped oscillator's exact H and D (declared ``conservative = False``): both
    energies are measured (they drift: the flow loses energy), the report says that neither is expected to
    be conserved and why, and the drift alone fails no gate."""
    from hnnlab.models import HNN, DissipativeHNN

    system = get_system("damped_oscillator", gamma=0.1)
    parts = dict(k=system.k, m=system.m, gamma=system.gamma)
    model = DissipativeHNN(1, net=_Potential("H", **parts), dissipation_net=_Potential("D", **parts)).double()
    assert type(model).conservative is False and HNN.conservative is True
    x0 = system.sample_initial_states(3, torch.Generator().manual_seed(1), dtype=torch.float64)
    dt, save_every = 0.05, 4
    states = rollout(model, "rk4", x0, dt, 400, save_every=save_every)
    t = grid(states.shape[1], save_every * dt)
    report = audit_trajectories(states, t, system=system, model=model, integrator="rk4", dt=dt,
                                save_every=save_every)
    me, e = report.model_energy, report.energy
    assert not me.expected_conserved and me.note == (
        "not expected to be conserved: the model (DissipativeHNN) is not conservative"
    )
    assert not e.expected_conserved and "the system (DampedOscillator) is not conservative" in e.note
    # the model's H is the true energy here, and both lose it: measured, not excused
    assert me.max_error == pytest.approx(e.max_error, rel=1e-12)
    assert me.verdict == "drifting" and me.drift < -0.5
    rows = {check: (value, status) for check, value, _, status in report.rows()}
    assert rows["model energy verdict"] == (f"drifting (3/3 drifting); {me.note}", "-")
    assert report.failures() == [] and report.passed, report.format_text()
    assert any("not conservative" in note for note in report.structure.notes)
    # from a rollout file, without the model: its description declares it
    integ = get_integrator("rk4")
    meta = RolloutMetadata(integrator=integ.describe(), dt=dt, save_every=save_every, system=system.describe(),
                           model=model.describe(), checkpoint="model.ckpt")
    path = tmp_path / "dissipative.h5"
    with RolloutWriter(path, 3, 1, torch.float64, meta, with_energy_model=True) as writer:
        for chunk in iter_rollout(model, integ, x0, dt, 400, save_every, chunk_size=32):
            writer.append(chunk, energy_model=model.energy(chunk))
    from_file = audit_file(path)
    assert not from_file.model_energy.expected_conserved
    assert from_file.model_energy.note == "not expected to be conserved: the model is not conservative"
    assert json.loads(json.dumps(from_file.to_dict()))["model_energy"]["expected_conserved"] is False


def test_a_conservative_field_expects_its_energy_conserved():
    system = Pendulum()
    states = rollout(system, "leapfrog", pendulum_states(2), 0.1, 100, save_every=10)
    report = audit_trajectories(states, grid(states.shape[1], 1.0), system=system, check_structure=False)
    assert report.energy.expected_conserved and report.energy.note is None


# --------------------------------------------------------------------------------------------------
# Plots (hnnlab.audit.plots): the matplotlib objects are inspected before saving


@pytest.fixture
def close_figures():
    """Close the figures a plot test made (they are inspected, not saved)."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _spring_orbits(n_traj: int, n_times: int, dt: float, *, frequency_error: float = 0.0):
    """Exact MassSpring orbits (k = 2, m = 0.5: q = A cos(2 t + phi), p = -A sin(2 t + phi)), or orbits whose
    frequency is off by ``frequency_error`` (a prediction that drifts out of phase); times from 0."""
    t = torch.arange(n_times, dtype=torch.float64) * dt
    g = torch.Generator().manual_seed(0)
    amp = 0.1 + 0.9 * torch.rand(n_traj, 1, generator=g, dtype=torch.float64)
    phi = 2 * math.pi * torch.rand(n_traj, 1, generator=g, dtype=torch.float64)
    arg = 2.0 * (1 + frequency_error) * t + phi
    return t, torch.stack([amp * torch.cos(arg), -amp * torch.sin(arg)], dim=-1)


def _assert_sane_log_axis(ax, floor):
    import numpy as np

    assert ax.get_yscale() == "log"
    lo, hi = ax.get_ylim()
    assert np.isfinite(lo) and np.isfinite(hi) and floor <= lo < hi <= 1e3 and lo >= 1e-18
    for line in ax.lines:
        y = np.asarray(line.get_ydata(), dtype=float)
        assert np.nanmin(y) >= floor  # no exact zero (or anything below the floor) reaches the log axis


@pytest.mark.usefixtures("close_figures")
def test_energy_error_plot_of_25_long_trajectories_has_sane_log_limits_and_a_summary_not_25_lines():
    import numpy as np

    from hnnlab.audit.plots import ENERGY_ERROR_LABEL, MAX_DRAW_POINTS, TIME_LABEL, energy_error_figure, log_floor

    n_traj, n_times = 25, 10_001
    t = torch.arange(n_times, dtype=torch.float64) * 0.1
    scale = torch.logspace(-4, -2, n_traj, dtype=torch.float64)[:, None]
    errors = scale * (1 + t / 100) * torch.sin(3 * t).abs()
    errors[:, 0] = 0.0  # exact zero at t = 0, as relative_energy_error gives
    errors[:, 4000] = 0.0  # and an exact zero later
    errors[3, 6000:] = float("nan")  # a trajectory that blew up
    fig = energy_error_figure(t, {"system": errors, "model": 10 * errors})
    floor = log_floor(torch.float64)
    for ax, what in zip(fig.axes, ("true energy", "learned energy"), strict=True):
        _assert_sane_log_axis(ax, floor)
        assert len(ax.lines) == 2 and len(ax.collections) == 1  # median and worst, one 10-90 % band
        assert all(len(line.get_xdata()) <= MAX_DRAW_POINTS for line in ax.lines)
        assert min(min(line.get_xdata()) for line in ax.lines) > 0  # t = 0 left out of the log axis
        labels = [text.get_text() for text in ax.get_legend().get_texts()]
        assert labels == ["10-90 % of 25 trajectories", "median", "worst trajectory"]
        assert ax.get_xlabel() == TIME_LABEL and ax.get_ylabel() == ENERGY_ERROR_LABEL and what in ax.get_title()
    # Min/max decimation keeps the extremes: the drawn worst curve reaches the largest error exactly.
    worst = fig.axes[0].lines[1]
    assert np.nanmax(worst.get_ydata()) == pytest.approx(float(errors[:, 1:].nan_to_num(0).max()), rel=1e-12)
    fig.clf()
    # Exact conservation (all zeros) in float32: the axis spans two decades above the float32 floor.
    fig = energy_error_figure(t[:50], {"system": torch.zeros(2, 50)}, floor=log_floor(torch.float32))
    ax = fig.axes[0]
    assert ax.get_ylim() == pytest.approx((2**-25, 100 * 2**-25)) and len(ax.lines) == 2  # one line each
    assert any("drawn at it" in text.get_text() for text in ax.texts)
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "relative error, trajectory 0", "relative error, trajectory 1"]


@pytest.mark.usefixtures("close_figures")
def test_decimation_keeps_each_buckets_extremes_where_striding_aliases():
    import numpy as np

    from hnnlab.audit.plots import decimate

    n = 100_000
    t = np.arange(n) * 0.01
    y = np.sin(np.pi * np.arange(n) / 2)  # period of 4 samples
    tt, yy = decimate(t, y, 2000)
    assert len(yy) == 2000 and np.all(np.diff(tt) >= 0)
    assert np.ptp(y[::100]) < 1e-9  # striding by 100 samples sees a flat line: pure aliasing
    assert np.abs(yy[1::2] - yy[0::2]).min() == pytest.approx(2.0)  # every bucket spans [-1, 1]
    short_t, short_y = decimate(t[:500], y[:500], 2000)
    assert np.array_equal(short_y, y[:500])  # short series are drawn as they are
    gap = y.copy()
    gap[:300] = np.nan
    assert np.isnan(decimate(t, gap, 2000)[1][:4]).all()  # an all-NaN bucket is a gap, not a zero


@pytest.mark.usefixtures("close_figures")
def test_phase_portrait_reference_grey_underneath_prediction_coloured_both_in_the_legend():
    from hnnlab.audit.plots import MAX_TRAJ_LINES, phase_portrait_figure

    t, reference = _spring_orbits(25, 10_001, 0.01)
    _, prediction = _spring_orbits(25, 10_001, 0.01, frequency_error=0.01)
    fig = phase_portrait_figure(prediction, reference=reference, state_names=["q", "p"], t=t,
                                field=get_system("mass_spring"))
    ax = fig.axes[0]
    assert len(ax.lines) == 2 * MAX_TRAJ_LINES  # three trajectories, not 25
    ref = [line for line in ax.lines[0::2]]
    pred = [line for line in ax.lines[1::2]]
    ref_colors = {line.get_color() for line in ref}
    pred_colors = [line.get_color() for line in pred]
    assert len(ref_colors) == 1 and ref_colors.isdisjoint(pred_colors) and len(set(pred_colors)) == MAX_TRAJ_LINES
    assert all(r.get_linewidth() > p.get_linewidth() and r.get_zorder() < p.get_zorder() for r in ref for p in pred)
    assert all(line.get_linestyle() == "-" for line in ax.lines)  # 300 saves per period: lines
    assert [text.get_text() for text in fig.legends[0].get_texts()] == [
        "reference", "prediction, trajectory 0", "prediction, trajectory 1", "prediction, trajectory 2"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("q", "p") and ax.get_title()


@pytest.mark.usefixtures("close_figures")
def test_saves_one_period_apart_are_drawn_as_points_the_field_tells_aliasing_from_a_slow_orbit():
    from hnnlab.audit.plots import phase_portrait_figure, prediction_vs_reference_figure, sparse_saves

    spring = get_system("mass_spring")
    # Saved every 1.003 periods: the samples creep around the orbit, a smooth circle that is not the motion.
    t, states = _spring_orbits(3, 400, 1.003 * math.pi)
    assert sparse_saves(states, t) == [False]  # from the samples alone it looks well resolved
    assert sparse_saves(states, t, spring) == [True]  # the field says each save is a whole period on
    dense_t, dense = _spring_orbits(3, 400, 0.01)
    assert sparse_saves(dense, dense_t, spring) == [False]
    fig = phase_portrait_figure(states, reference=states, t=t, field=spring)
    assert all(line.get_linestyle() == "None" and line.get_marker() == "o" for line in fig.axes[0].lines)
    assert "drawn as points" in fig.axes[0].get_title()
    fig = prediction_vs_reference_figure(t, states, states, field=spring)
    assert all(line.get_linestyle() == "None" for ax in fig.axes[:2] for line in ax.lines)


@pytest.mark.usefixtures("close_figures")
def test_prediction_vs_reference_shows_start_and_end_windows_and_a_log_error_without_the_zero_at_t0():
    import numpy as np

    from hnnlab.audit.plots import (
        MAX_DRAW_POINTS,
        TIME_LABEL,
        WINDOW_PERIODS,
        log_floor,
        prediction_vs_reference_figure,
    )

    t, reference = _spring_orbits(25, 10_001, 0.01)  # 32 periods
    _, prediction = _spring_orbits(25, 10_001, 0.01, frequency_error=0.01)
    fig = prediction_vs_reference_figure(t, prediction, reference, state_names=["q", "p"])
    assert len(fig.axes) == 5  # q and p, start and end windows, and the error panel
    start_q, start_p, end_q, end_p, error = fig.axes
    assert start_q.get_xlim()[0] == 0.0 and end_q.get_xlim()[1] == pytest.approx(100.0)
    period = math.pi
    assert start_q.get_xlim()[1] == pytest.approx(WINDOW_PERIODS * period, rel=0.05)  # a few periods each
    assert end_q.get_xlim()[0] == pytest.approx(100.0 - WINDOW_PERIODS * period, rel=0.05)
    for ax in (start_q, start_p, end_q, end_p):
        ref, pred = ax.lines
        assert ref.get_color() != pred.get_color() and ref.get_linewidth() > pred.get_linewidth()
        assert ref.get_zorder() < pred.get_zorder()
    assert [text.get_text() for text in fig.legends[0].get_texts()] == ["reference", "prediction"]
    assert (start_q.get_ylabel(), start_p.get_ylabel()) == ("q", "p")
    _assert_sane_log_axis(error, log_floor())
    assert len(error.lines) == 2 and all(len(line.get_xdata()) <= MAX_DRAW_POINTS for line in error.lines)
    assert min(min(line.get_xdata()) for line in error.lines) > 0 and error.get_xlabel() == TIME_LABEL
    # A perfect prediction: the error is exactly zero everywhere, drawn at the floor on a sane axis.
    fig = prediction_vs_reference_figure(t[:200], reference[:2, :200], reference[:2, :200])
    error = fig.axes[-1]
    assert error.get_ylim() == pytest.approx((log_floor(), 100 * log_floor()))
    assert all(np.all(np.asarray(line.get_ydata()) == log_floor()) for line in error.lines)


@pytest.mark.usefixtures("close_figures")
def test_write_plots_writes_complete_pngs_and_no_temporaries(tmp_path):
    from hnnlab.audit.plots import write_plots

    t, reference = _spring_orbits(4, 300, 0.05)
    _, prediction = _spring_orbits(4, 300, 0.05, frequency_error=0.02)
    energy = {"system": metrics.relative_energy_error(get_system("mass_spring").energy(prediction))}
    paths = write_plots(tmp_path, t, prediction, reference=reference, energy_errors=energy,
                        system=get_system("mass_spring"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "energy_error.png", "phase_portrait.png", "prediction_vs_reference.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in paths.values())


def test_integer_states_are_refused_for_their_dtype_not_their_shape():
    from hnnlab.audit import audit_trajectories
    from hnnlab.errors import InvalidArgumentError

    states = torch.zeros(2, 5, 2, dtype=torch.int64)
    with pytest.raises(InvalidArgumentError) as info:
        audit_trajectories(states, torch.arange(5, dtype=torch.float64))
    assert str(info.value) == (
        "states must be a floating tensor (float32 or float64), got dtype int64 of shape (2, 5, 2); convert with "
        "states.double()"
    )
