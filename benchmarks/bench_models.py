"""Training-step speed of hnnlab's HNN and LNN against their baselines, side by side in one run.

1. HNN: one Adam step on a batch of 1024 mass-spring states, network 2-200-200-1 tanh, loss = MSE between
   the HNN vector field ``(dH/dp, -dH/dq)`` and the true ``dx/dt``. Baseline: the same step for a plain
   MLP 2-200-200-2 that predicts ``dx/dt`` directly (Greydanus et al. 2019's baseline; one backward pass
   instead of a double backward). Target: HNN step <= 2.5x the plain MLP step.
2. LNN: one Adam step on a batch of 256 double-pendulum states, network 4-500-500-1 softplus, loss = L1
   between the Euler-Lagrange accelerations and the closed-form ones (Cranmer et al. 2020). Baseline:
   the same step computed with a per-sample loop (``torch.autograd.functional.hessian`` and
   ``jacobian`` of ``L`` for each sample, then a solve). Target: hnnlab >= 40x faster than the loop.

Each hnnlab model is timed with ``backend="autograd"`` (the default) and ``backend="func"``; with
``--compile`` the func form's loss is also wrapped in ``torch.compile`` (compile time reported apart).
Candidates are timed in interleaved rounds (the median per-step time over rounds is reported) so
that load from other processes hits all of them alike. Both sides of each pair start from the same
weights and the script checks that their predictions agree.

Usage: ``python benchmarks/bench_models.py [--device cpu] [--rounds 5] [--compile]``; writes
``benchmarks/results/bench_models.md`` and ``.csv`` (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from hnnlab.models import HNN, LNN, MLP
from hnnlab.systems import DoublePendulum, MassSpring

try:  # imported from the repository root (tests, run_all.py imported as benchmarks.run_all)
    from benchmarks._common import write_results
except ImportError:  # run as a script, or loaded by run_all.py run as one: benchmarks/ is on sys.path
    from _common import write_results

HNN_TARGET, LNN_TARGET = 2.5, 40.0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(
    candidates: dict[str, Callable[[], object]], steps: dict[str, int], rounds: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per step of each candidate over ``rounds`` interleaved rounds."""
    per_step: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, step in candidates.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(steps[name]):
                step()
            synchronize(device)
            per_step[name].append((time.perf_counter() - start) / steps[name])
    return {name: statistics.median(values) for name, values in per_step.items()}


