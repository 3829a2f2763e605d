"""hnnlab reproduce finzi: the protocol's mathematics on cases with known answers, and a tiny run."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from hnnlab.data.recipes import get_recipe
from hnnlab.errors import InvalidArgumentError
from hnnlab.integrators import get_integrator
from hnnlab.reproduce import finzi
from hnnlab.reproduce.common import Estimate, ReproduceConfig
from hnnlab.rollout import Status, rollout, solve
from hnnlab.systems.chain_pendulum import ChainPendulum

DT = 0.03


def _chain(n: int, seed: int = 3) -> ChainPendulum:
    return ChainPendulum.with_random_parameters(n, torch.Generator().manual_seed(seed))


def _truth(system, n_traj: int, n_steps: int, seed: int = 0) -> torch.Tensor:
    x0 = system.sample_initial_states(n_traj, torch.Generator().manual_seed(seed))
    reference = get_integrator("dopri8", rtol=1e-12, atol=1e-12)
    return rollout(system, reference, x0, DT, n_steps)  # (n_traj, n_steps + 1, 2 * dof)


def test_gmre_equals_a_direct_hand_computation():
    g = torch.Generator().manual_seed(0)
    pred, truth = torch.randn(3, 6, 4, generator=g), torch.randn(3, 6, 4, generator=g)
    expected = []
    for i in range(3):
        logs = []
        for t in range(1, 6):  # the initial time is left out
            d = math.sqrt(sum((float(pred[i, t, k]) - float(truth[i, t, k])) ** 2 for k in range(4)))
            a = math.sqrt(sum(float(pred[i, t, k]) ** 2 for k in range(4)))
            b = math.sqrt(sum(float(truth[i, t, k]) ** 2 for k in range(4)))
            logs.append(math.log(d / (a + b)))
        expected.append(math.exp(sum(logs) / len(logs)))
    got = finzi.gmre_per_trajectory(pred, truth)
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-12)
    overall = Estimate.geometric(got).mean
    assert overall == pytest.approx(math.exp(sum(math.log(e) for e in expected) / 3), rel=1e-12)


def test_true_system_as_the_model_gives_only_integrator_error():
    system = _chain(2)
    truth = _truth(system, 4, 100)
    rk4 = finzi.evaluate_field(system, get_integrator("rk4"), truth[:, 0], truth, DT)
    exact = finzi.evaluate_field(system, get_integrator("dopri8", rtol=1e-12, atol=1e-12), truth[:, 0], truth, DT)
    assert float(rk4["gmre"].max()) < 1e-6  # RK4's global error at dt = 0.03
    assert float(exact["gmre"].max()) < 1e-10  # the same method as the truth: round-off only
    assert bool(rk4["censored"].all()) and torch.allclose(rk4["vpt"], torch.full((4,), 3.0, dtype=torch.float64))


def test_time_rescaled_field_gives_the_hand_computed_error():
    # f = 2 f_true runs the true flow at double speed: its prediction at step k is the truth at step 2k.
    system = _chain(2)
    long = _truth(system, 3, 40)
    truth = long[:, :21]

    def fast(t, x):
        return 2.0 * system.vector_field(t, x)

    result = finzi.evaluate_field(fast, get_integrator("dopri8", rtol=1e-12, atol=1e-12), truth[:, 0], truth, DT)
    expected_pred = long[:, ::2]  # (3, 21, 4)
    num = (expected_pred - truth).norm(dim=-1)[:, 1:]
    den = (expected_pred.norm(dim=-1) + truth.norm(dim=-1))[:, 1:]
    expected = (num / den).log().mean(dim=1).exp()
    assert torch.allclose(result["gmre"], expected, rtol=1e-6)
    assert float(expected.min()) > 1e-3  # a large, genuine error, not round-off


def test_canonical_model_is_measured_on_q_and_q_dot():
    lagrangian = _chain(2)
    hamiltonian = lagrangian.hamiltonian_form()
    truth_l = _truth(lagrangian, 3, 30)
    truth_h = hamiltonian.from_lagrangian(truth_l)
    exact = finzi.evaluate_field(hamiltonian, get_integrator("rk4"), truth_h[:, 0], truth_h, DT,
                                 to_lagrangian=lagrangian.from_canonical, truth_lagrangian=truth_l)
    assert float(exact["gmre"].max()) < 1e-6 and float(exact["gmre_own"].max()) < 1e-6
    # A wrong Hamiltonian (heavier masses): the headline number is the GMRE of M^-1 p against q_dot.
    wrong = type(hamiltonian)(n=2, masses=tuple(1.2 * m for m in hamiltonian.masses), lengths=hamiltonian.lengths)
    result = finzi.evaluate_field(wrong, get_integrator("rk4"), truth_h[:, 0], truth_h, DT,
                                  to_lagrangian=lagrangian.from_canonical, truth_lagrangian=truth_l)
    by_hand = lagrangian.from_canonical(rollout(wrong, "rk4", truth_h[:, 0], DT, 30))
    rel = ((by_hand - truth_l).norm(dim=-1) / (by_hand.norm(dim=-1) + truth_l.norm(dim=-1)))[:, 1:]
    assert torch.allclose(result["gmre"], rel.log().mean(dim=1).exp(), rtol=1e-10)
    assert not torch.allclose(result["gmre"], result["gmre_own"])  # the two coordinate systems differ


def test_same_seed_gives_the_same_chain_and_physical_states_in_both_forms():
    overrides = {"system_params": {"n": 2}, "n_traj": 10, "n_times": 11}
    lag = get_recipe(finzi.RECIPE, **overrides).build(5)
    can = get_recipe(finzi.RECIPE, system=finzi.HAMILTONIAN_SYSTEM, **overrides).build(5)
    params_l, params_h = lag.metadata["system"]["params"], can.metadata["system"]["params"]
    assert params_l["masses"] == params_h["masses"] and params_l["lengths"] == params_h["lengths"]
    assert all(0.6 <= v <= 1.4 for v in (*params_l["masses"], *params_l["lengths"]))
    system = ChainPendulum(**params_l)
    for split in ("train", "val", "test"):
        xl, xh = lag.splits[split].state, can.splits[split].state
        assert torch.allclose(system.to_canonical(xl[:, 0]), xh[:, 0], rtol=0, atol=1e-13)
        assert torch.allclose(system.to_canonical(xl), xh, rtol=0, atol=1e-9)


def test_perturbed_floor_is_zero_without_perturbation_and_linear_in_eps():
    system = _chain(1)
    truth = _truth(system, 5, 100)

    def floor(eps):
        pert = finzi.perturbed_floor(system, truth, DT, eps, torch.Generator().manual_seed(1))
        return finzi.gmre_per_trajectory(pert, truth)

    assert torch.equal(floor(0.0), torch.zeros(5, dtype=torch.float64))
    small, double = floor(1e-6), floor(2e-6)
    assert torch.allclose(double / small, torch.full_like(small, 2.0), rtol=1e-3)  # linearised flow


def test_masked_rollouts_keep_finite_trajectories_and_mark_the_rest():
    def field(t, x):  # q' = q^2 blows up at t = 1 / q0
        return torch.cat([x[..., :1] ** 2, torch.zeros_like(x[..., 1:])], dim=-1)

    x0 = torch.tensor([[0.1, 0.0], [100.0, 0.0]], dtype=torch.float64)
    solution = solve(field, get_integrator("rk4"), x0, DT, 50)  # what evaluate_field rolls out with
    out = solution.ys
    alone = solve(field, get_integrator("rk4"), x0[:1], DT, 50).ys
    assert solution.status.tolist() == [Status.OK, Status.NONFINITE]
    assert torch.equal(out[0], alone[0])
    assert bool(torch.isnan(out[1, -1]).all())
    gmre = finzi.gmre_per_trajectory(out, alone.expand(2, -1, -1))
    assert float(gmre[0]) == 0.0
    assert 0.5 < float(gmre[1]) <= 1.0  # non-finite steps count as rel = 1


def test_per_step_cosine_schedule():
    p = torch.nn.Parameter(torch.zeros(3))
    optimizer = finzi.per_step_cosine(0.1, 0.0, 10)([p])
    lrs = []
    for _ in range(10):
        p.grad = torch.ones(3)
        optimizer.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[4] == pytest.approx(0.05)  # after 5 of 10 steps: lr (1 + cos(pi / 2)) / 2
    assert lrs[-1] == pytest.approx(0.0, abs=1e-15)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["weight_decay"] == 0.0


def test_bad_task_model_and_setting_are_refused(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"unknown task '4-link'; available: 1-link, 2-link, 3-link, 5-link"):
        finzi.run(ReproduceConfig(out=tmp_path, results=tmp_path, tasks=("4-link",), wandb=False))
    with pytest.raises(InvalidArgumentError, match=r"unknown model 'GNN'; available: NODE, HNN"):
        finzi.settings(ReproduceConfig(extra={"models": ("GNN",)}, wandb=False))
    with pytest.raises(InvalidArgumentError, match=r"unknown setting 'epochs'; settings: n_traj, steps"):
        finzi.settings(ReproduceConfig(extra={"epochs": 3}, wandb=False))
    with pytest.raises(InvalidArgumentError, match=r"steps must be an integer >= 1, got 0"):
        finzi.settings(ReproduceConfig(extra={"steps": 0}, wandb=False))
    with pytest.raises(InvalidArgumentError, match=r"model_steps names an unknown model 'GNN'; available: NODE"):
        finzi.settings(ReproduceConfig(extra={"model_steps": {"GNN": 3}}, wandb=False))
    with pytest.raises(InvalidArgumentError, match=r"model_steps\['CHNN'\] must be an integer >= 1, got 0.5"):
        finzi.settings(ReproduceConfig(extra={"model_steps": {"CHNN": 0.5}}, wandb=False))


def test_model_steps_override_the_steps_of_the_models_they_name():
    cpu = finzi.settings(ReproduceConfig(wandb=False))
    assert cpu["model_steps"] == {"CHNN": 600, "CLNN": 600} and cpu["steps"] == 2000
    assert finzi.model_steps(cpu, "CHNN") == 600 and finzi.model_steps(cpu, "NODE") == 2000
    # steps given without model_steps apply to every model; a model outside the run is dropped from the mapping
    assert finzi.settings(ReproduceConfig(extra={"steps": 7}, wandb=False))["model_steps"] == {}
    only = finzi.settings(ReproduceConfig(extra={"models": ("NODE", "CHNN"), "model_steps": {"CHNN": 3, "CLNN": 4}},
                                          wandb=False))
    assert only["model_steps"] == {"CHNN": 3} and finzi.model_steps(only, "NODE") == 2000


def test_tiny_end_to_end_run_writes_the_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = ReproduceConfig(
        out=tmp_path / "work", results=tmp_path / "results", tasks=("1-link",), wandb=False,
        extra={"n_traj": 20, "steps": 2, "batch_size": 16, "n_eval": 2, "hidden": (8,), "models": ("NODE", "HNN")},
    )
    summary = finzi.run(cfg)
    md = summary["markdown"].read_text()
    assert summary["markdown"] == tmp_path / "results" / "finzi.md"
    assert "| task | NODE, published | NODE, hnnlab | HNN, published | HNN, hnnlab |" in md
    assert "CHNN (constrained, Cartesian; not reproduced)" in md
    assert "- Finding, NODE (hnnlab vs published): 1-link " in md
    assert "- Finding, HNN vs NODE at equal steps: the paper's HNN beats its NODE on every task; here" in md
    with summary["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    every = [r for r in rows if r["section"] == "Every row"]
    assert [(r["model"], r["source"]) for r in every] == [
        ("NODE", "published"), ("HNN", "published"), ("CHNN (constrained, Cartesian; not reproduced)", "published"),
        ("true system, perturbed x0 (paper's floor)", "published"), ("true system, perturbed x0", "hnnlab"),
        ("NODE", "hnnlab"), ("HNN", "hnnlab"),
    ]
    node, hnn = every[5], every[6]
    assert float(node["published"]) == 3.8e-4 and float(hnn["published"]) == 1.2e-4
    for row in (node, hnn):
        assert 0 < float(row["gmre"]) <= 1 and float(row["gmre_stderr"]) >= 0
    assert hnn["gmre_own"] != "" and node["gmre_own"] == ""
    assert 0 < float(every[4]["gmre"]) < 1e-2  # the floor
    raw = json.loads((tmp_path / "results" / "finzi.json").read_text())
    assert raw["settings"]["steps"] == 2 and set(raw["tasks"]["1-link"]["models"]) == {"NODE", "HNN"}
    png = tmp_path / "results" / "finzi" / "rel_error.png"
    assert png.exists() and png.stat().st_size < 200_000
    assert [r["model"] for r in summary["rows"]] == [r["model"] for r in every]


@pytest.mark.parametrize("label", ["NODE", "HNN", "SecondOrderNODE", "LNN"])
def test_model_initialisation_depends_on_the_seed_only(label):
    sizes = {"hidden": (8, 8), "activation": "softplus"}
    spec = finzi.MODELS[label]
    first = finzi.build_model(spec, 2, sizes, seed=4)
    torch.rand(7)  # the global RNG state must not matter
    again = finzi.build_model(spec, 2, sizes, seed=4)
    other = finzi.build_model(spec, 2, sizes, seed=5)
    for a, b in zip(first.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, c) for a, c in zip(first.parameters(), other.parameters(), strict=True))
    x = torch.randn(3, 4)
    assert first.vector_field(0.0, x).shape == (3, 4)
    assert spec.coordinates == first.coordinates


def test_committed_results_page_is_rendered_again_byte_for_byte_from_its_json(tmp_path, monkeypatch):
    """The findings and notes come from templates/finzi.md and the tables from the raw numbers: the page, CSV
    and JSON written from the committed finzi.json are the committed files (but for the machine line)."""
    from pathlib import Path

    from hnnlab.reproduce.common import load_raw

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    raw = load_raw(results / "finzi.json")
    seconds = raw.pop("seconds")
    del raw["rows"], raw["summary"]  # derived: written again from the rest
    monkeypatch.chdir(tmp_path)  # the page names its plot by the relative path benchmarks/results/finzi/...
    cfg = ReproduceConfig(out=tmp_path / "work", results=Path("benchmarks/results"), seeds=(0,))
    page = finzi.write_page(cfg, raw, seconds, finzi.MODELS)

    def without_machine_line(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if not line.startswith("Machine: "))

    committed = (results / "finzi.md").read_text()
    assert without_machine_line(page["markdown"].read_text()) == without_machine_line(committed)
    assert page["csv"].read_bytes() == (results / "finzi.csv").read_bytes()
    assert (cfg.results / "finzi.json").read_bytes() == (results / "finzi.json").read_bytes()
    assert page["plot"].stat().st_size > 1000


@pytest.mark.usefixtures("wandb_disabled_one_thread")
def test_cartesian_views_map_the_true_chain_onto_the_angle_and_cartesian_truth(tmp_path):
    """The constrained models' coordinates: the true Cartesian chain rolled out from the Cartesian test states, mapped
    to angles (turns matched) and to (x, v), has the GMRE of the true angle chain (both at the integrator's error)."""
    cfg = ReproduceConfig(out=tmp_path, results=tmp_path, wandb=False,
                          extra={"n_traj": 20, "n_eval": 2, "models": ("CHNN", "CLNN")})
    sizes = finzi.settings(cfg)
    data = finzi.build_task_data(cfg, "1-link", 0, sizes)
    rk4 = get_integrator("rk4")
    angle = finzi.evaluate_field(data.system, rk4, data.test_lagrangian[:, 0], data.test_lagrangian, DT)
    bound = 10 * float(angle["gmre"].max())  # rk4's own error at dt (about 1e-8 here)
    for coordinates, system in (("cartesian_canonical", finzi._canonical_form(data.cartesian)),
                                ("cartesian_lagrangian", data.cartesian)):
        truth, views = finzi._views(coordinates, data)
        assert truth.shape == (2, 101, 4)
        result = finzi.evaluate_field(system, rk4, truth[:, 0], truth, DT, **views)
        assert float(result["gmre"].max()) < bound and float(result["gmre_cartesian"].max()) < bound, bound
    turned = finzi._same_turn(data.test_lagrangian + torch.tensor([2 * math.pi, 0.0], dtype=torch.float64),
                              data.test_lagrangian)
    torch.testing.assert_close(turned, data.test_lagrangian, rtol=0, atol=1e-14)


@pytest.mark.usefixtures("wandb_disabled_one_thread")
def test_tiny_run_with_the_constrained_models_has_cartesian_columns(tmp_path):
    cfg = ReproduceConfig(
        out=tmp_path / "work", results=tmp_path / "results", tasks=("1-link",), wandb=False,
        extra={"n_traj": 20, "steps": 2, "batch_size": 16, "n_eval": 2, "hidden": (8,), "models": ("HNN", "CHNN")},
    )
    summary = finzi.run(cfg)
    md = summary["markdown"].read_text()
    assert ("## Published table beside hnnlab's (GMRE on Cartesian (x, v), the paper's coordinates; lower is better)\n"
            "\n| task | NODE, published | HNN, published | HNN, hnnlab | CHNN, published | CHNN, hnnlab | floor, "
            "published | floor, hnnlab |") in md
    assert "GMRE on Cartesian (x, v) (the paper's coordinates)" in md  # the column of every row
    rows = {r["model"]: r for r in summary["rows"] if r["source"] == "hnnlab"}
    chnn = rows["CHNN"]
    assert chnn["published"] == 6.1e-5 and 0 < chnn["gmre_cartesian"].mean <= 1 and 0 < chnn["gmre"].mean <= 1
    assert 0 < rows["HNN"]["gmre_cartesian"].mean <= 1
    assert 0 < rows["true system, perturbed x0"]["gmre_cartesian"].mean < 1e-2
    # the headline (Cartesian) values are the ones in the summary table
    (line,) = [ln for ln in md.splitlines() if ln.startswith("| 1-link | 3.8e-04 |")]
    assert f"{chnn['gmre_cartesian'].mean:.3e}" in line and f"{rows['HNN']['gmre_cartesian'].mean:.3e}" in line
    assert "- Finding, the constrained HNN (goal: within 2x of the published CHNN" in md
