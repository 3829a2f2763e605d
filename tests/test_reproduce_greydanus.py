"""The Greydanus et al. (2019) reproduction: its protocol's mathematics, the shared result tables, the command."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch import nn

from hnnlab.cli import main as cli_main
from hnnlab.errors import InvalidArgumentError
from hnnlab.reproduce import greydanus as g
from hnnlab.reproduce.common import Column, Estimate, ReproduceConfig, markdown_table, pooled
from hnnlab.systems import get_system


class Field(nn.Module):
    """A known vector field as a "model": the true system's, optionally with a damping term ``-gamma * x``."""

    def __init__(self, system, gamma: float = 0.0) -> None:
        super().__init__()
        self.system, self.gamma = system, gamma
        self.anchor = nn.Parameter(torch.zeros(()))  # so that .float() / .double() have something to cast

    def forward(self, t, x):
        return self.system.vector_field(t, x.double()).to(x.dtype) - self.gamma * x


SPRING = get_system("mass_spring", k=2.0, m=0.5)  # H = q^2 + p^2, rotation at angular speed 2


def test_protocol_spans_grow_by_1_09_per_trajectory():
    spans = g.protocol_spans(20.0, 15, 1.09)
    assert spans[0] == 20.0
    assert torch.allclose(spans[1:] / spans[:-1], torch.full((14,), 1.09, dtype=torch.float64))
    assert math.isclose(float(spans[-1]), 20 * 1.09**14, rel_tol=1e-12)  # 66.5
    assert torch.equal(g.protocol_spans(5.0, 3, 1.0), torch.full((3,), 5.0, dtype=torch.float64))


def test_integrate_spans_matches_the_exact_spring_solution_on_each_trajectorys_own_grid():
    x0 = torch.tensor([[1.0, 0.0], [0.3, -0.4], [0.0, 0.9]], dtype=torch.float64)
    spans = torch.tensor([1.0, 2.5, 7.0], dtype=torch.float64)
    states = g.integrate_spans(SPRING, x0, spans, 11, g.get_integrator("dopri8", rtol=1e-12, atol=1e-12))
    assert states.shape == (3, 11, 2)
    for k in range(3):
        t = torch.linspace(0, float(spans[k]), 11, dtype=torch.float64)
        c, s = torch.cos(2 * t), torch.sin(2 * t)
        q0, p0 = x0[k]
        exact = torch.stack([q0 * c + p0 * s, p0 * c - q0 * s], dim=-1)  # dq/dt = 2p, dp/dt = -2q
        assert torch.allclose(states[k], exact, atol=1e-10), k


@pytest.mark.parametrize("protocol", ["published", "corrected"])
def test_energy_mse_is_zero_for_the_true_field(protocol):
    x0 = SPRING.sample_initial_states(4, torch.Generator().manual_seed(0))
    out = g.energy_mse(Field(SPRING), SPRING, x0, t_end=5.0, n_points=20, protocol=protocol,
                       task=g.TASK_SPECS["spring"])
    # published: float32 field and atol 1e-6, so the energy is only good to ~1e-6; corrected: round-off
    assert out["estimate"].mean < (1e-9 if protocol == "published" else 1e-20)
    assert out["per_traj"].shape == (4,)


def test_energy_mse_of_a_damped_field_equals_the_closed_form():
    # dx/dt = f_H(x) - gamma x  =>  dH/dt = -2 gamma H for H = q^2 + p^2, so H(t) = H0 exp(-2 gamma t).
    gamma, n_points = 0.05, 30
    x0 = SPRING.sample_initial_states(3, torch.Generator().manual_seed(1))
    task = g.TASK_SPECS["spring"]
    out = g.energy_mse(Field(SPRING, gamma), SPRING, x0, t_end=4.0, n_points=n_points, protocol="corrected",
                       task=task)
    h0 = SPRING.energy(x0)  # (3,)
    t = torch.linspace(0, 4.0, n_points, dtype=torch.float64)
    expected = ((h0[:, None] * torch.exp(-2 * gamma * t) - h0[:, None]) ** 2).mean(dim=1)
    assert torch.allclose(out["per_traj"], expected, rtol=1e-8)
    # the published protocol's growing spans: trajectory k runs to 4 * 1.09**k
    pub = g.energy_mse(Field(SPRING, gamma), SPRING, x0, t_end=4.0, n_points=n_points, protocol="published",
                       task=task)
    spans = 4.0 * 1.09 ** torch.arange(3, dtype=torch.float64)
    t_k = spans[:, None] * torch.linspace(0, 1, n_points, dtype=torch.float64)
    expected_pub = ((h0[:, None] * torch.exp(-2 * gamma * t_k) - h0[:, None]) ** 2).mean(dim=1)
    assert torch.allclose(pub["per_traj"], expected_pub, rtol=1e-4)


