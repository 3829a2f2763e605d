"""Work-precision: the cost of reaching a given accuracy over a long horizon, hnnlab's symplectic methods against
torchdiffeq's and scipy's adaptive ones, side by side in one run (the way SciMLBenchmarks shows it).

For each problem (the analytic pendulum and Henon-Heiles, and a separable HNN trained on the pendulum) and each
horizon ``T``, every method integrates the same batch of initial states from 0 to ``T``, and we record

- the final relative energy error ``max_b |E(T) - E(0)| / |E(0)|`` (the true energy for analytic problems, the
  model's own for the HNN),
- the final state error ``max_b |x(T) - x_ref(T)|`` against scipy's DOP853 at ``rtol = atol = 1e-13`` (analytic
  problems; the initial states are in the regular regime, where the reference is meaningful over ``T``),
- the wall time (best of ``--repeats``) and the field evaluations (per state; a half field of a splitting
  method counts 0.5).

hnnlab's fixed-step methods run at a sweep of step sizes through ``hnnlab.rollout.solve`` (only the final state
kept); torchdiffeq's ``dopri5``/``dopri8`` run as a torchdiffeq user runs them, one ``odeint`` over ``[0, T]`` on
the whole batch, at a sweep of tolerances ``rtol = atol``; scipy's ``DOP853`` runs ``solve_ivp`` on the batch as
one vectorised system (numpy right-hand side), at the same tolerances. Everything in float64, one thread.

hnnlab's best explicit methods (:data:`COMPILED`) also run with ``solve(..., compile=True)`` (chunks of steps through
one ``torch.compile``d function, :mod:`hnnlab.compiled`), as separate methods "<name> (compiled)" at the same step
sizes, on the analytic problems (the learned HNN computes its forces with ``torch.autograd.grad``, which does not
compile into one graph). A compiled point is timed after a warm-up run of the same solve (best of ``--repeats``,
excluding the one-off compile); its ``compile_seconds`` (first run minus the best run: the compile, with the
inductor's on-disk cache as it stands) is recorded beside it in the CSV and the Markdown.

The target (issue 18): at a final relative energy error of 1e-8 over 1e4 time units on Henon-Heiles, hnnlab's
best method takes at least 10x less wall time than the best of torchdiffeq and scipy. Each method's
(error, time) curve is interpolated log-linearly in log-log between the two runs that bracket 1e-8 (the cost at
exactly 1e-8); a method whose runs do not bracket it is "not bracketed".

Usage: ``python benchmarks/bench_work_precision.py [--problems pendulum henon_heiles hnn] [--horizons 1000 10000]
[--quick] [--methods "kahan_li8 (compiled)" DOP853]``; writes ``benchmarks/results/work_precision.{md,csv}`` and
one PNG per problem and horizon (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

try:  # imported from the repository root (tests, run_all.py imported as benchmarks.run_all)
    from benchmarks._common import write_results
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from _common import write_results
from torchdiffeq import odeint

from hnnlab.rollout import solve
from hnnlab.systems import get_system

HERE = Path(__file__).resolve().parent
TOLERANCES = [10.0**-k for k in range(4, 14)]
TARGET_ERROR, TARGET_RATIO = 1e-8, 10.0
# Fixed-step sweeps: step sizes per method (a method's runs stay under ~2e5 steps at T = 1e4).
STEPS = {
    "leapfrog": [0.1, 0.05, 0.02],
    "yoshida4": [0.2, 0.1, 0.05, 0.025],
    "kahan_li6": [0.4, 0.2, 0.1, 0.05],
    "yoshida6": [0.2, 0.1, 0.05],
    "kahan_li8": [0.5, 0.4, 0.25, 0.125, 0.0625],
    "yoshida8": [0.2, 0.1, 0.05],
    "implicit_midpoint": [0.1, 0.05],
    "gauss_legendre4": [0.2, 0.1],
    "gauss_legendre6": [0.4, 0.2, 0.1],
}
QUICK_STEPS = {"yoshida4": [0.2, 0.1], "kahan_li8": [0.5, 0.25], "gauss_legendre6": [0.4]}
COMPILED = ("leapfrog", "yoshida6", "kahan_li8")  # also run with solve(..., compile=True), at the same step sizes
QUICK_TOLERANCES = [1e-6, 1e-9, 1e-12]


@dataclass
class Problem:
    name: str
    field: Callable  # f(t, x), torch
    energy: Callable  # (..., dim) -> (...)
    x0: torch.Tensor  # (batch, dim) float64
    numpy_rhs: Callable | None  # (dim * batch,) -> same, for scipy; None when there is no closed form
    compiles: bool = True  # whether solve(..., compile=True) can step the field (one graph)


def _henon_heiles() -> Problem:
    system = get_system("henon_heiles", energy_range=(0.05, 0.1))
    x0 = system.sample_initial_states(8, torch.Generator().manual_seed(0))

    def rhs(t, y):
        x, q2, px, py = y.reshape(-1, 4).T
        return np.stack([px, py, -x - 2 * x * q2, -q2 - x * x + q2 * q2], axis=1).ravel()

    return Problem("henon_heiles", system, system.energy, x0, rhs)


def _pendulum() -> Problem:
    system = get_system("pendulum")
    x0 = system.sample_initial_states(8, torch.Generator().manual_seed(0))
    inertia, torque = system.m * system.l**2, system.m * system.g * system.l

    def rhs(t, y):
        q, p = y.reshape(-1, 2).T
        return np.stack([p / inertia, -torque * np.sin(q)], axis=1).ravel()

    return Problem("pendulum", system, system.energy, x0, rhs)


def _trained_hnn(seconds: float = 60.0) -> Problem:
    """A separable HNN fitted to the pendulum's vector field for about ``seconds`` (full batch, Adam)."""
    from hnnlab.models import SeparableHNN

    system = get_system("pendulum")
    torch.manual_seed(0)
    model = SeparableHNN(1).double()
    states = system.sample_initial_states(2048, torch.Generator().manual_seed(1))
    target = system(0.0, states)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        opt.zero_grad()
        loss = (model(0.0, states) - target).pow(2).mean()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x0 = system.sample_initial_states(8, torch.Generator().manual_seed(0))
    return Problem("hnn", model, model.energy, x0, None, compiles=False)


