"""Per-trajectory inputs: interpolation, driven fields stepped by every integrator, input families, simulation.

The reference is exact: the spring-damper chain is linear, ``dx/dt = A x + b u``, so on each sample interval with a
held or linear input the solution is one matrix exponential of the augmented system (state, input, input slope).
"""

from __future__ import annotations

import math

import pytest
import torch

from hnnlab.data import load_dataset, validate, write_dataset
from hnnlab.data.input_families import Sinusoids, Steps, get_input_family
from hnnlab.data.simulate import simulate
from hnnlab.errors import InvalidArgumentError
from hnnlab.inputs import DrivenField, InputSignal
from hnnlab.integrators import get_integrator
from hnnlab.rollout import Status, solve
from hnnlab.systems import get_system

CHAIN = get_system("spring_damper_chain", n=2, c=0.3)
ORDERS = {"euler": 1, "rk4": 4, "implicit_midpoint": 2, "gauss_legendre4": 4}


def _signal(interpolation: str, batch: int = 3, n_times: int = 9, spacing: float = 0.5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n_times, dtype=torch.float64) * spacing
    return InputSignal(t, torch.randn(batch, n_times, 1, generator=g, dtype=torch.float64), interpolation)


def _x0(batch: int = 3) -> torch.Tensor:
    return CHAIN.sample_initial_states(batch, torch.Generator().manual_seed(1))


def _exact(x0: torch.Tensor, signal: InputSignal) -> torch.Tensor:
    """The chain's exact solution at the sample times, ``(batch, n_times, 2 * dof)``."""
    width = x0.shape[-1]
    a = torch.func.jacrev(lambda x: CHAIN.field_with_inputs(0.0, x, torch.zeros(1, dtype=x.dtype)))(
        torch.zeros(width, dtype=torch.float64))  # (width, width)
    b = CHAIN.input_map(torch.zeros(width, dtype=torch.float64))[:, 0]  # (width,)
    out = [x0]
    x = x0
    for k in range(signal.t.numel() - 1):
        h = float(signal.t[k + 1] - signal.t[k])
        u0, u1 = signal.values[:, k, 0], signal.values[:, k + 1, 0]
        slope = (u1 - u0) / h if signal.interpolation == "linear" else torch.zeros_like(u0)
        m = torch.zeros(width + 2, width + 2, dtype=torch.float64)  # d/dt (x, u, s) = (A x + b u, s, 0)
        m[:width, :width], m[:width, width], m[width, width + 1] = a, b, 1.0
        aug = torch.cat([x, u0[:, None], slope[:, None]], dim=-1)
        x = (aug @ torch.linalg.matrix_exp(h * m).T)[:, :width]
        out.append(x)
    return torch.stack(out, dim=1)


def test_interpolation_values_one_sided_pieces_and_held_ends():
    t = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    values = torch.tensor([[[1.0], [3.0], [-1.0]]], dtype=torch.float64)
    zoh, linear = InputSignal(t, values, "zoh"), InputSignal(t, values, "linear")
    assert zoh.evaluate(0.999).item() == 1.0 and zoh.evaluate(1.0).item() == 3.0  # right-continuous
    assert zoh.evaluate(1.0, piece=0).item() == 1.0  # the step [0.5, 1] sees its own piece at its end
    assert zoh.evaluate(5.0).item() == -1.0 and zoh.evaluate(-1.0).item() == 1.0
    assert linear.evaluate(0.25).item() == pytest.approx(1.5) and linear.evaluate(1.5).item() == pytest.approx(1.0)
    assert linear.evaluate(2.5).item() == -1.0 and linear.evaluate(-0.5).item() == 1.0
    assert zoh.piece_of(0.5, 0.5) == 0 and zoh.piece_of(1.0, 0.5) == 1 and zoh.piece_of(2.0, 0.5) == 2
    assert zoh.jumps_at(1.0, 0.5) and not zoh.jumps_at(0.5, 0.5) and not linear.jumps_at(1.0, 0.5)
    per_row = linear.evaluate(torch.tensor([0.5]), rows=torch.tensor([0]))
    assert per_row.shape == (1, 1) and per_row.item() == pytest.approx(2.0)


