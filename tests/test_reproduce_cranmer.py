"""The Cranmer et al. (2020) reproduction: its protocol's mathematics on cases with known answers, and a
tiny end-to-end run."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch import nn

from hnnlab.errors import InvalidArgumentError
from hnnlab.reproduce import cranmer
from hnnlab.reproduce.common import ReproduceConfig
from hnnlab.systems import get_system


@pytest.fixture
def system():
    return get_system("double_pendulum")


@pytest.fixture
def x0(system):
    return system.sample_initial_states(4, torch.Generator().manual_seed(3))


def test_max_potential_is_the_largest_potential_energy(system):
    upright = torch.tensor([math.pi, math.pi], dtype=torch.float64)
    assert float(system.potential(upright)) == pytest.approx(cranmer.MAX_POTENTIAL, rel=1e-12)


def test_true_system_gives_only_integration_error(system, x0):
    ev = cranmer.evaluate(system, system, x0, t_end=2.0, n_times=21, rtol=1e-10)
    assert ev.energy_error.shape == (4, 21)
    assert float(ev.energy_error[:, 0].abs().max()) == 0.0
    assert float(ev.worst.max()) < 1e-8
    loose = cranmer.evaluate(system, system, x0, t_end=2.0, n_times=21, rtol=1e-4)
    assert float(loose.worst.max()) > 100 * float(ev.worst.max())  # the metric does see integration error


def test_constant_drift_field_gives_the_hand_computed_energy_error(system):
    # dtheta/dt = c and domega/dt = 0 from omega = 0: theta(t) = theta0 + c t, omega stays 0, so the
    # error is |V(theta0 + c T) - V(theta0)| / 29.4 with V = -2 g cos(theta1) - g cos(theta2).
    c = torch.tensor([0.3, -0.7], dtype=torch.float64)

    def field(t, x):
        return torch.cat([c.expand_as(x[..., :2]), torch.zeros_like(x[..., 2:])], dim=-1)

    theta0 = torch.tensor([[0.2, 1.0], [2.5, -0.4]], dtype=torch.float64)
    x0 = torch.cat([theta0, torch.zeros_like(theta0)], dim=-1)
    ev = cranmer.evaluate(field, system, x0, t_end=3.0, n_times=31, rtol=1e-8)
    g = 9.8
    for k, t in enumerate((3.0, 1.5)):
        theta = theta0 + c * t
        v_t = -2 * g * torch.cos(theta[:, 0]) - g * torch.cos(theta[:, 1])
        v_0 = -2 * g * torch.cos(theta0[:, 0]) - g * torch.cos(theta0[:, 1])
        expected = (v_t - v_0).abs() / 29.4
        column = -1 if k == 0 else 15
        torch.testing.assert_close(ev.energy_error[:, column], expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ev.final, ev.energy_error[:, -1])
    assert torch.equal(ev.worst, ev.energy_error.max(dim=1).values)


class _ScaledEnergy(nn.Module):
    """A stand-in 'model' whose energy is ``a E_true + b`` (an LNN's energy is only defined up to that)."""

    def __init__(self, system, a: float, b: float) -> None:
        super().__init__()
        self.system, self.a, self.b = system, a, b
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def energy(self, x):
        return self.a * self.system.energy(x) + self.b


def test_learned_energy_drift_is_the_true_energy_error_after_rescaling(system):
    c = torch.tensor([0.4, 0.9], dtype=torch.float64)

    def field(t, x):
        return torch.cat([c.expand_as(x[..., :2]), torch.zeros_like(x[..., 2:])], dim=-1)

    theta0 = torch.tensor([[0.1, 0.2], [1.0, 3.0], [2.0, -1.0]], dtype=torch.float64)
    x0 = torch.cat([theta0, torch.zeros_like(theta0)], dim=-1)
    ev = cranmer.evaluate(field, system, x0, t_end=2.0, n_times=21, rtol=1e-8)
    drift = cranmer.learned_energy_drift(_ScaledEnergy(system, a=-3.0, b=5.0), system, ev)
    torch.testing.assert_close(drift, ev.worst, rtol=1e-9, atol=1e-12)


class _TrueField(_ScaledEnergy):
    def forward(self, t, x):
        return self.system.vector_field(t, x) + torch.cat([torch.zeros_like(x[..., :2]), self.b + 0 * x[..., 2:]], -1)


def test_acceleration_l1_against_hand_computation(system, x0):
    dxdt = system.vector_field(0.0, x0)
    assert cranmer.acceleration_l1(None, x0, dxdt) == pytest.approx(float(dxdt[:, 2:].abs().mean()), rel=1e-12)
    assert cranmer.acceleration_l1(_TrueField(system, 1.0, 0.0), x0, dxdt) == 0.0
    assert cranmer.acceleration_l1(_TrueField(system, 1.0, 0.25), x0, dxdt, chunk=3) == pytest.approx(0.25)


def test_diverging_trajectory_is_isolated_and_counted(system):
    # dtheta1/dt = theta1^2 blows up at t = 1 / theta1(0); the state at rest at zero stays there.
    def field(t, x):
        return torch.cat([x[..., :1] ** 2, torch.zeros_like(x[..., 1:])], dim=-1)

    x0 = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    ev = cranmer.evaluate(field, system, x0, t_end=2.0, n_times=5, rtol=1e-6)
    assert ev.diverged == 1
    # its own steps follow theta1 = 1 / (1 - t) until the solve fails at the singularity; the others are untouched
    assert torch.equal(ev.states[1, 0], x0[1]) and float(ev.states[1, 1, 0]) == pytest.approx(2.0, rel=1e-5)
    assert torch.isnan(ev.states[1, 3:]).all() and ev.reached.tolist()[1] < 2.0
    assert ev.reached.tolist()[0::2] == [2.0, 2.0]
    assert torch.equal(ev.states[[0, 2]], x0[[0, 2], None].expand(2, 5, 4))
    assert math.isinf(float(ev.final[1])) and float(ev.final[0]) == 0.0


def test_step_budget_leaves_a_stiff_rollout_unfinished(system, x0):
    # a fast rotation (period 2 pi / 500) needs far more than 20 dopri5 steps per trajectory to reach t = 10
    def stiff(t, x):
        return 500.0 * torch.cat([-x[..., 2:], x[..., :2]], dim=-1)

    ev = cranmer.evaluate(stiff, system, x0, t_end=10.0, n_times=11, rtol=1e-8, max_steps=20)
    assert ev.internal_steps.tolist() == [20] * 4
    assert ev.diverged == 4 and bool(torch.isinf(ev.final).all())
    assert bool((ev.reached == 0).all()) and bool((ev.worst == 0).all())  # only t = 0 was reached


def test_what_was_reached_before_the_step_budget_ran_out_is_kept(system, x0):
    full = cranmer.evaluate(system, system, x0, t_end=2.0, n_times=21, rtol=1e-8)
    first = cranmer.evaluate(system, system, x0, t_end=0.5, n_times=6, rtol=1e-8)
    # each trajectory's budget: the steps the slowest needed to reach t = 0.5, far fewer than to reach t = 2
    budget = int(first.internal_steps.max())
    assert budget < int(full.internal_steps.min())
    cut = cranmer.evaluate(system, system, x0, t_end=2.0, n_times=21, rtol=1e-8, max_steps=budget)
    assert all(0.5 <= r < 2.0 for r in cut.reached.tolist()) and cut.diverged == 4
    # the steps are each trajectory's own, so what was reached is the full run's, bit for bit
    assert torch.equal(cut.states[:, :6], full.states[:, :6]) and torch.equal(first.states, full.states[:, :6])
    for i, reached in enumerate(cut.reached.tolist()):
        n = round(reached / 0.1) + 1
        assert torch.equal(cut.states[i, :n], full.states[i, :n]) and torch.isnan(cut.states[i, n:]).all()


def test_blown_up_trajectories_are_frozen_and_counted_from_the_first_time_outside_the_bound(system):
    # domega/dt = omega from theta = 0, omega = (10, 10): E = 250 e^(2t) - 29.4 passes 1000 at t = 0.71; the
    # state at rest stays put; the blown-up one is NaN from t = 0.8, the first saved time outside the bound.
    def pump(t, x):
        return torch.cat([torch.zeros_like(x[..., :2]), x[..., 2:]], dim=-1)

    x0 = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    ev = cranmer.evaluate(pump, system, x0, t_end=3.0, n_times=31, rtol=1e-8)
    energy = system.energy(ev.states[0, :8])
    torch.testing.assert_close(energy, 250 * torch.exp(2 * ev.t[:8]) - 29.4, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(ev.states[0, :8]).all() and torch.isnan(ev.states[0, 8:]).all()
    assert ev.diverged == 1 and ev.reached.tolist() == pytest.approx([0.7, 3.0])
    assert torch.equal(ev.states[1], x0[1].expand(31, 4))


def test_a_finite_time_blow_up_is_frozen_and_does_not_cost_the_batch(system):
    # dtheta1_dot/dt = omega1^2 blows up at t = 1 / omega1(0) = 0.5; the blown-up state is frozen at |E| > 1000,
    # so it stops costing steps, and the other state reaches t = 3 in the steps it needs alone.
    def blow(t, x):
        return torch.cat([x[..., 2:], x[..., 2:3] ** 2, torch.zeros_like(x[..., 3:])], dim=-1)

    x0 = torch.tensor([[0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    ev = cranmer.evaluate(blow, system, x0, t_end=3.0, n_times=31, rtol=1e-8, max_steps=5000)
    alone = cranmer.evaluate(blow, system, x0[1:], t_end=3.0, n_times=31, rtol=1e-8)
    assert int(ev.internal_steps[0]) < 5000 and int(ev.internal_steps[1]) == int(alone.internal_steps[0])
    assert ev.reached.tolist()[1] == 3.0 and 0.3 < ev.reached.tolist()[0] < 0.5
    assert float(ev.final[1]) == 0.0 and math.isinf(float(ev.final[0]))


def test_valid_prediction_time_against_a_shifted_reference(system, x0):
    ev = cranmer.evaluate(system, system, x0, t_end=2.0, n_times=21, rtol=1e-10)
    vpt, censored = cranmer.valid_prediction_times(ev, ev.states)
    assert bool(censored.all()) and torch.equal(vpt, torch.full((4,), 2.0, dtype=torch.float64))
    # a reference that departs from the prediction by a growing offset after t = 1
    offset = torch.zeros_like(ev.states)
    offset[:, 10:, 0] = 10.0
    vpt, censored = cranmer.valid_prediction_times(ev, ev.states + offset)
    assert not bool(censored.any())
    torch.testing.assert_close(vpt, torch.full((4,), 1.0, dtype=torch.float64))


def test_wrapped_models_are_periodic_in_the_angles(x0):
    shift = torch.tensor([2 * math.pi, -4 * math.pi, 0.0, 0.0], dtype=torch.float64)
    for name in cranmer.MODELS:
        for angles in ("features", "wrap"):
            model = cranmer.make_model(name, (16, 16), angles=angles).double()
            torch.testing.assert_close(model(0.0, x0 + shift), model(0.0, x0), rtol=1e-7, atol=1e-7)
        raw = cranmer.make_model(name, (16, 16), angles="raw").double()
        assert not torch.allclose(raw(0.0, x0 + shift), raw(0.0, x0), rtol=1e-3)
    # the wrap jumps at q = 0, the features do not
    below, above = (torch.tensor([[s, 0.5, 0.1, 0.2]], dtype=torch.float64) for s in (-1e-9, 1e-9))
    for angles, continuous in (("features", True), ("wrap", False)):
        model = cranmer.make_model("MLP baseline", (16, 16), angles=angles).double()
        assert torch.allclose(model(0.0, below), model(0.0, above), atol=1e-6) == continuous
    with pytest.raises(InvalidArgumentError, match="angles must be one of features, wrap, raw, got 'polar'"):
        cranmer.make_model("LNN", (8,), angles="polar")


def test_velocity_scale_divides_only_the_velocities(x0):
    s = cranmer.VELOCITY_STD
    assert s == pytest.approx(10 / math.sqrt(3))
    for angles in ("features", "wrap", "raw"):
        front, width = cranmer._angle_input(angles, 2, s)
        unscaled, _ = cranmer._angle_input(angles, 2, 1.0)
        mapped = front(x0)
        assert mapped.shape[-1] == width
        torch.testing.assert_close(mapped[..., -2:], x0[..., 2:] / s, rtol=0, atol=0)
        expected_angles = x0[..., :2] if unscaled is None else unscaled(x0)[..., :-2]
        torch.testing.assert_close(mapped[..., :-2], expected_angles, rtol=0, atol=0)
        # given q alone (the Structured LNN's M(q) and V(q)), only the angles are mapped
        torch.testing.assert_close(front(x0[..., :2]), mapped[..., :-2], rtol=0, atol=0)
    # an LNN on scaled inputs is an LNN: its field is still the Euler-Lagrange field of its own L
    model = cranmer.make_model("LNN", (16, 16), velocity_scale=s).double()
    x = x0.clone().requires_grad_(True)
    e = model.energy(x)
    (grad,) = torch.autograd.grad(e.sum(), x)
    assert float(((grad * model(0.0, x0)).sum(-1)).abs().max()) < 1e-9 * float(grad.abs().max())
    for bad in (0.0, -1.0, math.inf, True):
        with pytest.raises(InvalidArgumentError, match=r"velocity_scale must be a finite number > 0"):
            cranmer.make_model("LNN", (8,), velocity_scale=bad)


def test_structured_lnn_of_the_comparison_has_a_positive_definite_mass_matrix(x0):
    model = cranmer.make_model("Structured LNN", (16, 16), velocity_scale=cranmer.VELOCITY_STD).double()
    q = 10 * torch.randn(50, 2, dtype=torch.float64)
    assert float(torch.linalg.eigvalsh(model.mass_matrix(q)).min()) >= 1e-3 * (1 - 1e-9)
    # functions of the angles only: M and V do not see q_dot
    shifted = x0.clone()
    shifted[:, 2:] += 1.0
    torch.testing.assert_close(model.potential(shifted[:, :2]), model.potential(x0[:, :2]), rtol=0, atol=0)


def test_cranmer_init_has_the_published_layer_scales():
    from hnnlab.models import MLP

    mlp = MLP(4, (600, 600, 600), 1, "softplus")
    cranmer.cranmer_init(mlp, torch.Generator().manual_seed(0))
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    expected = [2.2 / math.sqrt(600), 0.58 / math.sqrt(600), 1.16 / math.sqrt(600), math.sqrt(600)]
    for layer, std in zip(linears, expected, strict=True):
        assert float(layer.weight.detach().std()) == pytest.approx(std, rel=0.1)
        assert layer.bias is None or not bool(layer.bias.any())
    with pytest.raises(InvalidArgumentError, match="init must be 'cranmer' or 'default', got 'xavier'"):
        cranmer.make_model("LNN", (8,), init="xavier")


def test_cosine_learning_rate_per_step():
    p = nn.Parameter(torch.zeros(3))
    opt = cranmer.cosine_adam(1e-2, 1e-4, 10)([p])
    seen = []
    for _ in range(12):
        p.grad = torch.ones(3)
        opt.step()
        seen.append(opt.param_groups[0]["lr"])
    expected = [1e-4 + (1e-2 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(s / 10, 1))) for s in range(1, 13)]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert seen[4] == pytest.approx((1e-2 + 1e-4) / 2)


def test_unknown_task_and_setting_are_refused(tmp_path):
    cfg = ReproduceConfig(out=tmp_path, results=tmp_path, tasks=("triple_pendulum",), wandb=False)
    with pytest.raises(InvalidArgumentError, match="unknown task 'triple_pendulum'; available: double_pendulum"):
        cranmer.run(cfg)
    cfg = ReproduceConfig(out=tmp_path, results=tmp_path, wandb=False, extra={"stepz": 3})
    with pytest.raises(InvalidArgumentError, match="unknown setting 'stepz'; settings: "):
        cranmer.run(cfg)
    cfg = ReproduceConfig(out=tmp_path, results=tmp_path, wandb=False, extra={"check_models": ("HNN",)})
    with pytest.raises(InvalidArgumentError, match="check_models has unknown model 'HNN'"):
        cranmer.run(cfg)


def test_published_budget_is_the_papers_and_cpu_fits():
    assert cranmer.BUDGETS["published"]["steps"] * cranmer.BUDGETS["published"]["batch_size"] == 300 * 2000 * 512
    for sizes in cranmer.BUDGETS.values():
        assert sizes["n_test"] == 40 and sizes["t_end"] == 100.0 and sizes["n_times"] == 1001
        assert set(sizes) == set(cranmer.BUDGETS["cpu"])


def test_tiny_end_to_end_run_writes_the_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    extra = {"n_states": 40, "steps": 2, "batch_size": 16, "hidden": (8,), "n_test": 3, "t_end": 1.0,
             "n_times": 11, "eval_rtol": 1e-6, "check_rtol": 1e-7, "check_models": ("LNN", "MLP baseline"),
             "float32_models": ("MLP baseline",)}
    cfg = ReproduceConfig(out=tmp_path / "out", results=tmp_path / "results", wandb=False, extra=extra)
    summary = cranmer.run(cfg)
    md = summary["markdown"].read_text()
    assert summary["markdown"] == tmp_path / "results" / "cranmer.md"
    for text in ("| LNN | published |", "| MLP baseline | published |", "0.0043", "7.400e-02", "true system"):
        assert text in md
    with summary["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    main = [r for r in rows if r["section"].startswith("Published protocol")]
    assert [(r["model"], r["source"], r["dtype"]) for r in main] == [
        ("LNN", "published", "–"), ("LNN", "hnnlab", "float64"),
        ("MLP baseline", "published", "–"), ("MLP baseline", "hnnlab", "float64"),
        ("MLP baseline", "hnnlab", "float32"), ("Structured LNN", "hnnlab (addition)", "float64"),
    ]
    assert {"metric", "metric_stderr", "diverged"} <= set(rows[0])
    raw = json.loads((tmp_path / "results" / "cranmer.json").read_text())
    seed = raw["seeds"][0]
    # the table's number is the mean of the finite per-state values in the JSON; the others are counted
    for row in main[1], main[3], main[5]:
        per_state = seed["models"][row["model"]]["float64"]["per_state_final"]
        assert len(per_state) == 3
        finite = [v for v in per_state if math.isfinite(v)]
        assert int(row["diverged"]) == 3 - len(finite)
        if finite:
            assert float(row["metric"]) == pytest.approx(sum(finite) / len(finite), rel=1e-12)
    assert int(main[3]["diverged"]) == 0  # a small smooth MLP finishes
    check = [r for r in rows if r["section"].startswith("Evaluation-integrator")]
    assert [r["model"] for r in check] == ["true system", "LNN", "MLP baseline", "Structured LNN"]
    assert float(check[0]["at_rtol"]) < 1e-5  # the true field: only integration error
    # the learned-energy drift is measured for the two Lagrangian models only (the MLP has no energy)
    # (the tiny untrained LNN may blow up, leaving NaN; the Structured LNN's positive mass matrix finishes)
    assert check[2]["drift"] == "" and "drift" in check[1] and 0 <= float(check[3]["drift"]) < 1
    png = tmp_path / "results" / "cranmer" / "energy_error.png"
    assert png.exists() and png.stat().st_size < 200_000
    # one dataset per seed, under cfg.out
    files = sorted((tmp_path / "out").glob("*.h5"))
    assert len(files) == 1


def test_committed_results_page_is_rendered_again_byte_for_byte_from_its_json(tmp_path, monkeypatch):
    """The notes come from templates/cranmer.md and the tables from the per-seed results: the page, CSV and
    JSON written from the committed cranmer.json are the committed files (but for the machine line)."""
    from pathlib import Path

    from hnnlab.reproduce.common import load_raw

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    raw = load_raw(results / "cranmer.json")
    monkeypatch.chdir(tmp_path)  # the JSON names its plot by the relative path benchmarks/results/cranmer/...
    cfg = ReproduceConfig(out=tmp_path / "work", results=Path("benchmarks/results"),
                          seeds=tuple(r["seed"] for r in raw["seeds"]))
    page = cranmer.write_page(cfg, raw["settings"], raw["seeds"], raw["minutes"])

    def without_machine_line(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if not line.startswith("Machine: "))

    committed = (results / "cranmer.md").read_text()
    assert without_machine_line(page["markdown"].read_text()) == without_machine_line(committed)
    assert page["csv"].read_bytes() == (results / "cranmer.csv").read_bytes()
    assert page["json"].read_bytes() == (results / "cranmer.json").read_bytes()
    assert page["plot"].stat().st_size > 1000


def test_notes_name_the_evaluation_the_numbers_came_from():
    """Settings with max_evaluations_factor come from the shared-step evaluation; the current one keeps a step
    size and a step budget per trajectory, and its page says so."""
    from hnnlab.reproduce import cranmer_report

    sizes = cranmer.settings(ReproduceConfig(wandb=False))
    rows = {"main": [], "extra": [], "check": []}
    current = cranmer_report.notes(rows, sizes, ReproduceConfig(wandb=False), 1.0)[4]
    assert current.startswith("Model integrator: hnnlab's dopri5 (max-norm error control, one step size per "
                              "trajectory, at most 1.5x the true system's most steps) at rtol = atol = 1e-05,")
    old = {**sizes, "max_evaluations_factor": 1.5}
    assert "(max-norm error control, shared step over the batch) at rtol" in cranmer_report.notes(
        rows, old, ReproduceConfig(wandb=False), 1.0)[4]
    # the published budget's training samples are the ones the note quotes
    published = cranmer.BUDGETS["published"]
    assert published["steps"] * published["batch_size"] == cranmer_report.PUBLISHED_SAMPLES


def test_per_seed_rows_give_each_seed_its_median_and_range():
    from hnnlab.reproduce.common import Estimate
    from hnnlab.reproduce.cranmer_report import seed_rows

    def seed(s: int, lnn: float, mlp: float) -> dict:
        return {"seed": s, "models": {"LNN": {"float64": {"final": Estimate(lnn)}, "val_l1": 10.0 + s},
                                      "MLP baseline": {"float64": {"final": Estimate(mlp)}, "val_l1": 0.3}}}

    rows = seed_rows([seed(0, 0.627, 0.2), seed(1, 0.233, 0.4), seed(2, 0.557, 0.3), seed(3, 0.1, 0.3)])
    assert [r["model"] for r in rows] == ["LNN", "MLP baseline"]
    assert rows[0]["per_seed"] == "0.627, 0.233, 0.557, 0.1"  # in seed order
    assert rows[0]["median"] == pytest.approx((0.233 + 0.557) / 2)  # an even count: the middle two
    assert rows[0]["range"] == "0.1 - 0.627"
    assert rows[0]["val_l1"] == "10, 11, 12, 13"
    assert seed_rows([seed(0, 0.627, 0.2), seed(1, 0.233, 0.4), seed(2, 0.557, 0.3)])[1]["median"] == 0.3