PROBLEMS = {"pendulum": _pendulum, "henon_heiles": _henon_heiles, "hnn": _trained_hnn}


class _Counted:
    """A torch field that counts its calls (for torchdiffeq)."""

    def __init__(self, f: Callable) -> None:
        self.f, self.calls = f, 0

    def __call__(self, t, x):
        self.calls += 1
        return self.f(t, x)


def _best_of(fn: Callable[[], tuple[torch.Tensor, float]], repeats: int) -> tuple[float, torch.Tensor, float]:
    best = (math.inf, None, 0.0)
    for _ in range(repeats):
        start = time.perf_counter()
        x, evals = fn()
        elapsed = time.perf_counter() - start
        if elapsed < best[0]:
            best = (elapsed, x, evals)
    return best


def _run_hnnlab(problem: Problem, method: str, dt: float, horizon: float, compile: bool = False,
                compile_steps: int | None = None) -> tuple[torch.Tensor, float]:
    n = round(horizon / dt)
    with torch.no_grad():
        sol = solve(problem.field, method, problem.x0, dt, n, n, compile=compile, compile_steps=compile_steps)
    return sol.ys[:, -1], float(sol.stats["field_evaluations"])


def _run_torchdiffeq(problem: Problem, method: str, tol: float, horizon: float) -> tuple[torch.Tensor, float]:
    f = _Counted(problem.field)
    t = torch.tensor([0.0, horizon], dtype=torch.float64)
    with torch.no_grad():
        y = odeint(f, problem.x0, t, method=method, rtol=tol, atol=tol)
    return y[-1], float(f.calls)


def _run_scipy(problem: Problem, tol: float, horizon: float) -> tuple[torch.Tensor, float]:
    from scipy.integrate import solve_ivp

    y0 = problem.x0.numpy().ravel()
    sol = solve_ivp(problem.numpy_rhs, (0.0, horizon), y0, method="DOP853", rtol=tol, atol=tol)
    return torch.from_numpy(sol.y[:, -1].reshape(problem.x0.shape)), float(sol.nfev)


def _errors(problem: Problem, x: torch.Tensor, reference: torch.Tensor | None) -> tuple[float, float]:
    e0 = problem.energy(problem.x0)
    energy_error = float(((problem.energy(x) - e0) / e0).abs().max()) if torch.isfinite(x).all() else math.inf
    state_error = math.nan if reference is None else float((x - reference).abs().max())
    return energy_error, state_error


def method_names() -> list[str]:
    """Every method the script runs, as named in its rows (``--methods`` picks among them)."""
    return [*STEPS, *(f"{m} (compiled)" for m in COMPILED), "dopri5", "dopri8", "DOP853"]


