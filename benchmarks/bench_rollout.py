"""Rollout speed: hnnlab's leapfrog rollout against torchdiffeq's fixed-step RK4, side by side.

Both integrate the analytic pendulum (``hnnlab.systems.Pendulum``, closed-form vector field) from the same
batch of initial states with the same step size and number of steps, keeping every state, under
``torch.no_grad``: hnnlab with ``rollout(system, "leapfrog", x0, dt, n_steps)``, torchdiffeq with
``odeint(system, x0, t, method="rk4", options=dict(step_size=dt))`` on the grid ``t = dt * arange(n_steps + 1)``.
The figure of merit is state-steps per second (``batch * n_steps / seconds``, best of ``--repeats``); the
target is hnnlab >= 5x torchdiffeq at batch 1024 on CPU. (Leapfrog is the method hnnlab rolls out with;
RK4 is what a torchdiffeq user gets at a fixed step: the comparison is of the two ways to do the job.)

Usage: ``python benchmarks/bench_rollout.py [--device cpu] [--dtype float32] [--repeats 3]``; writes
``benchmarks/results/bench_rollout.md`` and ``.csv`` (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torchdiffeq import odeint

from hnnlab.rollout import rollout
from hnnlab.systems import Pendulum

# (batch, n_steps): fewer steps for the big batch
CASES = [(1, 2000), (1024, 2000), (65536, 200)]
TARGET_BATCH, TARGET_RATIO = 1024, 5.0


def _timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def best_times(
    fns: list[Callable[[], torch.Tensor]], repeats: int, device: torch.device
) -> list[tuple[float, torch.Tensor]]:
    """Best time of each function over ``repeats`` rounds; the functions alternate within a round so that
    a change of machine load affects both sides alike."""
    best: list[tuple[float, torch.Tensor]] = [(float("inf"), None)] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            elapsed, out = _timed(fn, device)
            if elapsed < best[i][0]:
                best[i] = (elapsed, out)
    return best


def run_case(batch: int, n_steps: int, dt: float, dtype: torch.dtype, device: torch.device, repeats: int) -> dict:
    system = Pendulum()
    x0 = system.sample_initial_states(batch, torch.Generator().manual_seed(0), dtype=dtype, device=device)
    t = dt * torch.arange(n_steps + 1, dtype=dtype, device=device)

    def hnnlab_leapfrog() -> torch.Tensor:
        with torch.no_grad():
            return rollout(system, "leapfrog", x0, dt, n_steps)  # (batch, n_steps + 1, 2)

    def torchdiffeq_rk4() -> torch.Tensor:
        with torch.no_grad():
            return odeint(system, x0, t, method="rk4", options={"step_size": dt})  # (n_steps + 1, batch, 2)

    hnnlab_leapfrog(), torchdiffeq_rk4()  # warm-up
    (t_hnn, out_hnn), (t_tde, out_tde) = best_times([hnnlab_leapfrog, torchdiffeq_rk4], repeats, device)
    # sanity: both solved the same problem (leapfrog's O(dt^2) error at dt = 0.01 is ~1e-4 over 20 s)
    agreement = float((out_hnn.transpose(0, 1) - out_tde).abs().max())
    return {
        "batch": batch,
        "n_steps": n_steps,
        "hnnlab_leapfrog_s": t_hnn,
        "torchdiffeq_rk4_s": t_tde,
        "hnnlab_state_steps_per_s": batch * n_steps / t_hnn,
        "torchdiffeq_state_steps_per_s": batch * n_steps / t_tde,
        "ratio": t_tde / t_hnn,
        "max_abs_difference": agreement,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--dt", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every case's step count")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_rollout"))
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    rows = []
    for batch, n_steps in CASES:
        n = max(10, int(n_steps * args.steps_scale))
        rows.append(run_case(batch, n, args.dt, dtype, device, args.repeats))

    where = f"{device.type} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.machine()})"
    header = (
        f"Pendulum rollouts, {args.dtype}, dt = {args.dt}, device {where}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, best of {args.repeats} (alternating). "
        f"Target: ratio >= {TARGET_RATIO:g} at batch {TARGET_BATCH}."
    )
    columns = ["batch", "steps", "hnnlab leapfrog (state-steps/s)", "torchdiffeq rk4 (state-steps/s)", "ratio",
               "max |difference|"]
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for r in rows:
        lines.append(
            f"| {r['batch']} | {r['n_steps']} | {r['hnnlab_state_steps_per_s']:.3g} | "
            f"{r['torchdiffeq_state_steps_per_s']:.3g} | {r['ratio']:.2f}x | {r['max_abs_difference']:.1e} |"
        )
    target = next((r for r in rows if r["batch"] == TARGET_BATCH), None)
    verdict = (
        f"Ratio at batch {TARGET_BATCH}: {target['ratio']:.2f}x "
        f"({'meets' if target['ratio'] >= TARGET_RATIO else 'BELOW'} the {TARGET_RATIO:g}x target)."
        if target else ""
    )
    print(header)
    print("\n".join(lines))
    print(verdict)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(f"# Rollout speed\n\n{header}\n\n" + "\n".join(lines) + f"\n\n{verdict}\n")
    with out.with_suffix(".csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["device", "dtype", "dt", *rows[0].keys()])
        writer.writeheader()
        for r in rows:
            writer.writerow({"device": where, "dtype": args.dtype, "dt": args.dt, **r})


if __name__ == "__main__":
    main()