def test_published_pendulum_energy_is_q2_plus_p2():
    pend = get_system("pendulum", m=0.5, l=1.0, g=6.0)
    x0 = pend.sample_initial_states(2, torch.Generator().manual_seed(2))
    gamma, n_points = 0.1, 15
    task = g.TASK_SPECS["pendulum"]
    assert task.quirk_energy == "q2p2"
    out = g.energy_mse(Field(pend, gamma), pend, x0, t_end=2.0, n_points=n_points, protocol="published", task=task)
    spans = g.protocol_spans(2.0, 2, task.span_growth)
    fine = 100  # RK4 steps per saved interval: far below the protocol's tolerance
    expected = []
    for k in range(2):
        dt = float(spans[k]) / (n_points - 1) / fine
        damped = g.rollout(lambda t, x: pend.vector_field(t, x) - gamma * x, "rk4", x0[k : k + 1], dt,
                           (n_points - 1) * fine, save_every=fine)[0]
        true = g.rollout(pend, "rk4", x0[k : k + 1], dt, (n_points - 1) * fine, save_every=fine)[0]
        expected.append(((damped**2).sum(-1) - (true**2).sum(-1)).pow(2).mean())
    assert torch.allclose(out["per_traj"], torch.stack(expected), rtol=1e-4)
    corrected = g.energy_mse(Field(pend, gamma), pend, x0, t_end=2.0, n_points=n_points, protocol="corrected",
                             task=task)
    assert not torch.allclose(corrected["per_traj"], out["per_traj"], rtol=1e-2)  # the true H differs


def test_test_loss_is_the_mean_squared_field_error_with_stderr_over_points():
    gen = torch.Generator().manual_seed(3)
    clean = SPRING.sample_initial_states(50, gen)
    noise = 0.1 * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    dxdt = SPRING.vector_field(0.0, clean)
    out = g.test_loss(Field(SPRING), (clean + noise)[:, None], dxdt[:, None])
    per_point = (2 * noise).pow(2).mean(dim=-1)  # the field is linear with |f(n)| = 2 |n|
    assert math.isclose(out["estimate"].mean, float(per_point.mean()), rel_tol=1e-12)
    assert math.isclose(out["estimate"].stderr, float(per_point.std() / math.sqrt(50)), rel_tol=1e-12)


def test_estimates_and_tables():
    e = Estimate.of([1.0, 2.0, 3.0])
    assert (e.mean, e.n) == (2.0, 3) and math.isclose(e.stderr, 1 / math.sqrt(3))
    assert format(e, ".2f") == "2.00 ± 5.77e-01"
    gm = Estimate.geometric([1e-2, 1e-4])
    assert math.isclose(gm.mean, 1e-3, rel_tol=1e-12)
    assert math.isnan(Estimate.of([4.0]).stderr) and format(Estimate.of([4.0]), ".1f") == "4.0"
    assert pooled([Estimate(1.0, 0.1), Estimate(3.0, 0.1)]).mean == 2.0
    assert pooled([Estimate(1.0, 0.1)]) == Estimate(1.0, 0.1)
    table = markdown_table([Column("a", "A"), Column("b", "B", ".1f")], [{"a": "x", "b": 2.0}, {"a": "y"}])
    assert table.splitlines() == ["| A | B |", "|---|---|", "| x | 2.0 |", "| y | – |"]
    with pytest.raises(InvalidArgumentError, match="at least one value"):
        Estimate.of([])


def test_config_refuses_unknown_tasks_and_budgets():
    with pytest.raises(InvalidArgumentError, match="unknown task 'moon'; available: spring, pendulum, 2body, 3body"):
        ReproduceConfig(tasks=("moon",)).select(g.TASKS)
    with pytest.raises(InvalidArgumentError, match="budget must be 'cpu' or 'published', got 'gpu'"):
        ReproduceConfig(budget="gpu")
    with pytest.raises(InvalidArgumentError,
                       match="greydanus: unknown setting 'stepz'; settings: steps_scale, 3body_n_traj"):
        g.run(ReproduceConfig(tasks=("spring",), wandb=False, extra={"stepz": 1}))