def run_problem(problem: Problem, horizon: float, repeats: int, quick: bool,
                max_seconds: float = 120.0, methods: set[str] | None = None, compile_steps: int | None = None,
                dts: set[float] | None = None) -> list[dict]:
    """Every method's sweep on ``problem`` over ``horizon`` (only ``methods`` where given, to time a few again side
    by side; the fixed-step methods only at the step sizes ``dts`` of their sweeps where given); a method's sweep
    (loose to tight) stops after a run that took more than ``max_seconds`` (its tighter settings would take longer
    still). ``compile_steps``: steps per compiled call of the compiled methods (``None``: solve's default)."""
    reference = None
    if problem.numpy_rhs is not None:
        reference = _run_scipy(problem, 1e-13, horizon)[0]
    rows = []
    steps = {m: [dt for dt in sweep if dts is None or dt in dts]
             for m, sweep in (QUICK_STEPS if quick else STEPS).items()}
    tolerances = QUICK_TOLERANCES if quick else TOLERANCES
    runs: list[tuple[str, str, float, Callable]] = []
    for method, sweep in steps.items():
        for dt in sweep:
            runs.append(("hnnlab", method, dt, lambda m=method, d=dt: _run_hnnlab(problem, m, d, horizon)))
    for method in COMPILED if problem.compiles else ():
        for dt in steps.get(method, []):
            runs.append(("hnnlab", f"{method} (compiled)", dt,
                         lambda m=method, d=dt: _run_hnnlab(problem, m, d, horizon, True, compile_steps)))
    for method in ("dopri5", "dopri8"):
        for tol in tolerances:
            runs.append(("torchdiffeq", method, tol,
                         lambda m=method, tl=tol: _run_torchdiffeq(problem, m, tl, horizon)))
    if problem.numpy_rhs is not None:
        for tol in tolerances:
            runs.append(("scipy", "DOP853", tol, lambda tl=tol: _run_scipy(problem, tl, horizon)))
    if methods is not None:
        runs = [run for run in runs if run[1] in methods]
    too_slow: set[tuple[str, str]] = set()
    for library, method, setting, fn in runs:
        if (library, method) in too_slow:
            continue
        compile_seconds = math.nan
        if method.endswith("(compiled)"):
            start = time.perf_counter()
            fn()  # compiles (or loads the compiled chunks from the on-disk cache)
            compile_seconds = time.perf_counter() - start
        seconds, x, evals = _best_of(fn, repeats)
        compile_seconds -= seconds  # the first run's time beyond a warm run
        if seconds > max_seconds:
            too_slow.add((library, method))
        energy_error, state_error = _errors(problem, x, reference)
        rows.append({
            "problem": problem.name, "horizon": horizon, "library": library, "method": method,
            "setting": setting, "seconds": seconds, "evaluations_per_state": evals,
            "energy_error": energy_error, "state_error": state_error, "compile_seconds": compile_seconds,
            "compile_steps": compile_steps if method.endswith("(compiled)") and compile_steps else "",
        })
        compiled = f"  (+ {compile_seconds:.1f} s compile)" if math.isfinite(compile_seconds) else ""
        print(f"  {problem.name} T={horizon:g} {library:11s} {method:20s} {setting:8.1e}  {seconds:8.3f} s  "
              f"dE/E {energy_error:.2e}  |dx| {state_error:.2e}{compiled}", flush=True)
    return rows


