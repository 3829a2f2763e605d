"""Time to train the Greydanus mass-spring HNN: ``hnnlab fit`` against the published training loop.

Workload (REFERENCE.md): the greydanus-spring dataset (750 train / 750 test pairs, noise 0.1), an
MLP 2-200-200 tanh HNN with orthogonal init, Adam lr 1e-3 and weight decay 1e-4, 2000 full-batch
derivative-matching steps, float32.

- baseline: a plain PyTorch loop written the way the published code does it: the inputs are leaves
  with ``requires_grad``, the network outputs two scalars of which the solenoidal one is used, one
  ``autograd.grad(create_graph=True)`` per step, ``backward``, ``step``, and after every step a test
  forward (the same ``autograd.grad`` on the test inputs) with both losses read with ``.item()``;
- hnnlab: ``hnnlab fit --config configs/spring_hnn.yaml`` in this process (W&B disabled, so neither side
  logs to disk; checkpoints, validation and the rollout callback stay as configured), timed from the
  call to its return; its test loss is then computed from the last checkpoint.

Both run in the same process with the same number of intra-op threads (``--threads``, 1 by default:
on a shared CPU more threads make small models several times slower and the timings unstable) and
alternate over ``--rounds``; the median wall time of each is reported, with the final test losses
(they must agree: the same model, data, optimizer and number of steps). Target: hnnlab >= 3x faster.

Usage: ``python benchmarks/bench_training.py [--steps 2000] [--rounds 1] [--threads 1]``; writes
``benchmarks/results/bench_training.md`` and ``.csv``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

try:  # imported from the repository root (tests, run_all.py imported as benchmarks.run_all)
    from benchmarks._common import write_results
except ImportError:  # run as a script, or loaded by run_all.py run as one: benchmarks/ is on sys.path
    from _common import write_results

TARGET = 3.0
ROOT = Path(__file__).resolve().parents[1]


def published_loop(x: torch.Tensor, dxdt: torch.Tensor, test_x: torch.Tensor, test_dxdt: torch.Tensor,
                   steps: int, seed: int) -> tuple[float, float]:
    """The published training loop; returns (final test loss, seconds)."""
    torch.manual_seed(seed)
    layers = [nn.Linear(2, 200), nn.Linear(200, 200), nn.Linear(200, 2, bias=False)]
    for layer in layers:
        nn.init.orthogonal_(layer.weight)
    net = nn.Sequential(layers[0], nn.Tanh(), layers[1], nn.Tanh(), layers[2])
    M = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])  # solenoidal field: (dF/dp, -dF/dq)
    optim = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
    x = x.clone().requires_grad_(True)
    test_x = test_x.clone().requires_grad_(True)

    def time_derivative(z: torch.Tensor) -> torch.Tensor:
        _, F2 = net(z).split(1, 1)
        dF2 = torch.autograd.grad(F2.sum(), z, create_graph=True)[0]
        return dF2 @ M.t()

    start = time.perf_counter()
    stats = {"train_loss": [], "test_loss": []}
    for _ in range(steps):
        loss = ((dxdt - time_derivative(x)) ** 2).mean()
        loss.backward()
        optim.step()
        optim.zero_grad()
        test_loss = ((test_dxdt - time_derivative(test_x)) ** 2).mean()
        stats["train_loss"].append(loss.item())
        stats["test_loss"].append(test_loss.item())
    seconds = time.perf_counter() - start
    final = ((test_dxdt - time_derivative(test_x)) ** 2).mean().item()
    return final, seconds


def hnnlab_fit(
    data: Path, workdir: Path, steps: int, test_x: torch.Tensor, test_dxdt: torch.Tensor
) -> tuple[float, float]:
    """``hnnlab fit`` with the shipped config; returns (final test loss, seconds)."""
    from hnnlab.cli import main
    from hnnlab.training.checkpoint import load_checkpoint

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        start = time.perf_counter()
        status = main([
            "fit", "--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(data),
            "--trainer.max_epochs", str(steps), "--trainer.accelerator", "cpu",
        ])
        seconds = time.perf_counter() - start
    finally:
        os.chdir(cwd)
    if status != 0:
        raise SystemExit(f"hnnlab fit failed with status {status}")
    last = max(workdir.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    model = load_checkpoint(last).model
    final = ((test_dxdt - model(0.0, test_x)) ** 2).mean().item()
    return final, seconds


def measure(steps: int, rounds: int, verbose: bool = True) -> tuple[dict[str, float], dict[str, float]]:
    """Alternate the published loop and ``hnnlab fit`` for ``rounds`` rounds of ``steps`` steps each.

    Returns (median seconds, final test loss) by candidate (``"published loop"``, ``"hnnlab fit"``).
    W&B must be disabled (``WANDB_MODE=disabled``) by the caller."""
    from hnnlab.data import get_recipe, write_dataset
    from hnnlab.data.dataset import TrajectoryDataset

    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        data = Path(tmp) / "greydanus-spring.h5"
        write_dataset(data, get_recipe("greydanus-spring").build(0))
        train, test = TrajectoryDataset(data, "train"), TrajectoryDataset(data, "test")
        tr, te = train[list(range(len(train)))], test[list(range(len(test)))]
        x, dxdt = tr["x"].float(), tr["dxdt"].float()  # (750, 2) each
        test_x, test_dxdt = te["x"].float(), te["dxdt"].float()

        times: dict[str, list[float]] = {"published loop": [], "hnnlab fit": []}
        losses: dict[str, float] = {}
        for r in range(rounds):
            losses["published loop"], sec = published_loop(x, dxdt, test_x, test_dxdt, steps, seed=r)
            times["published loop"].append(sec)
            if verbose:
                print(f"round {r + 1}: published loop {sec:.1f}s, test loss {losses['published loop']:.5f}",
                      flush=True)
            workdir = Path(tmp) / f"fit-{r}"
            workdir.mkdir()
            losses["hnnlab fit"], sec = hnnlab_fit(data, workdir, steps, test_x, test_dxdt)
            times["hnnlab fit"].append(sec)
            if verbose:
                print(f"round {r + 1}: hnnlab fit {sec:.1f}s, test loss {losses['hnnlab fit']:.5f}", flush=True)
    return {k: statistics.median(v) for k, v in times.items()}, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/bench_training"))
    args = parser.parse_args()
    os.environ["WANDB_MODE"] = "disabled"
    os.environ.setdefault("CI", "1")  # plain progress lines
    torch.set_num_threads(args.threads)
    median, losses = measure(args.steps, args.rounds)

    ratio = median["published loop"] / median["hnnlab fit"]
    rows = [
        {"candidate": name, "seconds": f"{median[name]:.2f}", "ms_per_step": f"{1e3 * median[name] / args.steps:.2f}",
         "test_loss": f"{losses[name]:.5f}", "speedup": f"{median['published loop'] / median[name]:.2f}"}
        for name in median
    ]
    header = (
        f"{args.steps} full-batch steps (750 points), float32, cpu ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, {args.threads} thread(s), median of {args.rounds} round(s). "
        f"Target: hnnlab >= {TARGET:g}x faster to the same test loss."
    )
    verdict = "meets" if ratio >= TARGET else "misses"
    lines = ["# Training benchmark: Greydanus mass-spring HNN", "", header, "",
             "| candidate | wall time (s) | ms/step | final test loss | speed-up |", "|---|---|---|---|---|"]
    lines += [f"| {r['candidate']} | {r['seconds']} | {r['ms_per_step']} | {r['test_loss']} | {r['speedup']}x |"
              for r in rows]
    lines += ["", f"hnnlab fit speed-up over the published loop: {ratio:.2f}x ({verdict} the >= {TARGET:g}x target)."]
    text = "\n".join(lines) + "\n"
    print(text)
    write_results(Path(args.out), text, rows)


if __name__ == "__main__":
    main()