def test_command_refuses_an_unknown_reproduction_and_task(capsys):
    assert cli_main(["reproduce", "hamilton"]) == 2
    assert "unknown reproduction 'hamilton'; available: greydanus, cranmer, finzi" in capsys.readouterr().err
    assert cli_main(["reproduce", "greydanus", "--tasks", "moon", "--no-wandb"]) == 2
    assert "unknown task 'moon'" in capsys.readouterr().err


@pytest.mark.parametrize(("item", "message"), [
    ("models=[baseline, nope]", "greydanus: models must be 'all' or a list of baseline, HNN, SepHNN, SepHNN-leapfrog; "
                                "got ['baseline', 'nope']"),
    ("stepz=3", "greydanus: unknown setting 'stepz'; settings: steps_scale, 3body_n_traj"),
    ("stepz", "--set takes KEY=VALUE, got 'stepz'"),
    ("n_long=[1", "--set n_long: VALUE is not valid YAML ('[1')"),
])
def test_command_set_overrides_a_setting_and_refuses_bad_ones_before_any_work(tmp_path, capsys, item, message):
    argv = ["reproduce", "greydanus", "--tasks", "3body", "--no-wandb", "--out", str(tmp_path), "--set", item]
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_command_set_reads_values_as_yaml():
    from hnnlab.commands.reproduce import parse_settings

    assert parse_settings(["models=[baseline, HNN]", "steps_scale=0.5", "n_long = 4"]) == {
        "models": ["baseline", "HNN"], "steps_scale": 0.5, "n_long": 4}


def test_a_page_names_the_command_that_regenerates_it_with_its_settings():
    import shlex
    from pathlib import Path

    from hnnlab.commands.reproduce import parse_settings
    from hnnlab.reproduce.common import command_line

    cfg = ReproduceConfig(tasks=("3body",), seeds=(0, 1, 2), results=Path("benchmarks/results/3body-seeds"),
                          extra={"models": ["baseline", "HNN"], "n_long": 4})
    line = command_line("greydanus", cfg)
    assert line == ("hnnlab reproduce greydanus --tasks 3body --seeds 0 1 2 --results benchmarks/results/3body-seeds "
                    "--set 'models=[baseline, HNN]' --set n_long=4")
    words = shlex.split(line)
    assert parse_settings([words[i + 1] for i, w in enumerate(words) if w == "--set"]) == cfg.extra


