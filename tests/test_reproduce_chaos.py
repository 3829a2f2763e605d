"""The chaos benchmark (``hnnlab reproduce chaos``): its statistics, settings, recipes and a tiny end-to-end run."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from hnnlab.errors import InvalidArgumentError
from hnnlab.reproduce import chaos
from hnnlab.reproduce.common import ReproduceConfig, median_interval


def test_median_interval_is_the_sample_median_with_the_asymptotic_width():
    x = torch.randn(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    med, lo, hi = median_interval(x, n_boot=2000, generator=torch.Generator().manual_seed(1))
    assert med == float(x.median()) or med == pytest.approx(float(x.quantile(0.5)), abs=1e-15)
    assert lo < med < hi
    # the median of N(0, 1) has standard error sqrt(pi / 2) / sqrt(n): the 95 % interval is ~ 2 x 1.96 x that
    expected = 2 * 1.96 * math.sqrt(math.pi / 2) / math.sqrt(x.numel())
    assert hi - lo == pytest.approx(expected, rel=0.3)
    # the same generator seed gives the same interval; NaNs are ignored by the median
    again = median_interval(torch.cat([x, torch.tensor([math.nan])]), n_boot=2000,
                                  generator=torch.Generator().manual_seed(1))
    assert math.isfinite(again[0]) and abs(again[0] - med) < 2e-3
    assert all(math.isnan(v) for v in median_interval(torch.empty(0), n_boot=10,
                                                            generator=torch.Generator()))


def test_bad_settings_are_refused_with_what_is_allowed():
    with pytest.raises(InvalidArgumentError, match=r"^chaos: unknown model 'GNN'; available: HNN, SeparableHNN, LNN"):
        chaos.settings(ReproduceConfig(extra={"models": ("GNN",)}, wandb=False))
    with pytest.raises(InvalidArgumentError, match=r"^chaos: n_eval must be an integer >= 100 \(the 95 % intervals"):
        chaos.settings(ReproduceConfig(extra={"n_eval": 99}, wandb=False))
    with pytest.raises(InvalidArgumentError, match=r"^chaos: steps must be an integer >= 1, got 0$"):
        chaos.settings(ReproduceConfig(extra={"steps": 0}, wandb=False))
    with pytest.raises(InvalidArgumentError, match=r"unknown setting 'epochs'; settings: n_traj"):
        chaos.settings(ReproduceConfig(extra={"epochs": 3}, wandb=False))


def test_recipe_has_short_training_and_long_test_trajectories_on_the_task_step():
    task = chaos.TASK_SPECS["henon-heiles-E1/6"]
    sizes = chaos.settings(ReproduceConfig(wandb=False))
    r = chaos.recipe(task, task.canonical, sizes)
    assert r.n_traj == sizes["n_traj"] and r.splits == (1.0, 0.0, 0.0)
    assert r.t_end / (r.n_times - 1) == pytest.approx(task.dt) and r.t_end == pytest.approx(task.train_t_end)
    test = r.test_set
    assert test.n_traj == sizes["n_eval"]
    assert test.n_times == sizes["warmup"] + round(task.test_t_end / task.dt)
    assert test.t_end / (test.n_times - 1) == pytest.approx(task.dt)


@pytest.mark.slow
def test_tiny_run_measures_the_true_chaos_and_writes_the_page(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    # A horizon of 40 time units (about 5 Lyapunov times) instead of the task's 200, to keep the test short.
    label = "henon-heiles-E1/6"
    monkeypatch.setitem(chaos.TASK_SPECS, label, dataclasses.replace(chaos.TASK_SPECS[label], test_t_end=40.0))
    cfg = ReproduceConfig(
        out=tmp_path / "work", results=tmp_path / "results", tasks=(label,), wandb=False,
        extra={**chaos.SMOKE, "models": ("SeparableHNN", "ESN"), "lyapunov_steps": 1500},
    )
    summary = chaos.run(cfg)
    raw = json.loads((tmp_path / "results" / "chaos.json").read_text())
    (res,) = raw["tasks"]["henon-heiles-E1/6"]
    # Henon-Heiles near E = 1/6 is mostly chaotic, with l1 ~ 0.1 (measured: median 0.12 over 40 states at T = 2000;
    # over T = 150 a state counts as chaotic when l1 > 10 / 150)
    assert 0.5 < res["chaotic_fraction"] <= 1.0 and 0.07 < res["l1"] < 0.2
    assert set(res["models"]) == {"SeparableHNN", "ESN"}
    md = summary["markdown"].read_text()
    rows = [r for r in summary["rows"] if r["task"] == "henon-heiles-E1/6"]
    assert [r["model"] for r in rows] == ["floor (true system, perturbed x0)", "SeparableHNN", "ESN"]
    floor, hnn, esn = rows
    # the perturbed floor (eps 1e-4) follows the truth for several Lyapunov times; untrained models do not
    assert floor["vpt_lyap"] > 2 and floor["vpt_lo"] <= floor["vpt_lyap"] <= floor["vpt_hi"]
    assert hnn["vpt_lyap"] < floor["vpt_lyap"] and esn["vpt_lyap"] < floor["vpt_lyap"]
    assert "| henon-heiles-E1/6 | 0 | ESN |" in md
    assert (tmp_path / "results" / "chaos" / "prediction_time.png").exists()
