"""The benchmark runners: run_all's verdicts, table and files (on fabricated rows, nothing timed), and
gpu.py's CPU check mode and its refusal without CUDA."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu, run_all
from benchmarks.run_all import Benchmark, RatioRow, Target

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")

SPEEDUP = Target(">=", 5.0)
SLOWDOWN = Target("<=", 2.5)
ROWS = [
    RatioRow("rollout", "leapfrog vs rk4", SPEEDUP, 5.58, workload="batch 1024", notes="a | b"),
    RatioRow("models", "HNN / MLP step", SLOWDOWN, 2.6),
    RatioRow("training", "fit vs loop", Target(">=", 3.0), None, notes="RuntimeError: boom"),
]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------------
# run_all: verdicts


@pytest.mark.parametrize(
    ("target", "ratio", "met"),
    [
        (SPEEDUP, 5.0, "yes"), (SPEEDUP, 5.01, "yes"), (SPEEDUP, 4.99, "no"),
        (SLOWDOWN, 2.5, "yes"), (SLOWDOWN, 1.0, "yes"), (SLOWDOWN, 2.51, "no"),
        (SPEEDUP, None, "error"), (SLOWDOWN, None, "error"),
    ],
)
def test_met_compares_the_ratio_with_the_target_in_its_direction(target, ratio, met):
    assert RatioRow("b", "c", target, ratio).met == met


def test_target_rejects_an_unknown_comparison():
    with pytest.raises(ValueError, match=r"Target.op must be '>=', '<=' or 'info', got '>'"):
        Target(">", 1.0)


def test_information_rows_have_no_target_and_do_not_count_as_targets():
    info = RatioRow("training", "fit vs loop", run_all.INFORMATION, 0.9)
    assert info.met == "-" and str(info.target) == "information"
    assert run_all.summary([info, RatioRow("rollout", "r", SPEEDUP, 6.0)]) == "1 of 1 targets met."


def test_summary_counts_met_missed_and_failed_targets():
    assert run_all.summary(ROWS) == (
        "1 of 3 targets met; missed: models (2.60x, target <= 2.5x); failed to run: training."
    )


# ------------------------------------------------------------------------------------------------
# run_all: table and files


@pytest.mark.parametrize("quick", [False, True])
def test_markdown_has_one_line_per_row_and_says_when_sizes_were_reduced(quick):
    text = run_all.build_markdown(ROWS, quick=quick, threads=1, device=CPU)
    lines = text.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| benchmark | compared | target | measured | met | workload | device | notes |"
    assert len(table) == 2 + len(ROWS)
    assert table[2] == "| rollout | leapfrog vs rk4 | >= 5x | 5.58x | yes | batch 1024 | cpu | a \\| b |"
    assert table[3].startswith("| models | HNN / MLP step | <= 2.5x | 2.60x | no |")
    assert table[4].startswith("| training | fit vs loop | >= 3x | — | error |")
    assert table[4].endswith("| RuntimeError: boom |")
    assert ("Sizes reduced (--quick)" in text) is quick
    assert lines[-1] == run_all.summary(ROWS)


def test_write_produces_markdown_and_a_csv_with_numeric_ratios(tmp_path):
    md, csv_path = run_all.write(ROWS, tmp_path / "sub" / "all", quick=True, threads=1, device=CPU)
    assert md == tmp_path / "sub" / "all.md" and csv_path == tmp_path / "sub" / "all.csv"
    assert md.read_text() == run_all.build_markdown(ROWS, quick=True, threads=1, device=CPU)
    records = read_csv(csv_path)
    assert [r["benchmark"] for r in records] == ["rollout", "models", "training"]
    assert [r["met"] for r in records] == ["yes", "no", "error"]
    assert float(records[0]["ratio"]) == 5.58 and records[2]["ratio"] == ""
    assert [(r["target_op"], float(r["target_value"])) for r in records] == [(">=", 5.0), ("<=", 2.5), (">=", 3.0)]
    assert {r["quick"] for r in records} == {"True"}
    assert records[0]["notes"] == "a | b"


# ------------------------------------------------------------------------------------------------
# run_all: running benchmarks (fakes, nothing timed)


def fake(name: str, ratio: float, *, cpu_only: bool = False, fail: bool = False) -> Benchmark:
    target = ("thing vs baseline", SPEEDUP)

    def run(quick: bool, device: torch.device) -> list[RatioRow]:
        if fail:
            raise RuntimeError(f"{name} broke")
        return [RatioRow(name, target[0], target[1], ratio, workload=f"quick={quick}", device="ignored")]

    return Benchmark(name, run, [target, ("other vs baseline", SLOWDOWN)] if fail else [target], cpu_only)


def test_a_failing_benchmark_becomes_one_error_row_per_target():
    rows = run_all.run_benchmark(fake("x", 1.0, fail=True), quick=False, device=CPU)
    assert [(r.compared, r.ratio, r.met, r.notes) for r in rows] == [
        ("thing vs baseline", None, "error", "RuntimeError: x broke"),
        ("other vs baseline", None, "error", "RuntimeError: x broke"),
    ]


def test_rows_record_the_device_used_and_the_seconds():
    (row,) = run_all.run_benchmark(fake("x", 6.0), quick=True, device=torch.device("meta"))
    assert (row.ratio, row.met, row.workload, row.device) == (6.0, "yes", "quick=True", "meta")
    assert row.seconds is not None and row.seconds >= 0
    (row,) = run_all.run_benchmark(fake("y", 6.0, cpu_only=True), quick=True, device=torch.device("meta"))
    assert row.device == "cpu"


def test_main_runs_only_the_named_benchmarks_and_fails_when_one_breaks(tmp_path, monkeypatch):
    benchmarks = {b.name: b for b in [fake("a", 6.0), fake("b", 4.0), fake("c", 0.0, fail=True)]}
    monkeypatch.setattr(run_all, "BENCHMARKS", benchmarks)
    threads = torch.get_num_threads()
    try:
        assert run_all.main(["--only", "b", "a", "--out", str(tmp_path / "ab"), "--threads", "1"]) == 0
        assert [(r["benchmark"], r["met"], r["quick"]) for r in read_csv(tmp_path / "ab.csv")] == [
            ("b", "no", "False"), ("a", "yes", "False"),
        ]
        assert run_all.main(["--quick", "--out", str(tmp_path / "all")]) == 1
        assert [r["met"] for r in read_csv(tmp_path / "all.csv")] == ["yes", "no", "error", "error"]
        assert (tmp_path / "all.md").read_text().splitlines()[-1] == (
            "1 of 4 targets met; missed: b (4.00x, target >= 5x); failed to run: c."
        )
        assert "Sizes reduced (--quick)" in (tmp_path / "all.md").read_text()
    finally:
        torch.set_num_threads(threads)


def test_only_rejects_an_unknown_benchmark(capsys):
    with pytest.raises(SystemExit) as exc:
        run_all.parse_args(["--only", "rolout"])
    assert exc.value.code == 2
    assert "argument --only: invalid choice: 'rolout'" in capsys.readouterr().err


def test_every_benchmark_script_exposes_what_run_all_calls():
    from benchmarks import _common

    calls = {"bench_rollout": ["run_case", "TARGET_BATCH"], "bench_simulate": ["measure"],
             "bench_models": ["bench_hnn", "bench_lnn"], "bench_training": ["measure"],
             "bench_hnn_rollout": ["trained_models", "measure_case", "TARGET_BATCH"],
             "bench_flops": ["run"], "bench_work_precision": ["run_problem", "summarise"]}
    for script, names in calls.items():
        module = _common.load_script(script)
        assert all(callable(getattr(module, n)) or isinstance(getattr(module, n), int) for n in names), script
    assert set(run_all.BENCHMARKS) == {"rollout", "simulate", "models", "training", "hnn_rollout", "flops",
                                       "work_precision"}


# ------------------------------------------------------------------------------------------------
# gpu.py


def run_gpu_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "CI": "1"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_gpu_script_on_the_cpu_in_quick_mode_writes_a_consistent_table(tmp_path):
    result = run_gpu_script("--device", "cpu", "--quick", "--out", str(tmp_path / "gpu"))
    assert result.returncode == 0, result.stderr[-2000:]
    sizes = gpu.QUICK
    records = read_csv(tmp_path / "gpu.csv")
    expected = (
        [("training step", "derivative MSE, Adam", str(b)) for b in sizes.hnn_batches]
        + [("training step", "acceleration L1, Adam", str(b)) for b in sizes.lnn_batches]
        + [("hnnlab fit", "Trainer.fit via hnnlab fit", "750")]
        + [("rollout", m, str(b)) for b in sizes.rollout_batches for m in ("torchdiffeq rk4", "hnnlab leapfrog")]
        + [("rollout", m, str(sizes.pendulum_batch)) for m in ("torchdiffeq rk4", "hnnlab leapfrog")]
    )
    assert [(r["part"], r["method"], r["batch"]) for r in records] == expected
    for r in records:
        rate = float(r["steps_per_s"])
        assert math.isfinite(rate) and rate > 0, r
        assert float(r["throughput"]) == pytest.approx(rate * int(r["batch"]), rel=1e-9)
    # each leapfrog row's ratio is its rate over the torchdiffeq row just before it (same model and batch)
    for base, ours in zip(records[5::2], records[6::2], strict=True):
        assert (base["method"], ours["method"], base["batch"]) == ("torchdiffeq rk4", "hnnlab leapfrog", ours["batch"])
        assert base["ratio"] == "" and ours["ratio_over"] == "torchdiffeq rk4"
        assert float(ours["ratio"]) == pytest.approx(float(ours["steps_per_s"]) / float(base["steps_per_s"]))
    text = (tmp_path / "gpu.md").read_text()
    assert "--quick: tiny sizes" in text
    assert sum(line.startswith("| ") for line in text.splitlines()) == 1 + len(expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: the script would run")
def test_gpu_script_without_cuda_exits_2_and_says_how_to_check_it_on_the_cpu(tmp_path, capsys):
    assert gpu.main(["--out", str(tmp_path / "gpu")]) == 2  # the script exits with main's status
    err = capsys.readouterr().err
    assert err.startswith("gpu.py: error: CUDA is not available (torch ")
    assert err.rstrip().endswith("or check the script on the CPU with --device cpu --quick")
    assert list(tmp_path.iterdir()) == []


def test_work_precision_interpolates_the_time_at_the_target_error_log_log():
    from benchmarks import _common

    wp = _common.load_script("bench_work_precision")
    rows = [{"seconds": 1.0, "energy_error": 1e-6}, {"seconds": 4.0, "energy_error": 1e-10},
            {"seconds": 16.0, "energy_error": 1e-12}]
    # log-log between (1 s, 1e-6) and (4 s, 1e-10): 1e-8 is halfway in log error, so 2 s
    assert wp.time_at_error(rows, 1e-8) == pytest.approx(2.0)
    assert wp.time_at_error(rows, 1e-14) is None  # never reached
    assert wp.time_at_error(rows, 1e-4) is None  # no run above the target: the curve does not bracket it
    assert wp.time_at_error([{"seconds": 3.0, "energy_error": float("inf")}] + rows, 1e-8) == pytest.approx(2.0)


def test_work_precision_report_is_drawn_again_from_a_csv(tmp_path):
    """--from-csv writes the summary, the compiled table and one plot per problem and horizon from a CSV, timing
    nothing; a compile time under a second (a cached graph) is shown as such, not as a noise difference."""
    import csv

    from benchmarks import _common

    wp = _common.load_script("bench_work_precision")
    rows = [("hnnlab", "kahan_li8 (compiled)", 0.5, 1.0, 1e-6, 40.0), ("hnnlab", "kahan_li8 (compiled)", 0.25, 4.0,
                                                                          1e-10, -0.2),
            ("scipy", "DOP853", 1e-8, 10.0, 1e-6, float("nan")), ("scipy", "DOP853", 1e-10, 40.0, 1e-10, float("nan"))]
    path = tmp_path / "run.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["problem", "horizon", "library", "method", "setting", "seconds", "evaluations_per_state",
                    "energy_error", "state_error", "compile_seconds", "compile_steps"])
        for lib, method, setting, sec, err, comp in rows:
            w.writerow(["henon_heiles", 10000.0, lib, method, setting, sec, 1e5, err, 1e-3, comp,
                        16 if lib == "hnnlab" else ""])
    assert wp.main(["--from-csv", str(path), "--out", str(tmp_path / "out" / "wp")]) == 0
    md = (tmp_path / "out" / "wp.md").read_text()
    # both curves reach 1e-8 halfway between their two runs in log error: 2 s against 20 s
    assert "| henon_heiles | 10000 | kahan_li8 (compiled) | 2 | DOP853 | 20 | 10.0x |" in md
    assert "Target (Henon-Heiles, T = 1e4, >= 10x): 10.0x, met." in md
    assert "| henon_heiles | 10000 | kahan_li8 (compiled) | 0.5 | 1 | 40 | 1.00e-06 |" in md
    assert "Steps per compiled call: 16 (--compile-steps)." in md
    assert "| henon_heiles | 10000 | kahan_li8 (compiled) | 0.25 | 4 | < 1 (cached) | 1.00e-10 |" in md
    assert (tmp_path / "out" / "wp_henon_heiles_T10000.png").stat().st_size > 10_000


def test_run_all_times_the_work_precision_target_with_methods_and_step_sizes_of_the_sweep():
    """run_all's work-precision row runs the full sweep's best hnnlab method at two of its sweep's step sizes, and
    every baseline: names that the script knows (a typo would silently time nothing)."""
    from benchmarks import _common

    wp = _common.load_script("bench_work_precision")
    assert {run_all.WP_HNNLAB, *run_all.WP_BASELINES} <= set(wp.method_names())
    assert run_all.WP_BASELINES == {m for m in wp.method_names() if m in ("dopri5", "dopri8", "DOP853")}
    assert run_all.WP_DTS <= set(wp.STEPS[run_all.WP_HNNLAB.removesuffix(" (compiled)")])


def test_work_precision_refuses_bad_compile_steps_and_methods(capsys):
    from benchmarks import _common

    wp = _common.load_script("bench_work_precision")
    with pytest.raises(SystemExit) as stop:
        wp.main(["--compile-steps", "0"])
    assert stop.value.code == 2 and "--compile-steps must be an integer >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        wp.main(["--methods", "rk45"])
    assert "--methods: unknown 'rk45'; the methods are 'leapfrog'" in capsys.readouterr().err


def test_flop_counts_follow_the_layer_shapes():
    from benchmarks import _common
    from hnnlab.models import HNN, SeparableHNN

    fl = _common.load_script("bench_flops")
    per_net = 1 * 200 + 200 * 200 + 200 * 1  # S of a 1-200-200-1 network
    assert fl.rollout_flops_per_step(SeparableHNN(1, hidden=(200, 200)), 1024) == 4 * 2 * per_net * 1024
    assert fl.training_flops_per_step(HNN(1, hidden=(200, 200)), 8) == 12 * (2 * 200 + 200 * 200 + 200) * 8
    pairs = fl._products([(3, 5)], 4, 2, torch.float32, torch.device("cpu"))
    assert [tuple(a.shape) + tuple(b.shape) for a, b in pairs] == [(4, 3, 3, 5), (4, 5, 5, 3)] * 2


def test_identify_benchmark_rows_and_table_on_a_small_grid(wandb_disabled_one_thread):
    """Two observation densities of the mass-spring (3 trajectories, noise 0.05): one row per method and density,
    the relative error and z computed from the estimate and the std, and one table row per density."""
    from benchmarks import _common

    bench = _common.load_script("bench_identify")
    rows = bench.measure(3, [0.05], [1, 2], cases=["mass_spring"])
    assert [(r["method"], r["every"], r["n_obs"]) for r in rows] == [
        ("enkf", 1, 45), ("gradient", 1, 45), ("enkf", 2, 23), ("gradient", 2, 23)]
    for r in rows:
        assert r["error"] is None and r["truth"] == 2.0
        assert r["relative_error"] == pytest.approx(abs(r["estimate"] - 2.0) / 2.0)
        assert r["z"] == pytest.approx(abs(r["estimate"] - 2.0) / r["std"])
        assert r["relative_error"] < 0.05  # k from 1.0 to within 5 % on 3 noisy trajectories
    text = bench.markdown(rows, "header")
    table = [line for line in text.splitlines() if line.startswith("| mass_spring (k) |")]
    assert len(table) == 2 and all(line.count(" | ") == 4 for line in table)
    assert "| gradient | 2/2 |" in text
