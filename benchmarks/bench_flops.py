"""The machine's limit: the floating-point rate hnnlab achieves against torch.mm's on the same shapes, in one run.

Two workloads at batch 1024, float32, on the CPU by default:

- **rollout**: a trained spring ``SeparableHNN`` (two 1-200-200-1 tanh networks, ``T(p)`` and ``V(q)``) rolled out
  with ``rollout(model, "leapfrog", x0, dt, n_steps)`` under ``torch.no_grad``;
- **training step**: one full-batch step of an ``HNN`` (2-200-200-1) on derivative matching (forward, the
  input gradient with ``create_graph``, the loss, the backward through both, Adam).

Operations are counted from the layer shapes, matrix products only (a product ``(B, n) @ (n, m)`` is
``2 B n m``; activations, their derivatives, additions and the optimiser are left out, so the count is a lower
bound). For a network with layers ``(n_i, m_i)`` write ``S = sum_i n_i m_i`` (per sample):

- one half-field evaluation of the separable HNN (``dV/dq`` or ``dT/dp``): the forward products (``2 S``) and the
  input-gradient products ``g W_i^T`` (``2 S``): ``4 S``; a leapfrog step in a rollout evaluates each half once
  (its first kick reuses the last step's force): ``4 (S_T + S_V)`` per state and step;
- the HNN training step: forward ``2 S``, input gradient ``2 S``, and the backward of the loss through both
  (each of the ``2`` products per layer has two operand gradients, ``2 x 2 x 2 S``): ``12 S`` per sample.

The reference rate is ``torch.mm`` on exactly those products (same shapes, same dtype, same threads), timed in
the same run: the rate the machine gives these shapes, which small layers (``(1024, 1) @ (1, 200)``) keep well
below its peak. The ratio achieved / mm is the figure of merit; targets >= 0.5 (rollout) and >= 0.3 (training).

Usage: ``python benchmarks/bench_flops.py [--device cpu] [--threads 1] [--repeats 3]``; writes
``benchmarks/results/bench_flops.md`` and ``.csv`` (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

try:  # imported from the repository root (tests, run_all.py imported as benchmarks.run_all)
    from benchmarks import _common
except ImportError:  # run as a script: benchmarks/ is on sys.path
    import _common

from hnnlab.models import HNN, SeparableHNN
from hnnlab.rollout import rollout

HERE = Path(__file__).resolve().parent
BATCH = 1024
TARGETS = {"rollout": 0.5, "training step": 0.3}


def layer_shapes(module: torch.nn.Module) -> list[tuple[int, int]]:
    """``(in_features, out_features)`` of every ``nn.Linear`` in ``module``, in order."""
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, torch.nn.Linear)]


def rollout_flops_per_step(model: SeparableHNN, batch: int) -> int:
    """Matrix-product operations of one leapfrog step of a rollout: ``4 (S_T + S_V)`` per state."""
    shapes = layer_shapes(model.kinetic_net) + layer_shapes(model.potential_net)
    s = sum(n * m for n, m in shapes)
    return 4 * s * batch


def training_flops_per_step(model: HNN, batch: int) -> int:
    """Matrix-product operations of one derivative-matching step of an HNN: ``12 S`` per sample."""
    return 12 * sum(n * m for n, m in layer_shapes(model)) * batch


def _products(shapes: list[tuple[int, int]], batch: int, copies: int, dtype: torch.dtype,
              device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The operand pairs of the counted products: per layer ``(B, n) @ (n, m)`` and ``(B, m) @ (m, n)``, each
    ``copies`` times (``2 x copies`` products of ``2 B n m`` operations per layer)."""
    g = torch.Generator().manual_seed(0)
    pairs = []
    for n, m in shapes:
        for _ in range(copies):
            pairs.append((torch.randn(batch, n, generator=g).to(device, dtype), torch.randn(n, m, generator=g)
                          .to(device, dtype)))
            pairs.append((torch.randn(batch, m, generator=g).to(device, dtype), torch.randn(m, n, generator=g)
                          .to(device, dtype)))
    return pairs


