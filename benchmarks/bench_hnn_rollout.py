"""Rollout throughput of a trained spring HNN: hnnlab against torchdiffeq's rk4, side by side.

A spring HNN (``SeparableHNN``, H = T(p) + V(q), 2-200-200-1 tanh networks, and a general ``HNN`` of the
same size) is first trained briefly by derivative matching on the ``greydanus-spring`` recipe (setup, not
timed). Then, from the same test initial states, with the same step size and number of steps, keeping every
state, under ``torch.no_grad``:

- torchdiffeq: ``odeint(model, x0, t, method="rk4", options=dict(step_size=dt))`` (the same model);
- hnnlab: ``rollout(model, "leapfrog", x0, dt, n_steps)`` for the separable HNN (the symplectic method hnnlab
  rolls it out with; it reuses the last force of a step as the first of the next), and, for reference,
  ``rollout(model, "rk4", ...)`` (same method as torchdiffeq) and ``implicit_midpoint`` for the general HNN.

Figure of merit: state-steps per second (``batch * n_steps / seconds``, best of ``--repeats``, the candidates
alternating within a round). Target: hnnlab >= 5x torchdiffeq at batch 1024 on CPU. With ``--device cuda`` it
also measures batch 4096.

Usage: ``python benchmarks/bench_hnn_rollout.py [--device cpu] [--threads 1] [--repeats 3]``; writes
``benchmarks/results/bench_hnn_rollout.md`` and ``.csv``.
"""

from __future__ import annotations

import argparse
import csv
import platform
import tempfile
import time
from pathlib import Path

import torch
from torchdiffeq import odeint

from hnnlab.data import get_recipe, load_dataset, write_dataset
from hnnlab.models import HNN, SeparableHNN
from hnnlab.rollout import rollout

TARGET_BATCH, TARGET_RATIO = 1024, 5.0


def train(model: torch.nn.Module, x: torch.Tensor, dxdt: torch.Tensor, steps: int) -> torch.nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        loss = ((model(0.0, x) - dxdt) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def make_candidates(models: dict, x0: torch.Tensor, t: torch.Tensor, dt: float, n_steps: int) -> dict:
    """(model, method) -> a function that runs that rollout."""
    sep, hnn = models["SeparableHNN"], models["HNN"]
    return {
        ("SeparableHNN", "torchdiffeq rk4"): lambda: odeint(sep, x0, t, method="rk4", options={"step_size": dt}),
        ("SeparableHNN", "hnnlab leapfrog"): lambda: rollout(sep, "leapfrog", x0, dt, n_steps),
        ("SeparableHNN", "hnnlab rk4"): lambda: rollout(sep, "rk4", x0, dt, n_steps),
        ("HNN", "torchdiffeq rk4"): lambda: odeint(hnn, x0, t, method="rk4", options={"step_size": dt}),
        ("HNN", "hnnlab rk4"): lambda: rollout(hnn, "rk4", x0, dt, n_steps),
        ("HNN", "hnnlab implicit_midpoint"): lambda: rollout(hnn, "implicit_midpoint", x0, dt, n_steps),
    }


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def trained_models(train_steps: int, device: torch.device) -> tuple[dict[str, torch.nn.Module], torch.Tensor, float]:
    """The two spring HNNs trained ``train_steps`` steps on greydanus-spring (on the CPU, then moved to
    ``device``), the test initial states ``(n_test, 2)`` and the dataset's ``dt``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spring.h5"
        write_dataset(path, get_recipe("greydanus-spring").build(seed=0))
        data = load_dataset(path)
    train_split, test_split = data.splits["train"], data.splits["test"]
    x = train_split.state.reshape(-1, 2).float()
    dxdt = train_split.dxdt.reshape(-1, 2).float()
    models = {
        "SeparableHNN": train(SeparableHNN(1, hidden=(200, 200)), x, dxdt, train_steps).to(device),
        "HNN": train(HNN(1, hidden=(200, 200)), x, dxdt, train_steps).to(device),
    }
    return models, test_split.clean[:, 0].float(), test_split.dt


def measure_case(
    models: dict[str, torch.nn.Module], initial: torch.Tensor, dt: float, batch: int, n_steps: int, repeats: int,
    device: torch.device, keys: list[tuple[str, str]] | None = None,
) -> list[dict]:
    """Best-of-``repeats`` throughput of each (model, method) candidate (all, or ``keys``; a model's
    ``torchdiffeq rk4`` must be among them) from ``batch`` states cycled from ``initial``."""
    x0 = initial[torch.arange(batch) % initial.shape[0]].to(device)  # (batch, 2)
    t = torch.arange(n_steps + 1, dtype=torch.float32, device=device) * dt
    candidates = make_candidates(models, x0, t, dt, n_steps)
    if keys is not None:
        candidates = {key: candidates[key] for key in keys}
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(repeats):
        for key, fn in candidates.items():
            best[key] = min(best[key], timed(fn, device))
    return [
        {
            "batch": batch, "steps": n_steps, "model": model, "method": method,
            "state_steps_per_s": batch * n_steps / seconds,
            "ratio_vs_torchdiffeq": best[(model, "torchdiffeq rk4")] / seconds,
        }
        for (model, method), seconds in best.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--out", default="benchmarks/results/bench_hnn_rollout")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)

    models, initial, dt = trained_models(args.train_steps, device)
    cases = [(1, 500), (64, 500), (1024, 200)] + ([(4096, 200)] if device.type == "cuda" else [])
    rows = []
    for batch, n_steps in cases:
        case_rows = measure_case(models, initial, dt, batch, n_steps, args.repeats, device)
        rows += case_rows
        print(f"batch {batch}: " + ", ".join(f"{r['model']}/{r['method']}: {r['state_steps_per_s']:.3g}/s"
                                             for r in case_rows), flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    target = next(r for r in rows if r["batch"] == TARGET_BATCH and r["method"] == "hnnlab leapfrog")
    lines = [
        "# Rollout throughput of a trained spring HNN",
        "",
        f"{args.device} ({platform.machine()}), torch {torch.__version__}, {args.threads} thread(s), float32, "
        f"dt = {dt:.4g}, best of {args.repeats} alternating rounds; models trained {args.train_steps} steps on "
        "greydanus-spring. Ratio: state-steps/s over torchdiffeq rk4 with the same model.",
        "",
        "| batch | steps | model | method | state-steps/s | ratio vs torchdiffeq rk4 |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['batch']} | {r['steps']} | {r['model']} | {r['method']} | {r['state_steps_per_s']:.3g} | "
              f"{r['ratio_vs_torchdiffeq']:.2f}x |" for r in rows]
    verdict = "meets" if target["ratio_vs_torchdiffeq"] >= TARGET_RATIO else "misses"
    lines += ["", f"Target row (SeparableHNN, hnnlab leapfrog vs torchdiffeq rk4, batch {TARGET_BATCH}): "
              f"{target['ratio_vs_torchdiffeq']:.2f}x ({verdict} the >= {TARGET_RATIO:g}x target)."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
