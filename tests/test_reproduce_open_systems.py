"""hnnlab reproduce open-systems: the measures on cases with known answers, and a tiny run."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from hnnlab.errors import InvalidArgumentError
from hnnlab.reproduce import open_systems, open_systems_report
from hnnlab.reproduce.common import ReproduceConfig, load_raw
from tests.test_models_phnn import true_model

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


@pytest.mark.parametrize(("task", "damping"), [("duffing", 0.3), ("forced_pendulum", 0.5),
                                               ("spring_damper_chain", 0.1), ("mass_spring_phlearn", 0.3)])
def test_recovered_damping_of_the_true_system_and_network_is_the_damping_coefficient(task, damping):
    system = open_systems.CASES[task].make_system()
    assert open_systems.true_damping(system) == pytest.approx(damping, rel=1e-12)
    x = system.sample_initial_states(16, torch.Generator().manual_seed(1))
    t = torch.linspace(0, 5, 16, dtype=torch.float64)
    u = torch.randn(16, system.n_inputs, dtype=torch.float64) if system.n_inputs else None
    assert open_systems.recovered_damping(true_model(system), t, x, u, system.dof) == pytest.approx(damping, rel=1e-12)


def test_the_phlearn_task_is_the_linear_damped_forced_oscillator():
    system = open_systems.CASES["mass_spring_phlearn"].make_system()
    x = torch.tensor([[0.7, -0.4]], dtype=torch.float64)
    t = 1.3
    expected = torch.tensor([[-0.4, -0.7 - 0.3 * -0.4 + 0.5 * math.cos(math.pi / 2 * t)]], dtype=torch.float64)
    torch.testing.assert_close(system(t, x), expected, rtol=0, atol=1e-15)


def test_spread_and_cells():
    s = open_systems_report.spread([3.0, 1.0, 2.0, 10.0])
    assert s == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    assert open_systems_report.cell(s) == "2.5 [1, 10]"
    assert open_systems_report.cell(open_systems_report.spread([0.5])) == "0.5"
    assert open_systems_report.cell(open_systems_report.spread([1.0, math.nan])) == "–"  # a failed seed shows


def test_the_driven_node_sees_the_time_and_the_inputs():
    torch.manual_seed(0)
    node = open_systems.DrivenNODE(3, n_inputs=1, hidden=(8,)).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    u = torch.randn(5, 1, dtype=torch.float64)
    out = node.field_with_inputs(t, x, u)
    assert out.shape == (5, 6) and node.time_dependent and not node.conservative
    assert not torch.allclose(out, node.field_with_inputs(t + 1, x, u))  # depends on the time
    assert not torch.allclose(out, node.field_with_inputs(t, x, u + 1))  # and on the inputs
    manual = node.net(torch.cat([x, t[:, None], u], dim=-1))
    torch.testing.assert_close(out, manual, rtol=0, atol=0)


def test_unknown_settings_and_models_are_refused():
    with pytest.raises(InvalidArgumentError, match="open-systems: unknown setting 'epochs'; settings: n_traj"):
        open_systems.settings(ReproduceConfig(extra={"epochs": 3}))
    with pytest.raises(InvalidArgumentError, match="open-systems: unknown model 'hnn'; available: phnn, node, dhnn"):
        open_systems.settings(ReproduceConfig(extra={"models": ("hnn",)}))


@pytest.mark.slow  # ~15 s idle, 27 s on the busy 2-core machine: 8 tiny trainings
@pytest.mark.slow  # ~14 s on the busy 2-core machine
def test_tiny_run_through_driven_rollout_windows(tmp_path):
    # loss="rollout": every model trained through rk4 windows (the chain's with their inputs, the NODE's and the
    # PHNN's from their own start times); 60 steps of the NODE lower its test error against its initial weights.
    cfg = ReproduceConfig(out=tmp_path / "work", results=tmp_path / "results", tasks=("spring_damper_chain",),
                          wandb=False, extra={"n_traj": 3, "n_test": 2, "steps": 60, "hidden": (8,),
                                              "models": ("node",), "loss": "rollout", "window": 3})
    open_systems.run(cfg)
    raw = json.loads((cfg.results / "open_systems.json").read_text())
    trained = next(r for r in raw["rows"] if r["model"] == "node")
    system = open_systems.CASES["spring_damper_chain"].make_system()
    _, _, tests = open_systems.build_data(open_systems.CASES["spring_damper_chain"], "spring_damper_chain", 3, 2, 0,
                                          tmp_path / "again")
    torch.manual_seed(0)
    untrained = open_systems.evaluate(open_systems.build_model("node", system, (8,)), system,
                                      *tests["sinusoids (seen)"], open_systems.settings(cfg))
    assert trained["rmse_t1"] < 0.9 * untrained["rmse_t1"], (trained, untrained)  # measured 0.364 vs 0.439
    with pytest.raises(InvalidArgumentError, match="open-systems: loss must be 'derivative' or 'rollout', got 'l2'"):
        open_systems.settings(ReproduceConfig(extra={"loss": "l2"}))


def test_tiny_run_writes_the_page_the_table_and_the_plot(tmp_path, capsys):
    cfg = ReproduceConfig(out=tmp_path / "work", results=tmp_path / "results", seeds=(0, 1),
                          tasks=("duffing", "spring_damper_chain"), wandb=False,
                          extra={"n_traj": 3, "n_test": 2, "steps": 4, "hidden": (8,), "models": ("phnn", "dhnn")})
    summary = open_systems.run(cfg)
    md = summary["markdown"].read_text()
    assert (f"Regenerate with: `hnnlab reproduce open-systems --tasks duffing spring_damper_chain --seeds 0 1 "
            f"--results {tmp_path / 'results'} --set n_traj=3 --set n_test=2 --set steps=4 --set 'hidden=[8]' "
            "--set 'models=[phnn, dhnn]'`") in md
    assert summary["plot"].exists() and summary["plot"].stat().st_size > 10_000
    rows = list(csv.DictReader(summary["csv"].open()))
    per_seed = [r for r in rows if r["section"] == "Every seed"]
    # duffing: floor + 2 models; chain: 2 families x (floor + 2 models); for each of the 2 seeds
    assert len(per_seed) == 2 * (3 + 6)
    raw = json.loads((cfg.results / "open_systems.json").read_text())
    floors = [r for r in raw["rows"] if r["model"] == "true system"]
    assert all(r["balance_residual"] < 2e-3 for r in floors)  # the true trajectories balance on the save grid
    assert {r["test_inputs"] for r in raw["rows"] if r["task"] == "spring_damper_chain"} == {
        "sinusoids (seen)", "steps (unseen)"}
    assert set(raw["forces"]) == {"duffing"} and set(raw["forces"]["duffing"]) == {"0", "1"}
    # the table's median is the median over the seeds of the per-seed numbers
    phnn = [r["rmse_t6"] for r in raw["rows"] if (r["task"], r["model"]) == ("duffing", "phnn")]
    entry = next(s for s in raw["summary"] if (s["task"], s["model"]) == ("duffing", "phnn"))
    assert entry["rmse_t6"]["median"] == pytest.approx(sum(phnn) / 2, rel=1e-12)
    # the page renders again, byte for byte, from its JSON
    page = md
    open_systems_report.write_page(cfg, load_raw(cfg.results / "open_systems.json"))
    assert summary["markdown"].read_text() == page
    assert "open-systems duffing seed 1 (1/2 tasks)" in capsys.readouterr().out