def _best_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeats):
        _common.synchronize(device)
        start = time.perf_counter()
        fn()
        _common.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def mm_rate(pairs: list[tuple[torch.Tensor, torch.Tensor]], rounds: int, repeats: int, device: torch.device) -> float:
    """Operations per second of ``torch.mm`` over ``pairs``, ``rounds`` times (best of ``repeats``)."""
    ops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in pairs) * rounds

    def run() -> None:
        for _ in range(rounds):
            for a, b in pairs:
                torch.mm(a, b)

    run()  # warm-up
    return ops / _best_seconds(run, repeats, device)


def measure_rollout(model: SeparableHNN, x0: torch.Tensor, dt: float, n_steps: int, repeats: int,
                    device: torch.device) -> dict:
    model = model.to(device)
    x0 = x0.to(device)
    with torch.no_grad():
        rollout(model, "leapfrog", x0, dt, 10)  # warm-up
        seconds = _best_seconds(lambda: rollout(model, "leapfrog", x0, dt, n_steps), repeats, device)
    ops = rollout_flops_per_step(model, x0.shape[0]) * n_steps
    shapes = layer_shapes(model.kinetic_net) + layer_shapes(model.potential_net)
    reference = mm_rate(_products(shapes, x0.shape[0], 1, x0.dtype, device), max(1, n_steps // 10), repeats, device)
    achieved = ops / seconds
    return {"workload": "rollout", "model": "SeparableHNN 1-200-200-1 x2", "batch": x0.shape[0],
            "ops_per_step": ops // n_steps, "achieved_gflops": achieved / 1e9, "mm_gflops": reference / 1e9,
            "ratio": achieved / reference, "target": TARGETS["rollout"]}


def measure_training(batch: int, n_steps: int, repeats: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = HNN(1, hidden=(200, 200)).to(device)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 2, generator=g).to(device)
    target = torch.randn(batch, 2, generator=g).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def steps() -> None:
        for _ in range(n_steps):
            opt.zero_grad()
            loss = (model(0.0, x) - target).pow(2).mean()
            loss.backward()
            opt.step()

    steps()  # warm-up
    seconds = _best_seconds(steps, repeats, device)
    ops = training_flops_per_step(model, batch) * n_steps
    # The counted products: per layer 2 (forward, input gradient) + 4 (their operand gradients) = 3 pairs.
    reference = mm_rate(_products(layer_shapes(model), batch, 3, x.dtype, device), n_steps, repeats, device)
    achieved = ops / seconds
    return {"workload": "training step", "model": "HNN 2-200-200-1", "batch": batch,
            "ops_per_step": ops // n_steps, "achieved_gflops": achieved / 1e9, "mm_gflops": reference / 1e9,
            "ratio": achieved / reference, "target": TARGETS["training step"]}


def trained_separable_hnn(device: torch.device) -> tuple[SeparableHNN, torch.Tensor, float]:
    """The spring separable HNN of ``bench_hnn_rollout`` (trained briefly), its test initial states and ``dt``."""
    module = _common.load_script("bench_hnn_rollout")
    models, initial, dt = module.trained_models(200, torch.device("cpu"))
    return models["SeparableHNN"].to(device), initial, dt


def run(device: torch.device, repeats: int, quick: bool = False) -> list[dict]:
    model, initial, dt = trained_separable_hnn(device)
    x0 = initial[torch.arange(BATCH) % initial.shape[0]]
    return [
        measure_rollout(model, x0, dt, 50 if quick else 500, repeats, device),
        measure_training(BATCH, 5 if quick else 50, repeats, device),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    parser.add_argument("--out", default=str(HERE / "results" / "bench_flops"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run(torch.device(args.device), args.repeats, args.quick)
    lines = [f"# Achieved floating-point rate against torch.mm on the same shapes ({args.device}, "
             f"{args.threads} thread{'s' if args.threads > 1 else ''})", "",
             "| workload | model | batch | ops/step | achieved GFLOP/s | torch.mm GFLOP/s | ratio | target |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        met = "met" if r["ratio"] >= r["target"] else "missed"
        lines.append(f"| {r['workload']} | {r['model']} | {r['batch']} | {r['ops_per_step']:.3g} | "
                     f"{r['achieved_gflops']:.2f} | {r['mm_gflops']:.2f} | {r['ratio']:.2f} | >= {r['target']} "
                     f"({met}) |")
    _common.write_results(Path(args.out), "\n".join(lines), rows)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