@pytest.mark.parametrize("interpolation", ["zoh", "linear"])
def test_resample_equals_the_signal_at_every_new_time(interpolation):
    # Times before, between, on and after the samples: each resampled value is the right-continuous u(t).
    g = torch.Generator().manual_seed(2)
    signal = InputSignal(torch.tensor([0.0, 0.5, 1.25, 2.0], dtype=torch.float64),
                         torch.randn(3, 4, 2, generator=g, dtype=torch.float64), interpolation)
    t = torch.tensor([-0.3, 0.0, 0.2, 0.5, 0.9, 1.25, 1.7, 2.0, 2.6], dtype=torch.float64)
    resampled = signal.resample(t)
    assert resampled.interpolation == interpolation and torch.equal(resampled.t, t)
    expected = torch.stack([signal.evaluate(float(s)) for s in t], dim=1)  # (3, 9, 2)
    torch.testing.assert_close(resampled.values, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("interpolation", ["zoh", "linear"])
@pytest.mark.parametrize("name", sorted(ORDERS))
def test_fixed_step_methods_keep_their_order_across_input_pieces(name, interpolation):
    signal = _signal(interpolation)
    x0 = _x0()
    exact = _exact(x0, signal)
    f = DrivenField(CHAIN, signal)
    errors = []
    for per_interval in (4, 8):
        ys = solve(f, name, x0, 0.5 / per_interval, 8 * per_interval, per_interval).ys
        errors.append(float((ys - exact).abs().max()))
    order = math.log2(errors[0] / errors[1])
    assert abs(order - ORDERS[name]) < 0.35, (errors, order)


@pytest.mark.parametrize("interpolation", ["zoh", "linear"])
@pytest.mark.parametrize("name", ["dopri5", "dopri8"])
def test_adaptive_methods_reach_their_tolerance_with_per_row_inputs(name, interpolation):
    signal = _signal(interpolation)
    x0 = _x0()
    ys = solve(DrivenField(CHAIN, signal), get_integrator(name, rtol=1e-11, atol=1e-11), x0, 0.5, 8).ys
    assert float((ys - _exact(x0, signal)).abs().max()) < 1e-9


@pytest.mark.parametrize("name", ["rk4", "dopri5", "implicit_midpoint"])
def test_masked_trajectory_leaves_the_others_on_their_own_inputs(name):
    signal = _signal("zoh", batch=4)
    values = signal.values.clone()
    values[1, 1:] = 1e308  # trajectory 1 is pushed to overflow from t = 0.5 (step 4) on
    x0 = _x0(4)
    integrator = get_integrator(name, **({"rtol": 1e-10, "atol": 1e-10} if name == "dopri5" else {}))
    sol = solve(DrivenField(CHAIN, InputSignal(signal.t, values, "zoh")), integrator, x0, 0.125, 32, 4)
    assert sol.status[[0, 2, 3]].tolist() == [Status.OK] * 3 and sol.status[1] != Status.OK
    assert 4 < int(sol.first_bad_step[1]) < 32 and bool(torch.isnan(sol.ys[1, -1]).all())
    keep = torch.tensor([0, 2, 3])
    alone = solve(DrivenField(CHAIN, InputSignal(signal.t, values[keep], "zoh")), integrator, x0[keep], 0.125, 32, 4)
    torch.testing.assert_close(sol.ys[keep], alone.ys, rtol=1e-12, atol=1e-12)


def test_step_straddling_a_sample_is_refused():
    f = DrivenField(CHAIN, _signal("zoh"))
    with pytest.raises(InvalidArgumentError) as info:
        solve(f, "rk4", _x0(), 0.3, 4)
    assert str(info.value) == (
        "the input sample at t = 0.5 lies inside the integrator step [0.3, 0.6]: inputs are piecewise between their "
        "samples, so a step must not straddle one; use a step size that divides the spacing of the input's times "
        "(save_every steps per saved interval)"
    )


def test_bad_signals_and_fields_are_refused():
    t = torch.arange(3, dtype=torch.float64)
    with pytest.raises(InvalidArgumentError, match=r"^interpolation must be one of 'zoh', 'linear', got 'cubic'$"):
        InputSignal(t, torch.zeros(1, 3, 1), "cubic")
    with pytest.raises(InvalidArgumentError, match=r"n_times = 3 \(the times given\), got shape \(1, 4, 1\)"):
        InputSignal(t, torch.zeros(1, 4, 1))
    with pytest.raises(InvalidArgumentError, match="must be finite floating-point"):
        InputSignal(t, torch.full((1, 3, 1), math.nan))
    with pytest.raises(InvalidArgumentError, match="strictly increasing"):
        InputSignal(torch.tensor([0.0, 2.0, 1.0]), torch.zeros(1, 3, 1))
    with pytest.raises(InvalidArgumentError, match=r"^ForcedDuffing takes no inputs \(n_inputs = 0\)"):
        DrivenField(get_system("duffing"), InputSignal(t, torch.zeros(1, 3, 1)))
    with pytest.raises(InvalidArgumentError, match="takes n_inputs = 1 inputs, but the input signal has 2"):
        DrivenField(CHAIN, InputSignal(t, torch.zeros(1, 3, 2)))
    with pytest.raises(InvalidArgumentError, match=r"over 1 trajectories needs states of shape \(1, 2 \* dof\)"):
        DrivenField(CHAIN, InputSignal(t, torch.zeros(1, 3, 1)))(0.0, torch.zeros(2, 4))


def test_families_draw_what_they_document():
    t = torch.arange(201, dtype=torch.float64) * 0.05
    g = torch.Generator().manual_seed(0)
    sines = Sinusoids(n_terms=2, amplitude=0.8, frequency=(1.0, 3.0)).draw(50, t, 2, g)
    assert sines.shape == (50, 201, 2) and float(sines.abs().max()) <= 0.8
    assert torch.equal(sines, Sinusoids(n_terms=2, amplitude=0.8, frequency=(1.0, 3.0)).draw(
        50, t, 2, torch.Generator().manual_seed(0)))
    # the spectrum peaks inside the frequency band
    spectrum = torch.fft.rfft(sines[:, :, 0] - sines[:, :, 0].mean(1, keepdim=True), n=4096).abs().mean(0)
    peak = float(torch.fft.rfftfreq(4096, d=0.05)[spectrum.argmax()]) * 2 * math.pi
    assert 1.0 <= peak <= 3.0
    steps = Steps(n_switches=3, amplitude=2.0).draw(40, t, 1, g)
    changes = (torch.diff(steps[:, :, 0], dim=1) != 0).sum(1)
    assert bool((changes <= 3).all()) and float(changes.float().mean()) > 2.5 and float(steps.abs().max()) <= 2.0
    assert Sinusoids.interpolation == "linear" and Steps.interpolation == "zoh"
    with pytest.raises(InvalidArgumentError, match=r"^unknown input family 'chirp'; known: sinusoids, steps$"):
        get_input_family("chirp")
    with pytest.raises(InvalidArgumentError, match="has no parameter 'levels'; its parameters: n_switches, amplitude"):
        get_input_family("steps", levels=3)
    with pytest.raises(InvalidArgumentError, match=r"frequency must be two numbers \(low, high\)"):
        get_input_family("sinusoids", frequency=(2.0, 1.0))


@pytest.mark.parametrize("family", [Sinusoids(), Steps(n_switches=3)])
def test_simulate_stores_the_inputs_it_integrated_with(family, tmp_path):
    result = simulate(CHAIN, 4, dt=0.25, n_steps=16, integrator="dopri8", inputs=family, seed=3,
                      splits=(0.5, 0.0, 0.5))
    path = write_dataset(tmp_path / "chain.h5", result)
    assert validate(path) == []
    loaded = load_dataset(path)
    assert loaded.metadata["inputs"]["interpolation"] == family.interpolation
    assert loaded.metadata["inputs"]["family"]["name"] == family.name
    for split in loaded.splits.values():
        signal = InputSignal(split.t, split.inputs, family.interpolation)
        torch.testing.assert_close(split.state, _exact(split.state[:, 0], signal), rtol=0, atol=1e-9)
        u = split.inputs.reshape(-1, 1)
        expected = CHAIN.field_with_inputs(split.t.repeat(split.n_traj), split.state.reshape(-1, 4), u)
        torch.testing.assert_close(split.dxdt.reshape(-1, 4), expected, rtol=0, atol=0)
    with pytest.raises(InvalidArgumentError, match="system 'duffing' takes no inputs"):
        simulate(get_system("duffing"), 2, dt=0.1, n_steps=2, inputs=family)


def test_float32_driven_field_keeps_dtype():
    signal = _signal("linear")
    ys = solve(DrivenField(CHAIN, signal), "rk4", _x0().float(), 0.125, 32, 4).ys
    assert ys.dtype == torch.float32
    assert float((ys.double() - _exact(_x0(), signal)).abs().max()) < 1e-4
