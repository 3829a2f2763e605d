"""Compiled rollouts: wall time per step of ``solve(..., compile=True)`` against the eager loop, in one run.

Cases (float64, one thread, only the final state kept): Henon-Heiles at batch 8 with leapfrog (``dt = 0.1``, 2000
steps) and Kahan-Li 8 (``dt = 0.25``, 400 steps) in their default chunks, and with ``--hnn`` a ``HNN(1,
backend="func")`` (200-200 tanh, untrained) with rk4 at batch 8 and 1024 (64 steps, ``compile_steps=16``). Each
compiled case is called once first (the compile, or its load from inductor's on-disk cache: ``first call`` in the
table), then eager and compiled are timed alternately, best of ``--repeats``; the largest difference between the two
final states is reported (round-off).

Usage: ``python benchmarks/bench_compiled.py [--hnn] [--repeats 5]``; writes
``benchmarks/results/bench_compiled.{md,csv}``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

try:  # imported from the repository root
    from benchmarks._common import markdown_table, write_results
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from _common import markdown_table, write_results

from hnnlab.rollout import solve
from hnnlab.systems import get_system

HERE = Path(__file__).resolve().parent


def _cases(hnn: bool) -> list[tuple[str, object, str, torch.Tensor, float, int, int | None]]:
    """``(label, field, method, x0, dt, n_steps, compile_steps)``."""
    hh = get_system("henon_heiles", energy_range=(0.05, 0.1))
    x0 = hh.sample_initial_states(8, torch.Generator().manual_seed(0))
    cases = [("Henon-Heiles", hh, "leapfrog", x0, 0.1, 2000, None),
             ("Henon-Heiles", hh, "kahan_li8", x0, 0.25, 400, None)]
    if hnn:
        from hnnlab.models import HNN

        torch.manual_seed(0)
        model = HNN(1, backend="func").double().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        for batch in (8, 1024):
            x = torch.randn(batch, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.5
            cases.append(('HNN(1, backend="func")', model, "rk4", x, 0.1, 64, 16))
    return cases


def _best(fn: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(hnn: bool, repeats: int) -> list[dict]:
    rows = []
    with torch.no_grad():
        for label, field, method, x0, dt, n, steps in _cases(hnn):
            def eager(field=field, method=method, x0=x0, dt=dt, n=n):
                return solve(field, method, x0, dt, n, n)

            def compiled(field=field, method=method, x0=x0, dt=dt, n=n, steps=steps):
                return solve(field, method, x0, dt, n, n, compile=True, compile_steps=steps)

            start = time.perf_counter()
            first = compiled()
            first_call = time.perf_counter() - start
            t_eager, t_compiled = math.inf, math.inf
            for _ in range(repeats):  # alternate, so that a change of load hits both
                t_eager = min(t_eager, _best(eager, 1))
                t_compiled = min(t_compiled, _best(compiled, 1))
            difference = float((first.ys - eager().ys).abs().max())
            rows.append({"field": label, "method": method, "batch": x0.shape[0], "dt": dt, "steps": n,
                         "compile_steps": steps or "default", "eager_us_per_step": t_eager / n * 1e6,
                         "compiled_us_per_step": t_compiled / n * 1e6, "ratio": t_eager / t_compiled,
                         "first_call_s": first_call, "max_difference": difference})
            r = rows[-1]
            print(f"{label} {method} batch {r['batch']}: eager {r['eager_us_per_step']:.1f} us/step, compiled "
                  f"{r['compiled_us_per_step']:.1f} us/step ({r['ratio']:.1f}x), first call {first_call:.1f} s, "
                  f"max |difference| {difference:.1e}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hnn", action="store_true", help="also a func-backend HNN at batch 8 and 1024 (long compile)")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs per case")
    parser.add_argument("--out", default=str(HERE / "results" / "bench_compiled"), help="output stem")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = measure(args.hnn, args.repeats)
    table = markdown_table(
        ["field", "method", "batch", "eager us/step", "compiled us/step", "ratio", "chunk", "first call s",
         "max abs difference"],
        [[r["field"], r["method"], r["batch"], f"{r['eager_us_per_step']:.1f}", f"{r['compiled_us_per_step']:.1f}",
          f"{r['ratio']:.1f}x", r["compile_steps"], f"{r['first_call_s']:.1f}", f"{r['max_difference']:.1e}"]
         for r in rows])
    text = ("# Compiled rollouts (`benchmarks/bench_compiled.py`)\n\n`solve(..., compile=True)` against the eager "
            "loop, side by side in one run (float64, one thread, best of "
            f"{args.repeats}); the first call compiles, or loads from inductor's on-disk cache.\n\n{table}\n")
    write_results(Path(args.out), text, rows)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