def test_tiny_end_to_end_run_writes_the_tables(tmp_path):
    cfg = ReproduceConfig(
        out=tmp_path / "work", results=tmp_path / "results", tasks=("spring",), wandb=False,
        extra={"steps_scale": 0.005, "n_energy": 2, "n_long": 2, "rollout_steps_scale": 0.02,
               "models": ["baseline", "HNN"]},
    )
    summary = g.run(cfg)
    md = summary["markdown"].read_text()
    assert "| spring | HNN | published | 3.593e-02 ± 1.83e-03 | 3.842e-04 ± 6.53e-05 |" in md
    assert "hnnlab reproduce greydanus" in md
    assert summary["plot"].stat().st_size > 1000
    with summary["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    first = [r for r in rows if r["section"].startswith("Published table")]
    assert [(r["model"], r["source"]) for r in first] == [
        ("baseline", "published"), ("baseline", "hnnlab"), ("HNN", "published"), ("HNN", "hnnlab")]
    assert {"test_loss", "test_loss_stderr", "energy_mse", "energy_mse_stderr"} <= set(rows[0])
    raw = json.loads((tmp_path / "results" / "greydanus.json").read_text())
    per_point = raw["results"]["spring"]["0"]["HNN"]["test_loss"]["per_point"]
    assert len(per_point) == 750  # the 25 test trajectories of 30 points
    hnn = next(r for r in first if r["model"] == "HNN" and r["source"] == "hnnlab")
    assert math.isclose(float(hnn["test_loss"]), sum(per_point) / 750, rel_tol=1e-9)


def _page_without_machine_line(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("Machine: "))


def test_committed_results_page_is_rendered_again_byte_for_byte_from_its_json(tmp_path, monkeypatch):
    """The notes come from templates/greydanus.md and the tables from the raw numbers: the page, CSV and JSON
    written from the committed greydanus.json are the committed files (but for the machine line)."""
    from pathlib import Path

    from hnnlab.reproduce.common import load_raw

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    committed = (results / "greydanus.md").read_text()
    minutes = float(committed.split("Wall time of this run: ")[1].split(" min.")[0])
    raw = {t: {int(s): v for s, v in by.items()} for t, by in load_raw(results / "greydanus.json")["results"].items()}
    monkeypatch.chdir(tmp_path)  # the page's command names the default results folder
    cfg = ReproduceConfig(out=tmp_path / "work", results=Path("benchmarks/results"), seeds=(0,))
    page = g.write_page(raw, cfg, g._budget(cfg), minutes * 60)
    assert _page_without_machine_line(page["markdown"].read_text()) == _page_without_machine_line(committed)
    assert page["csv"].read_bytes() == (results / "greydanus.csv").read_bytes()
    assert (tmp_path / cfg.results / "greydanus.json").read_bytes() == (results / "greydanus.json").read_bytes()
    assert page["plot"].stat().st_size > 1000


def test_notes_template_refuses_a_missing_value_and_an_unknown_paragraph():
    from hnnlab.reproduce.common import Notes

    notes = Notes("greydanus")
    assert notes("wall_time", minutes=1.26, train_minutes=2.0) == (
        "Wall time of this run: 1.3 min. Training of the models, summed over tasks and seeds (a seed saved by an "
        "earlier run counts with its own time): 2.0 min.")
    with pytest.raises(InvalidArgumentError, match=r"paragraph 'wall_time': no value for \{minutes\}"):
        notes("wall_time")
    with pytest.raises(InvalidArgumentError, match=r"has no paragraph 'sauce'; paragraphs: source, data, "):
        notes("sauce")


def test_cached_results_are_reused_only_for_the_same_key_and_never_half_written(tmp_path, capsys):
    from hnnlab.reproduce.common import cached

    calls: list[int] = []

    def compute() -> dict[str, object]:
        calls.append(1)
        return {"vpt": torch.arange(3.0)}

    path = tmp_path / "results" / "task-seed0.pt"
    first = cached(path, {"seed": 0, "steps": 10}, compute, label="task seed 0")
    again = cached(path, {"seed": 0, "steps": 10}, compute, label="task seed 0")
    assert len(calls) == 1 and torch.equal(first["vpt"], again["vpt"])
    assert f"task seed 0: reusing {path}" in capsys.readouterr().out
    cached(path, {"seed": 0, "steps": 20}, compute, label="task seed 0")  # other settings: computed again
    assert len(calls) == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["task-seed0.pt"]

    def stopped() -> dict[str, object]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached(tmp_path / "results" / "task-seed1.pt", {"seed": 1}, stopped, label="task seed 1")
    assert sorted(p.name for p in path.parent.iterdir()) == ["task-seed0.pt"]


def test_seed_rows_give_the_median_over_seeds_and_trajectories_and_the_largest_trajectorys_share():
    from hnnlab.reproduce.greydanus_report import seed_rows

    def entry(per_traj: list[float], loss: float) -> dict:
        return {"energy_published": {"per_traj": per_traj}, "test_loss": {"estimate": Estimate(loss)}}

    raw = {"3body": {0: {"HNN": entry([1.0, 1.0, 8.0], 0.2)},  # mean 10 / 3, the largest carries 80 %
                     1: {"HNN": entry([2.0, 2.0, 2.0], 0.3)},  # mean 2, a third
                     2: {"HNN": entry([3.0, 3.0, 94.0], 0.1)}}}  # mean 100 / 3, 94 %
    (row,) = seed_rows(raw, n_boot=200)
    assert row["published"] == 4.1926e-02
    assert row["per_seed"] == "3.33, 2, 33.3"
    assert math.isclose(row["seed_median"], 10 / 3)
    assert row["traj_median"] == 2.0  # of 1 1 2 2 2 3 3 8 94
    lo, hi = (float(v) for v in row["traj_interval"].split(" - "))
    assert 1.0 <= lo <= 2.0 <= hi <= 8.0  # order statistics of the nine values, never the 94
    assert math.isclose(row["top_share"], 0.8)
    assert math.isclose(row["test_loss"], 0.2)