def time_at_error(rows: list[dict], target: float) -> float | None:
    """The wall time at which a method's (energy error, time) curve reaches ``target``: log-log interpolation
    between the cheapest run at or below the target and the most expensive run above it; ``None`` if its runs
    do not bracket the target."""
    pts = sorted((r["seconds"], r["energy_error"]) for r in rows if math.isfinite(r["energy_error"]))
    below = [(s, e) for s, e in pts if e <= target]
    above = [(s, e) for s, e in pts if e > target]
    if not below or not above:
        return None
    s_lo, e_lo = below[0]  # cheapest run that reaches the target
    cheaper = [(s, e) for s, e in above if s <= s_lo]
    if not cheaper:
        return s_lo
    s_hi, e_hi = cheaper[-1]  # the most expensive run that misses it, cheaper than s_lo
    if e_lo <= 0 or e_hi == e_lo:
        return s_lo
    w = (math.log(target) - math.log(e_hi)) / (math.log(e_lo) - math.log(e_hi))
    return math.exp(math.log(s_hi) + w * (math.log(s_lo) - math.log(s_hi)))


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), constrained_layout=True)
    methods = sorted({(r["library"], r["method"]) for r in rows})
    # One colour per hnnlab method, its compiled variant in the same colour, dashed with diamonds; the baselines
    # in black, grey and brown, which no hnnlab method uses.
    baseline_colours = {"dopri5": "black", "dopri8": "dimgrey", "DOP853": "saddlebrown"}
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:pink", "tab:olive", "tab:cyan",
               "gold", "navy"]
    bases = sorted({m.removesuffix(" (compiled)") for lib, m in methods if lib == "hnnlab"})
    colours = {**{b: palette[i % len(palette)] for i, b in enumerate(bases)}, **baseline_colours}
    for library, method in methods:
        compiled = method.endswith(" (compiled)")
        colour = colours[method.removesuffix(" (compiled)")]
        sel = sorted((r for r in rows if (r["library"], r["method"]) == (library, method)
                      and math.isfinite(r["energy_error"]) and r["energy_error"] > 0), key=lambda r: r["seconds"])
        if not sel:
            continue
        style = ("--D" if compiled else "-o") if library == "hnnlab" else ("--s" if library == "torchdiffeq" else ":^")
        label = f"{method} ({library})"
        for ax, key in zip(axes, ("seconds", "evaluations_per_state"), strict=True):
            ax.loglog([r[key] for r in sel], [r["energy_error"] for r in sel], style, color=colour,
                      label=label, ms=4, lw=1.2)
    first = rows[0]
    xlabels = ("wall time [s] (batch of 8, float64, 1 thread)", "field evaluations per state (a half field = 0.5)")
    for ax, xlabel in zip(axes, xlabels, strict=True):
        ax.axhline(TARGET_ERROR, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("final relative energy error |E(T) - E(0)| / |E(0)|")
        ax.grid(True, which="major", alpha=0.3)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(_minor_label(ax)))
    axes[0].set_title(f"{first['problem']}, T = {first['horizon']:g}: energy error against wall time")
    axes[1].set_title("energy error against field evaluations")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _minor_label(ax) -> Callable[[float, int], str]:
    """A label for a minor tick of ``ax``'s log x axis: where the panel spans under two decades (few major ticks)
    the ticks at 2 and 5 times a power of ten, written short (``20``, ``5e5``); none elsewhere. Matplotlib's own
    labels there (``2x10^1``, ``3x10^1``, ...) overlap."""

    def label(value: float, _pos: int) -> str:
        low, high = ax.get_xlim()
        exponent = math.floor(math.log10(value))
        mantissa = round(value / 10.0**exponent)
        if math.log10(high / low) >= 2 or mantissa not in (2, 5):
            return ""
        return f"{value:g}" if -3 <= exponent < 4 else f"{mantissa}e{exponent}"

    return label


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for (problem, horizon) in sorted({(r["problem"], r["horizon"]) for r in rows}):
        sel = [r for r in rows if (r["problem"], r["horizon"]) == (problem, horizon)]
        best: dict[str, tuple[float, str] | None] = {}
        for side in ("hnnlab", "baseline"):
            libs = ("hnnlab",) if side == "hnnlab" else ("torchdiffeq", "scipy")
            times = []
            for method in sorted({r["method"] for r in sel if r["library"] in libs}):
                t = time_at_error([r for r in sel if r["method"] == method and r["library"] in libs], TARGET_ERROR)
                if t is not None:
                    times.append((t, method))
            best[side] = min(times) if times else None
        ratio = (best["baseline"][0] / best["hnnlab"][0]) if best["hnnlab"] and best["baseline"] else None
        out.append({"problem": problem, "horizon": horizon, "hnnlab": best["hnnlab"], "baseline": best["baseline"],
                    "ratio": ratio})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--problems", nargs="+", default=["henon_heiles", "pendulum", "hnn"], choices=list(PROBLEMS))
    parser.add_argument("--horizons", nargs="+", type=float, default=[1000.0, 10000.0])
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs per point")
    parser.add_argument("--quick", action="store_true", help="a few points per method (a smoke run)")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="a method's sweep stops after a run longer than this")
    parser.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                        help="run only these methods, named as in the results (quote a compiled one: "
                        "\"kahan_li8 (compiled)\"); default: all")
    parser.add_argument("--compile-steps", type=int, default=None, metavar="N",
                        help="steps per compiled call of the compiled methods (longer chunks run faster and compile "
                        "longer); default: solve's, about 64 field evaluations per call")
    parser.add_argument("--dts", nargs="+", type=float, default=None, metavar="DT",
                        help="run the fixed-step methods only at these step sizes of their sweeps (to time the two "
                        "that bracket the target again); default: every step size")
    parser.add_argument("--out", default=str(HERE / "results" / "work_precision"), help="output stem")
    parser.add_argument("--from-csv", type=Path, default=None,
                        help="write the report and plots again from this CSV of an earlier run (nothing is timed)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.methods or ()) - set(method_names()))
    if unknown:
        parser.error(f"--methods: unknown {', '.join(map(repr, unknown))}; the methods are "
                     f"{', '.join(map(repr, method_names()))}")
    if args.compile_steps is not None and args.compile_steps < 1:
        parser.error(f"--compile-steps must be an integer >= 1, got {args.compile_steps}")
    torch.set_num_threads(1)
    rows: list[dict] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.from_csv is not None:
        replot(args.from_csv, out)
        return 0
    for name in args.problems:
        problem = PROBLEMS[name]()
        for horizon in args.horizons:
            part = run_problem(problem, horizon, args.repeats, args.quick, args.max_seconds,
                               None if args.methods is None else set(args.methods), args.compile_steps,
                               None if args.dts is None else set(args.dts))
            rows += part
            _plot(part, out.with_name(f"{out.name}_{name}_T{horizon:g}.png"))
    report(rows, out)
    return 0


def _compile_cell(seconds: float) -> str:
    """A compiled run's one-off compile time; under a second it is the timing noise of a graph that was already in
    the inductor's cache (the difference of two runs can then even be negative)."""
    return f"{seconds:.3g}" if seconds >= 1.0 else "< 1 (cached)"


def _steps_per_call(compiled: list[dict]) -> str:
    """The compiled runs' steps per call, as a sentence (nothing for solve's default, or a CSV that predates the
    column)."""
    steps = sorted({int(float(r["compile_steps"])) for r in compiled if r.get("compile_steps", "") != ""})
    return f" Steps per compiled call: {', '.join(map(str, steps))} (--compile-steps)." if steps else ""


def report(rows: list[dict], out: Path) -> None:
    """Write ``out``.md / .csv from a run's rows and print the Markdown."""
    lines = ["# Work-precision (`benchmarks/bench_work_precision.py`)", "",
             f"Wall time to a final relative energy error of {TARGET_ERROR:g} (log-log interpolation between the "
             "runs that bracket it), hnnlab's best method against the best of torchdiffeq and scipy, in one run.", "",
             "| problem | T | hnnlab best | seconds | baseline best | seconds | ratio |",
             "|---|---|---|---|---|---|---|"]
    for s in summarise(rows):
        h, b = s["hnnlab"], s["baseline"]
        best_h = f"{h[1]} | {h[0]:.3g}" if h else "not bracketed | -"
        best_b = f"{b[1]} | {b[0]:.3g}" if b else "not bracketed | -"
        ratio = f"{s['ratio']:.1f}x" if s["ratio"] else "-"
        lines.append(f"| {s['problem']} | {s['horizon']:g} | {best_h} | {best_b} | {ratio} |")
    target = [s for s in summarise(rows) if s["problem"] == "henon_heiles" and s["horizon"] == 10000.0]
    if target and target[0]["ratio"]:
        verdict = "met" if target[0]["ratio"] >= TARGET_RATIO else "missed"
        lines += ["", f"Target (Henon-Heiles, T = 1e4, >= {TARGET_RATIO:g}x): {target[0]['ratio']:.1f}x, {verdict}."]
    compiled = [r for r in rows if r["method"].endswith("(compiled)")]
    if compiled:
        lines += ["", "Compiled methods (`solve(..., compile=True)`): their seconds above exclude the one-off "
                  "compile, which is the first run's time beyond a warm run (with the inductor's on-disk cache as it "
                  f"stood).{_steps_per_call(compiled)}",
                  "",
                  "| problem | T | method | dt | seconds | compile seconds | energy error |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['problem']} | {r['horizon']:g} | {r['method']} | {r['setting']:g} | {r['seconds']:.3g} | "
                  f"{_compile_cell(r['compile_seconds'])} | {r['energy_error']:.2e} |" for r in compiled]
    write_results(out, "\n".join(lines), rows)
    print("\n".join(lines))


def replot(csv_path: Path, out: Path) -> None:
    """Write the report and one PNG per problem and horizon again from the CSV of an earlier run (nothing is
    timed): ``--from-csv``."""
    import csv

    with open(csv_path, newline="") as fh:
        rows = [{k: (v if k in ("problem", "library", "method", "compile_steps") else float(v)) for k, v in r.items()}
                for r in csv.DictReader(fh)]
    for problem, horizon in sorted({(r["problem"], r["horizon"]) for r in rows}):
        part = [r for r in rows if (r["problem"], r["horizon"]) == (problem, horizon)]
        _plot(part, out.with_name(f"{out.name}_{problem}_T{horizon:g}.png"))
    report(rows, out)


if __name__ == "__main__":
    raise SystemExit(main())
