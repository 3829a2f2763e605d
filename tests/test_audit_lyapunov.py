"""Lyapunov spectra (hnnlab/audit/lyapunov.py): exact cases, Hamiltonian pairing, a variational-equation
reference for a chaotic Henon-Heiles orbit, learned models, and bad input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from hnnlab.audit.lyapunov import LyapunovWarning, lyapunov_spectrum, lyapunov_spectrum_solution
from hnnlab.errors import IncompatibleIntegratorError, InvalidArgumentError
from hnnlab.models import HNN, SeparableHNN
from hnnlab.rollout import Status
from hnnlab.systems import get_system
from hnnlab.systems.base import AbstractSeparableHamiltonianSystem


@dataclass
class LinearSaddle(AbstractSeparableHamiltonianSystem):
    """``H = (p1^2 + p2^2) / 2 - a^2 q1^2 / 2 + b^2 q2^2 / 2``: a saddle in (q1, p1), an oscillator in (q2, p2).
    At the origin the spectrum is exactly ``{a, 0, 0, -a}``."""

    name: ClassVar[str] = "linear_saddle"
    dof: ClassVar[int] = 2
    a: float = 0.5
    b: float = 1.0

    def kinetic(self, p):
        return 0.5 * (p**2).sum(-1)

    def potential(self, q):
        return -0.5 * self.a**2 * q[..., 0] ** 2 + 0.5 * self.b**2 * q[..., 1] ** 2

    def dq_dt(self, t, x):
        return x[..., 2:]

    def dp_dt(self, t, x):
        return torch.stack([self.a**2 * x[..., 0], -self.b**2 * x[..., 1]], dim=-1)

    def sample_initial_states(self, n, generator, *, dtype=torch.float64, device=None):
        return torch.zeros(n, 4, dtype=dtype, device=device)


def test_linear_saddle_has_exactly_a_0_0_minus_a():
    system = LinearSaddle(a=0.5, b=1.0)
    x0 = torch.zeros(2, 4, dtype=torch.float64)
    spectrum = lyapunov_spectrum(system, x0, dt=0.1, n_steps=1000, renorm_every=20, transient_steps=100)
    assert spectrum.shape == (2, 4) and spectrum.dtype == torch.float64
    # The hyperbolic pair is the discrete map's: exp(+-a dt) up to yoshida4's O(dt^4) error per unit time.
    torch.testing.assert_close(spectrum[:, 0], torch.full((2,), 0.5, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(spectrum[:, 3], torch.full((2,), -0.5, dtype=torch.float64), atol=1e-6, rtol=0)
    assert spectrum[:, 1:3].abs().max() < 1e-3  # the oscillator's rotation: zero (finite-time O(1 / T))
    torch.testing.assert_close(spectrum.sum(-1), torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)


def test_harmonic_oscillator_has_zero_exponents_in_the_dtype_of_x0():
    system = get_system("mass_spring")
    x0 = torch.tensor([[0.5, 0.1], [0.2, -0.3]], dtype=torch.float32)
    spectrum = lyapunov_spectrum(system, x0, dt=0.1, n_steps=1000, renorm_every=20, integrator="leapfrog")
    assert spectrum.dtype == torch.float32 and spectrum.shape == (2, 2)
    assert spectrum.abs().max() < 5e-3
    # Unbatched states give an unbatched spectrum.
    assert lyapunov_spectrum(system, x0[0].double(), dt=0.1, n_steps=10).shape == (2,)


def _henon_heiles_variational(x0: np.ndarray, horizon: float, tau: float = 1.0) -> np.ndarray:
    """Reference spectrum from the variational equations ``dPhi/dt = Df(x) Phi`` (scipy DOP853, rtol 1e-11),
    QR every ``tau`` time units from ``Phi = I``."""
    from scipy.integrate import solve_ivp

    def rhs(t, y):
        x, q2, px, py = y[:4]
        jac = np.array([[0, 0, 1, 0], [0, 0, 0, 1], [-1 - 2 * q2, -2 * x, 0, 0], [-2 * x, -1 + 2 * q2, 0, 0]])
        return np.concatenate([[px, py, -x - 2 * x * q2, -q2 - x * x + q2 * q2], (jac @ y[4:].reshape(4, 4)).ravel()])

    y = np.concatenate([x0, np.eye(4).ravel()])
    logs = np.zeros(4)
    for _ in range(round(horizon / tau)):
        y = solve_ivp(rhs, (0.0, tau), y, method="DOP853", rtol=1e-11, atol=1e-11).y[:, -1]
        q, r = np.linalg.qr(y[4:].reshape(4, 4))
        logs += np.log(np.abs(np.diag(r)))
        y[4:] = (q * np.sign(np.diag(r))).ravel()
    return logs / horizon  # in QR order, which is the order hnnlab's columns take from the same start


def _chaotic_states(n: int) -> torch.Tensor:
    system = get_system("henon_heiles", energy_range=(0.16, 0.165))
    return system.sample_initial_states(n, torch.Generator().manual_seed(1))


def test_finite_time_spectrum_matches_the_variational_equations_on_the_same_orbit():
    # Over a horizon short enough that the two integrations follow the same orbit, the finite-time exponents
    # from the same tangent basis agree to the integrators' accuracy.
    system = get_system("henon_heiles")
    x0 = _chaotic_states(3)
    ours = lyapunov_spectrum_solution(system, x0, dt=0.02, n_steps=1000, renorm_every=50).exponents
    for i in range(3):
        reference = np.sort(_henon_heiles_variational(x0[i].numpy(), horizon=20.0))[::-1]
        np.testing.assert_allclose(ours[i].numpy(), reference, atol=2e-6, rtol=0)


@pytest.mark.slow
def test_chaotic_henon_heiles_l1_is_positive_paired_and_matches_the_reference_within_its_spread():
    system = get_system("henon_heiles")
    x0 = _chaotic_states(6)
    horizon = 200.0
    ours = lyapunov_spectrum(system, x0, dt=0.1, n_steps=2000, renorm_every=10)
    reference = np.stack([np.sort(_henon_heiles_variational(x.numpy(), horizon))[::-1] for x in x0])
    l1, l1_ref = ours[:, 0].numpy(), reference[:, 0]
    assert (l1_ref > 0.02).sum() >= 5 and np.median(l1) > 0.05  # chaos: a clearly positive l1
    spread = l1_ref.std(ddof=1)
    assert abs(l1.mean() - l1_ref.mean()) < 2 * spread, (l1, l1_ref)
    # Hamiltonian structure: pairs +l, -l (finite-time, to O(1 / T)) and an exact zero sum (symplectic map).
    np.testing.assert_allclose(ours[:, 0].numpy(), -ours[:, 3].numpy(), atol=0.01)
    np.testing.assert_allclose(ours[:, 1].numpy(), -ours[:, 2].numpy(), atol=0.01)
    np.testing.assert_allclose(ours.sum(-1).numpy(), 0.0, atol=1e-12)


def test_regular_henon_heiles_orbit_has_l1_tending_to_zero():
    system = get_system("henon_heiles")
    x0 = torch.tensor([[0.0, 0.1, 0.3, 0.0]], dtype=torch.float64)  # E = 0.05: a regular (quasi-periodic) orbit
    l1 = [float(lyapunov_spectrum(system, x0, dt=0.2, n_steps=n, renorm_every=25)[0, 0]) for n in (250, 1000)]
    # Tangent vectors of a quasi-periodic orbit grow polynomially, so the finite-time l1 decays like log(T) / T
    # (measured 0.022, 0.012, 0.008 at T = 50, 200, 400; a chaotic orbit at E ~ 1/6 stays near 0.1).
    assert l1[0] > l1[1] > 0 and l1[1] < 0.6 * l1[0] and l1[1] < 0.015


def test_a_user_defined_system_by_class_path_gets_its_spectrum_with_no_other_change():
    system = get_system("tests.custom_system:Quartic", a=0.5)  # not registered: found by its class path
    x0 = torch.tensor([[0.8, 0.0], [0.3, 0.5]], dtype=torch.float64)
    short, long = (lyapunov_spectrum(system, x0, dt=0.2, n_steps=n, renorm_every=10) for n in (100, 1000))
    assert short.shape == (2, 2) and short.dtype == torch.float64
    # One degree of freedom is integrable: both exponents decay to zero like log(T) / T, and they pair to zero sum.
    assert torch.all(long[:, 0] > 0) and torch.all(long[:, 0] < 0.5 * short[:, 0])
    assert torch.allclose(long.sum(dim=1), torch.zeros(2, dtype=torch.float64), atol=1e-10)


def test_learned_models_get_their_own_spectrum():
    torch.manual_seed(0)
    x0 = get_system("mass_spring").sample_initial_states(3, torch.Generator().manual_seed(0))
    for model, integrator in ((SeparableHNN(1).double(), "leapfrog"), (HNN(1).double(), "implicit_midpoint")):
        spectrum = lyapunov_spectrum(model, x0, dt=0.1, n_steps=40, renorm_every=5, integrator=integrator)
        assert spectrum.shape == (3, 2) and torch.isfinite(spectrum).all()
        # A symplectic integrator on a Hamiltonian model: the discrete map preserves volume, the sum is zero.
        torch.testing.assert_close(spectrum.sum(-1), torch.zeros(3, dtype=torch.float64), atol=1e-8, rtol=0)


def test_n_exponents_gives_the_leading_ones():
    system = LinearSaddle(a=0.5)
    x0 = torch.zeros(1, 4, dtype=torch.float64)
    leading = lyapunov_spectrum(system, x0, dt=0.1, n_steps=500, renorm_every=20, n_exponents=1,
                                transient_steps=100)
    assert leading.shape == (1, 1)
    torch.testing.assert_close(leading[0, 0], torch.tensor(0.5, dtype=torch.float64), atol=1e-6, rtol=0)


def test_a_trajectory_that_blows_up_is_marked_and_the_others_go_on():
    def blowup(t, x):  # dq/dt = q^2 (finite-time blow-up from q > 0), dp/dt = 0; row-wise
        return torch.stack([x[:, 0] ** 2, torch.zeros_like(x[:, 1])], dim=-1)

    x0 = torch.tensor([[10.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    result = lyapunov_spectrum_solution(blowup, x0, dt=0.01, n_steps=1000, renorm_every=10, integrator="rk4")
    assert result.status.tolist() == [int(Status.NONFINITE), int(Status.OK)]
    assert 1 <= int(result.first_bad_step[0]) <= 20 and int(result.first_bad_step[1]) == -1
    assert torch.isnan(result.exponents[0]).all() and torch.isfinite(result.exponents[1]).all()
    with pytest.warns(LyapunovWarning, match=r"1 of 2 trajectories turned non-finite or failed to step: 0 \(step"):
        lyapunov_spectrum(blowup, x0, dt=0.01, n_steps=1000, renorm_every=10, integrator="rk4")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_exponents": 0}, "n_exponents must be an integer in 1..2 (2 * dof), got 0"),
        ({"n_exponents": 3}, "n_exponents must be an integer in 1..2 (2 * dof), got 3"),
        ({"renorm_every": 0}, "renorm_every must be an integer >= 1, got 0"),
        ({"n_steps": 0}, "n_steps must be an integer >= 1, got 0"),
        ({"transient_steps": -1}, "transient_steps must be an integer >= 0, got -1"),
    ],
)
def test_bad_arguments_are_refused_before_any_step(kwargs, message):
    args = {"dt": 0.1, "n_steps": 10, **kwargs}
    x0 = torch.zeros(1, 2, dtype=torch.float64)
    with pytest.raises(InvalidArgumentError) as excinfo:
        lyapunov_spectrum(get_system("mass_spring"), x0, **args)
    assert str(excinfo.value) == message


def test_a_splitting_method_on_a_non_separable_model_is_refused():
    x0 = torch.zeros(1, 2, dtype=torch.float64)
    with pytest.raises(IncompatibleIntegratorError, match="integrator 'leapfrog' is symplectic only for a separable"):
        lyapunov_spectrum(HNN(1).double(), x0, dt=0.1, n_steps=10, integrator="leapfrog")


def test_lyapunov_audit_of_a_chaotic_system_speaks_lyapunov_times():
    from hnnlab.audit.lyapunov import lyapunov_audit
    from hnnlab.rollout import rollout

    system = get_system("henon_heiles")
    x0 = _chaotic_states(4)
    t = torch.arange(301, dtype=torch.float64) * 0.5
    reference = rollout(system, get_integrator_dopri8(), x0, 0.5, 300)
    vpt = torch.tensor([10.0, 20.0, 30.0, 40.0], dtype=torch.float64)
    audit = lyapunov_audit(system, x0, dt=0.1, n_steps=1000, model=system, model_integrator="leapfrog", vpt=vpt,
                           reference=reference, t=t, vpt_threshold=0.1)
    assert audit.chaotic and audit.integrator == "yoshida4" and audit.n_states == 4
    assert 0.03 < audit.reference_l1 < 0.3 and audit.lyapunov_time == pytest.approx(1 / audit.reference_l1)
    assert audit.model_l1 == pytest.approx(audit.reference_l1, rel=0.2)  # the system as its own model
    assert audit.vpt_lyapunov is not None and 10 * audit.reference_l1 * 0.5 < audit.vpt_lyapunov
    # The floor: a perturbation of 1e-4 grows like exp(l1 t) to the threshold within the horizon.
    assert audit.floor_vpt is not None and 0 < audit.floor_vpt < 150
    assert audit.floor_vpt_lyapunov == pytest.approx(audit.floor_vpt * audit.reference_l1, rel=0.5)
    assert audit.note.startswith("chaotic: l1 = ")


def test_lyapunov_audit_of_a_regular_system_says_prediction_is_not_limited_by_chaos():
    from hnnlab.audit.lyapunov import lyapunov_audit

    system = get_system("mass_spring")
    x0 = system.sample_initial_states(3, torch.Generator().manual_seed(0))
    audit = lyapunov_audit(system, x0, dt=0.1, n_steps=200, vpt=torch.ones(3, dtype=torch.float64))
    assert not audit.chaotic and audit.lyapunov_time is None and audit.vpt_lyapunov is None
    assert audit.note.endswith("the prediction time is not limited by chaos")


def get_integrator_dopri8():
    from hnnlab.integrators import get_integrator

    return get_integrator("dopri8", rtol=1e-12, atol=1e-12)


def test_audit_trajectories_adds_the_lyapunov_section_and_its_rows():
    from hnnlab.audit import audit_trajectories
    from hnnlab.rollout import rollout

    system = get_system("henon_heiles")
    x0 = _chaotic_states(3)
    states = rollout(system, "yoshida4", x0, 0.1, 1000, save_every=10)
    t = torch.arange(states.shape[1], dtype=torch.float64)
    report = audit_trajectories(states, t, system=system, reference=states.clone(), integrator="yoshida4",
                                dt=0.1, save_every=10, lyapunov=True, lyapunov_steps=1000, check_structure=False)
    assert report.lyapunov is not None and report.lyapunov.chaotic
    assert report.lyapunov.vpt_lyapunov == pytest.approx(100 * report.lyapunov.reference_l1, rel=0.3)
    labels = [row[0] for row in report.rows()]
    assert "Lyapunov time 1 / l1" in labels and "valid prediction time in Lyapunov times (median)" in labels
    assert report.to_dict()["lyapunov"]["chaotic"] is True
    without = audit_trajectories(states, t, system=system, check_structure=False)
    assert without.lyapunov is None


def test_hnnlab_audit_lyapunov_on_a_regular_dataset(spring_file, tmp_path, capsys):
    import json

    from hnnlab.cli import main

    out = tmp_path / "report.json"
    assert main(["audit", str(spring_file), "--lyapunov", "--lyapunov-steps", "200", "--json", str(out),
                 "--no-structure"]) == 0
    section = json.loads(out.read_text())["lyapunov"]
    assert section["chaotic"] is False and section["lyapunov_time"] is None
    assert section["note"].endswith("the prediction time is not limited by chaos")
    assert "Lyapunov verdict" in capsys.readouterr().out
    assert main(["audit", str(spring_file), "--lyapunov", "--lyapunov-steps", "0"]) == 2
    assert "--lyapunov-steps must be an integer >= 1, got 0" in capsys.readouterr().err
