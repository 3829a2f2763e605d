"""The demo (hnnlab.demo)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("wandb_disabled_one_thread")


@pytest.mark.slow
def test_demo_runs_every_stage_and_separates_symplectic_from_rk4(tmp_path: Path) -> None:
    from hnnlab.demo import DemoConfig, run_demo

    summary = run_demo(DemoConfig(out=tmp_path, train_steps=20, leapfrog_steps=10, rollout_steps=200, n_rollouts=2,
                                  integrator_steps=4000))  # jobs=2 by default: the models run in two processes
    verdicts = {row["integrator"]: row["verdict"] for row in summary["integrators"]}
    assert verdicts == {"leapfrog": "bounded", "yoshida4": "bounded", "rk4": "drifting"}
    assert [(m["system"], m["model"]) for m in summary["models"]] == [
        ("spring", "HNN"), ("spring", "SepHNN-leapfrog"), ("spring", "baseline"),
        ("pendulum", "HNN"), ("pendulum", "SepHNN-leapfrog"), ("pendulum", "baseline")]
    for m in summary["models"]:
        assert math.isfinite(m["test_loss"]) and Path(m["rollout_file"]).is_file()
        assert all(Path(p).is_file() for p in m["plots"].values())
    assert json.loads((tmp_path / "summary.json").read_text())["models"][0]["integrator"] == "implicit_midpoint"
    assert "Published HNN, hnnlab's SepHNN-leapfrog and the baseline" in (tmp_path / "summary.md").read_text()
    assert [m["integrator"] for m in summary["models"][:3]] == ["implicit_midpoint", "leapfrog", "rk4"]


# -- a tiny demo, run once for the tests below (seconds: few steps, short rollouts, one process) ---------

TINY = {"train_steps": 8, "leapfrog_steps": 8, "window": 2, "rollout_steps": 20, "n_rollouts": 2,
        "integrator_steps": 100, "jobs": 1}


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    import contextlib
    import io

    import torch

    from hnnlab.demo import DemoConfig, run_demo

    out = tmp_path_factory.mktemp("demo")
    buffer = io.StringIO()
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buffer):
        mp.setenv("WANDB_MODE", "disabled")
        mp.delenv("CI", raising=False)
        torch.set_num_threads(1)
        try:
            summary = run_demo(DemoConfig(out=out, **TINY))
        finally:
            torch.set_num_threads(threads)
    return summary, buffer.getvalue(), out


def test_demo_stages_print_in_order_with_the_right_total(tiny_demo: tuple[dict, str, Path]) -> None:
    import re

    from hnnlab.demo import N_STAGES

    _, printed, _ = tiny_demo
    stages = [(int(k), int(n)) for k, n in re.findall(r"^\[(\d+)/(\d+)\]", printed, flags=re.M)]
    assert stages == [(k, N_STAGES) for k in range(1, N_STAGES + 1)]
    assert N_STAGES == 4


def test_demo_progress_names_the_total_and_a_fresh_loss_each_line(tiny_demo: tuple[dict, str, Path]) -> None:
    import re

    _, printed, _ = tiny_demo
    for label in ("spring/HNN", "spring/SepHNN-leapfrog", "spring/baseline", "pendulum/HNN",
                  "pendulum/SepHNN-leapfrog", "pendulum/baseline"):
        lines = re.findall(rf"^  {re.escape(label)}: epoch (\d+)/(\S+) step (\d+) .*?(?:train/loss=(\S+).*)?$",
                           printed, flags=re.M)
        assert [(int(e), total, int(s)) for e, total, s, _ in lines] == [
            (1, "8", 1), (2, "8", 2), (4, "8", 4), (6, "8", 6), (8, "8", 8)], label
        losses = [float(v) for *_, v in lines[1:]]  # the first line comes before the first logged step
        assert len(losses) == 4 and all(math.isfinite(v) for v in losses), label
        if label.endswith("baseline"):  # its loss falls fast at the start: a stale line would repeat a value
            assert len(set(losses)) == len(losses), f"{label}: a progress line repeats the previous loss: {losses}"


def test_demo_runs_the_three_models_on_each_system_with_their_integrators(tiny_demo: tuple[dict, str, Path]) -> None:
    from hnnlab.demo import DemoConfig

    summary, _, out = tiny_demo
    got = [(m["system"], m["model"], m["integrator"], m["loss"], m["train_steps"], m["derivative_weight"])
           for m in summary["models"]]
    w = DemoConfig().derivative_weight  # the tiny demo keeps the default weight of the best model's dx/dt term
    expected = [row for s in ("spring", "pendulum") for row in (
        (s, "HNN", "implicit_midpoint", "derivative", 8, 0.0),
        (s, "SepHNN-leapfrog", "leapfrog", "rollout", 8, w),
        (s, "baseline", "rk4", "derivative", 8, 0.0))]
    assert got == expected
    for m in summary["models"]:
        assert m["horizon"] == pytest.approx(20 * (0.1034 if m["system"] == "spring" else 0.06818), rel=1e-3)
        assert math.isfinite(m["max_energy_error"]) and math.isfinite(m["vpt_mean"])
        assert Path(m["rollout_file"]).is_file()
    table = (out / "summary.md").read_text()
    for system in ("spring", "pendulum"):
        for model in ("HNN", "SepHNN-leapfrog", "baseline"):
            assert f"| {system} | {model} |" in table
    assert Path(summary["figure"]).is_file() and Path(summary["figure"]).name == "comparison.png"
    assert set(summary["claim"]["systems"]) == {"spring", "pendulum"}


def _cells(line: str) -> int:
    """Unescaped ``|`` separators in a Markdown table line."""
    import re

    return len(re.findall(r"(?<!\\)\|", line))


def test_demo_summary_tables_are_valid_markdown(tiny_demo: tuple[dict, str, Path]) -> None:
    _, _, out = tiny_demo
    lines = (out / "summary.md").read_text().splitlines()
    tables: list[list[str]] = []
    for i, line in enumerate(lines):
        if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
            tables.append([])
        if line.startswith("|"):
            tables[-1].append(line)
    assert len(tables) == 2  # the integrators, the models
    for table in tables:
        header, rule, *rows = table
        n = _cells(header)
        assert _cells(rule) == n and set(rule) <= set("|-") and rows
        assert all(_cells(r) == n for r in rows), table
    assert r"max \|dE\|/E0" in tables[0][0] and r"max \|dE\|/E0" in tables[1][0]
    prose = [line for line in lines if line and not line.startswith(("|", "#"))]
    assert all(_cells(line) == 0 for line in prose), prose


def test_markdown_table_escapes_every_cell() -> None:
    from hnnlab.demo import markdown_table

    md = markdown_table("t", ["a|b", "c"], [["x", "|y|"]])
    assert md.splitlines()[2:] == [r"| a\|b | c |", "|---|---|", r"| x | \|y\| |"]


def test_log_interval_divides_the_progress_interval_and_the_run() -> None:
    from hnnlab.demo import log_interval

    assert log_interval(2000, 500) == 50
    assert log_interval(240, 60) == 30
    assert log_interval(8, 2) == 2
    assert log_interval(997, 249) == 1  # nothing divides both: every step
    for steps in (7, 20, 240, 1000, 1500, 2000):
        every = max(steps // 4, 1)
        k = log_interval(steps, every)
        assert every % k == 0 and steps % k == 0 and 1 <= k <= 50


def test_claim_needs_the_best_model_ahead_on_both_measures_on_every_system() -> None:
    from hnnlab.demo import claim

    def row(system: str, model: str, e: float, vpt: float) -> dict:
        return {"system": system, "model": model, "max_energy_error": e, "vpt_mean": vpt}

    results = [row("spring", "HNN", 0.3, 2.0), row("spring", "SepHNN-leapfrog", 0.1, 6.0),
               row("spring", "baseline", 1.0, 3.0)]
    verdict = claim(results)
    assert verdict["holds"] and verdict["systems"]["spring"]["ratios"]["HNN"] == pytest.approx(
        {"energy_error_ratio": 3.0, "vpt_ratio": 3.0})
    assert verdict["lines"] == ["spring: SepHNN-leapfrog ahead of HNN and baseline on max |dE|/E0 (1.00e-01 against "
                                "3.00e-01, 1.00e+00) and VPT (6.00 against 2.00, 3.00)"]
    results.append(row("pendulum", "HNN", 0.01, 5.0))
    results.append(row("pendulum", "SepHNN-leapfrog", 0.02, 30.0))
    verdict = claim(results)
    assert not verdict["holds"]
    assert verdict["systems"]["pendulum"] == {"ahead_on_energy": False, "ahead_on_vpt": True,
                                              "ratios": {"HNN": {"energy_error_ratio": 0.5, "vpt_ratio": 6.0}}}
    assert "NOT ahead of HNN" in verdict["lines"][1]


def test_demo_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    from hnnlab.cli import main
    from hnnlab.demo import DemoConfig

    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for option, default in (("--out", "runs/demo"), ("--train-steps", "2000"), ("--leapfrog-steps", "2000"),
                            ("--window", "4"), ("--leapfrog-lr", "0.001"),
                            ("--derivative-weight", str(DemoConfig().derivative_weight)), ("--rollout-steps", "10000"),
                            ("--n-rollouts", "16"), ("--integrator-steps", "20000"), ("--jobs", "2"),
                            ("--seed", "0"), ("--models", "['HNN', 'SepHNN-leapfrog', 'baseline']")):
        assert option in text
        assert f"(default: {default})" in text, option
    from hnnlab.cli import build_parser

    demo = build_parser()._subparsers._group_actions[0].choices["demo"]
    options = [a for a in demo._actions if a.option_strings and a.dest != "help"]
    assert all("(default: %(default)s)" in a.help for a in options)


@pytest.mark.parametrize(("argv", "message"), [
    (["--train-steps", "0"], "argument --train-steps: expected an integer >= 1, got 0"),
    (["--rollout-steps", "ten"], "argument --rollout-steps: expected an integer >= 1, got 'ten'"),
    (["--n-rollouts", "-3"], "argument --n-rollouts: expected an integer >= 1, got -3"),
    (["--jobs", "0"], "argument --jobs: expected an integer >= 1, got 0"),
    (["--leapfrog-lr", "-0.001"], "argument --leapfrog-lr: expected a finite number > 0, got -0.001"),
    (["--leapfrog-lr", "inf"], "argument --leapfrog-lr: expected a finite number > 0, got inf"),
    (["--derivative-weight", "-1"], "argument --derivative-weight: expected a finite number >= 0, got -1"),
    (["--derivative-weight", "w"], "argument --derivative-weight: expected a number >= 0, got 'w'"),
    (["--models", "HNN", "LNN"], "argument --models: invalid choice: 'LNN'"),
    (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
])
def test_demo_bad_arguments_exit_2_with_the_message(argv: list[str], message: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from hnnlab.cli import main

    with pytest.raises(SystemExit) as info:
        main(["demo", "--out", str(tmp_path / "demo"), *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # nothing written


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"train_steps": 0}, "train_steps must be an integer >= 1, got 0"),
    ({"window": 1.5}, "window must be an integer >= 1, got 1.5"),
    ({"leapfrog_lr": float("nan")}, "leapfrog_lr must be a finite number > 0, got nan"),
    ({"derivative_weight": -0.5}, "derivative_weight must be a finite number >= 0, got -0.5"),
    ({"models": ("HNN", "HNN")}, "models must be distinct names among HNN, SepHNN-leapfrog, baseline, got HNN, HNN"),
    ({"models": ()}, "models must be distinct names among HNN, SepHNN-leapfrog, baseline, got none"),
])
def test_demo_config_refuses_bad_values(kwargs: dict, message: str) -> None:
    from hnnlab.demo import DemoConfig
    from hnnlab.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError) as info:
        DemoConfig(**kwargs)
    assert str(info.value) == message