def adam_step(module: nn.Module, loss_fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        return loss

    return step


def warm_up(step: Callable[[], object], n: int = 3) -> float:
    """Run ``n`` steps; return the seconds of the first (compile time for compiled steps)."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(n - 1):
        step()
    return first


# ------------------------------------------------------------------------------------------------
# HNN against a plain MLP.


def bench_hnn(device: torch.device, rounds: int, compile_: bool, batch: int = 1024) -> list[dict]:
    system = MassSpring()
    x = system.sample_initial_states(batch, torch.Generator().manual_seed(0), dtype=torch.float32, device=device)
    target = system.vector_field(0.0, x)  # (batch, 2)

    torch.manual_seed(0)
    hnn = HNN(1, hidden=(200, 200), activation="tanh").to(device)
    hnn_func = copy.deepcopy(hnn)
    hnn_func.backend = "func"
    mlp = MLP(2, (200, 200), 2, activation="tanh", bias_last=True, orthogonal_init=True).to(device)

    candidates: dict[str, Callable[[], object]] = {
        "plain MLP": adam_step(mlp, lambda: ((mlp(x) - target) ** 2).mean()),
        "hnnlab HNN (autograd)": adam_step(hnn, lambda: ((hnn(0.0, x) - target) ** 2).mean()),
        "hnnlab HNN (func)": adam_step(hnn_func, lambda: ((hnn_func(0.0, x) - target) ** 2).mean()),
    }
    compile_s: dict[str, float] = {}
    if compile_:
        hnn_compiled = copy.deepcopy(hnn_func)
        mlp_compiled = copy.deepcopy(mlp)
        hnn_loss = torch.compile(lambda: ((hnn_compiled(0.0, x) - target) ** 2).mean())
        mlp_loss = torch.compile(lambda: ((mlp_compiled(x) - target) ** 2).mean())
        candidates["plain MLP + torch.compile"] = adam_step(mlp_compiled, mlp_loss)
        candidates["hnnlab HNN (func) + torch.compile"] = adam_step(hnn_compiled, hnn_loss)
    with torch.no_grad():
        agreement = float((hnn(0.0, x) - hnn_func(0.0, x)).abs().max())
    for name, step in candidates.items():
        compile_s[name] = warm_up(step)
    seconds = time_interleaved(candidates, dict.fromkeys(candidates, 20), rounds, device)
    base = seconds["plain MLP"]
    return result_rows(
        f"HNN step (batch {batch}, 2-200-200-1 tanh, Adam)", seconds, {n: s / base for n, s in seconds.items()},
        "time / plain MLP step", compile_s, ("hnnlab HNN (autograd)", f"<= {HNN_TARGET:g}x"),
        ("hnnlab HNN (func)", f"autograd vs func max |diff| {agreement:.1e}"),
    )


def result_rows(
    benchmark: str, seconds: dict[str, float], ratios: dict[str, float], ratio_meaning: str,
    first_step_s: dict[str, float], target: tuple[str, str], check: tuple[str, str],
) -> list[dict]:
    """One result row per candidate; ``target`` and ``check`` are ``(candidate, text)`` for the one row that
    carries each."""
    return [
        {
            "benchmark": benchmark,
            "candidate": name,
            "ms_per_step": 1e3 * s,
            "ratio": ratios[name],
            "ratio_meaning": ratio_meaning,
            "target": target[1] if name == target[0] else "",
            "first_step_s": first_step_s[name],
            "check": check[1] if name == check[0] else "",
        }
        for name, s in seconds.items()
    ]


# ------------------------------------------------------------------------------------------------
# LNN against a per-sample Hessian loop.


def loop_accelerations(net: nn.Module, x: Tensor) -> Tensor:
    """The naive way: one Hessian and one gradient of ``L`` per sample, in a Python loop."""

    def L(xi: Tensor) -> Tensor:  # (4,) -> ()
        return net(xi).squeeze(-1)

    rows = []
    for xi in x:  # (4,)
        grad = torch.autograd.functional.jacobian(L, xi, create_graph=True)  # (4,)
        hess = torch.autograd.functional.hessian(L, xi, create_graph=True)  # (4, 4)
        mass, mixed = hess[2:, 2:], hess[2:, :2]
        rows.append(torch.linalg.solve(mass, grad[:2] - mixed @ xi[2:]))
    return torch.stack(rows)  # (batch, 2)


def bench_lnn(device: torch.device, rounds: int, compile_: bool, loop_steps: int, batch: int = 256) -> list[dict]:
    system = DoublePendulum()
    x = system.sample_initial_states(batch, torch.Generator().manual_seed(0), dtype=torch.float32, device=device)
    target = system.accelerations(x)  # (batch, 2)

    torch.manual_seed(0)
    lnn = LNN(2, hidden=(500, 500), activation="softplus").to(device)
    lnn_func = copy.deepcopy(lnn)
    lnn_func.backend = "func"
    loop_net = copy.deepcopy(lnn.net)

    candidates: dict[str, Callable[[], object]] = {
        "per-sample Hessian loop": adam_step(loop_net, lambda: (loop_accelerations(loop_net, x) - target).abs().mean()),
        "hnnlab LNN (autograd)": adam_step(lnn, lambda: (lnn.accelerations(x) - target).abs().mean()),
        "hnnlab LNN (func)": adam_step(lnn_func, lambda: (lnn_func.accelerations(x) - target).abs().mean()),
    }
    if compile_:
        lnn_compiled = copy.deepcopy(lnn_func)
        loss = torch.compile(lambda: (lnn_compiled.accelerations(x) - target).abs().mean())
        candidates["hnnlab LNN (func) + torch.compile"] = adam_step(lnn_compiled, loss)
    # Same mathematics: in float64 the loop and hnnlab agree to rounding (float32 random networks have
    # ill-conditioned mass matrices, so their float32 answers differ at the 1e-4 relative level).
    net64, x64 = copy.deepcopy(lnn).double(), x[:16].double()
    reference = loop_accelerations(net64.net, x64).detach()
    agreement = float((net64.accelerations(x64) - reference).abs().max() / reference.abs().max())
    first = {name: warm_up(step, n=1 if "loop" in name else 3) for name, step in candidates.items()}
    steps = {name: loop_steps if "loop" in name else 10 for name in candidates}
    seconds = time_interleaved(candidates, steps, rounds, device)
    loop = seconds["per-sample Hessian loop"]
    return result_rows(
        f"LNN step (double pendulum, batch {batch}, 4-500-500-1 softplus, Adam)", seconds,
        {n: loop / s for n, s in seconds.items()}, "speed-up over the loop", first,
        ("hnnlab LNN (autograd)", f">= {LNN_TARGET:g}x"),
        ("hnnlab LNN (autograd)", f"float64 loop vs hnnlab max rel. diff {agreement:.1e}"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median reported)")
    parser.add_argument("--loop-steps", type=int, default=1, help="steps of the slow loop per round")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time torch.compile of the func backend")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--only", choices=["hnn", "lnn"], default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_models"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    rows: list[dict] = []
    if args.only in (None, "hnn"):
        rows += bench_hnn(device, args.rounds, args.compile)
    if args.only in (None, "lnn"):
        rows += bench_lnn(device, args.rounds, args.compile, args.loop_steps)

    where = f"{device.type} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor()})"
    header = (
        f"Training steps, float32, device {where}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"median of {args.rounds} interleaved rounds. Targets: HNN step <= {HNN_TARGET:g}x a plain MLP step; "
        f"LNN step >= {LNN_TARGET:g}x faster than a per-sample Hessian loop."
    )
    columns = ["benchmark", "candidate", "ms/step", "ratio", "target", "first step (s)", "check"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append(
            f"| {r['benchmark']} | {r['candidate']} | {r['ms_per_step']:.2f} | {r['ratio']:.2f}x "
            f"({r['ratio_meaning']}) | {r['target']} | {r['first_step_s']:.2f} | {r['check']} |"
        )
    verdicts = []
    for r in rows:
        if r["candidate"] == "hnnlab HNN (autograd)":
            ok = r["ratio"] <= HNN_TARGET
            verdicts.append(f"HNN step / plain MLP step: {r['ratio']:.2f}x ({'meets' if ok else 'MISSES'} "
                            f"the <= {HNN_TARGET:g}x target).")
        if r["candidate"] == "hnnlab LNN (autograd)":
            ok = r["ratio"] >= LNN_TARGET
            verdicts.append(f"LNN speed-up over the per-sample loop: {r['ratio']:.1f}x ({'meets' if ok else 'MISSES'} "
                            f"the >= {LNN_TARGET:g}x target).")
    compiled = {r["candidate"]: r for r in rows}
    for kind in ("HNN", "LNN"):
        plain, comp = compiled.get(f"hnnlab {kind} (func)"), compiled.get(f"hnnlab {kind} (func) + torch.compile")
        if plain and comp:
            gain = plain["ms_per_step"] / comp["ms_per_step"]
            verdicts.append(f"torch.compile on the {kind} func backend: {gain:.2f}x faster per step, after "
                            f"{comp['first_step_s']:.0f} s of compilation.")
    print(header)
    print("\n".join(lines))
    print("\n".join(verdicts))

    body = "\n".join(lines) + "\n\n" + "\n\n".join(verdicts)
    write_results(Path(args.out), f"# Model training-step benchmark\n\n{header}\n\n{body}\n", rows)


if __name__ == "__main__":
    main()
