"""GPU throughput of hnnlab: training steps, a short ``hnnlab fit``, and rollouts (one script, < 5 min on an H100).

(a) Training, float32, the plain module step (forward, loss, backward, Adam step):

- HNN 2-200-200-1 tanh on mass-spring states, derivative loss ``mean |X_H(x) - dx/dt|^2``, at batch 1024
  and 16384;
- LNN 4-600-600-600-1 softplus on double-pendulum states, loss ``mean |q_dd(x) - q_dd_true|`` (Cranmer et
  al. 2020), at batch 256 and 4096;
- ``hnnlab fit --config configs/spring_hnn.yaml`` on the device (greydanus-spring, full batch, with the
  config's validation, checkpoints and rollout callback, W&B disabled), run for two lengths: the
  steady-state rate is the extra steps over the extra seconds, so start-up is not counted in it.

Rates are steady-state: a few untimed steps, then runs of growing length until one lasts ``min_seconds``,
with ``torch.cuda.synchronize`` before and after each timed run.

(b) Rollouts under ``torch.no_grad``, float32, every state kept: a spring ``SeparableHNN`` (2-200-200-1 tanh
nets, trained briefly, as in ``bench_hnn_rollout.py``) with hnnlab's leapfrog against torchdiffeq's rk4 on
the same model, at batch 1024, 4096 and 65536; the analytic pendulum with hnnlab's leapfrog (and torchdiffeq's
rk4) at batch 65536. Figure of merit: state-steps per second (best of ``repeats`` alternating rounds; the
first round warms up).

Without CUDA it exits with status 2 and says so, unless ``--device cpu`` is given (with ``--quick``: tiny
sizes, to check the script on a CPU). Writes ``benchmarks/results/gpu.md`` and ``.csv`` (``--out`` changes
the stem).

    .venv/bin/python benchmarks/gpu.py [--device cuda] [--quick] [--out STEM]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

if __package__:
    from . import _common
else:  # run as a script: benchmarks/ is sys.path[0]
    import _common

from hnnlab.models import HNN, LNN
from hnnlab.systems import DoublePendulum, MassSpring

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    """The workload of one run."""

    hnn_batches: tuple[int, ...]
    lnn_batches: tuple[int, ...]
    min_seconds: float  # length of the timed run of a training step
    fit_steps: tuple[int, int]  # the two lengths of the hnnlab fit runs
    rollout_train_steps: int
    rollout_batches: tuple[int, ...]
    rollout_steps: int
    pendulum_batch: int
    pendulum_steps: int
    repeats: int


FULL = Sizes(
    hnn_batches=(1024, 16384), lnn_batches=(256, 4096), min_seconds=1.0, fit_steps=(100, 1100),
    rollout_train_steps=300, rollout_batches=(1024, 4096, 65536), rollout_steps=200,
    pendulum_batch=65536, pendulum_steps=1000, repeats=3,
)
QUICK = Sizes(
    hnn_batches=(64, 256), lnn_batches=(8, 32), min_seconds=0.05, fit_steps=(2, 102),
    rollout_train_steps=2, rollout_batches=(16, 64), rollout_steps=10,
    pendulum_batch=256, pendulum_steps=10, repeats=2,
)


def row(part: str, model: str, method: str, batch: int, steps_per_s: float, per_step: int,
        unit: str, ratio: float | None = None, baseline: str = "", notes: str = "") -> dict:
    """One result: ``per_step`` items (samples or states) per step make the throughput in ``unit``."""
    return {
        "part": part, "model": model, "method": method, "batch": batch, "steps_per_s": steps_per_s,
        "throughput": steps_per_s * per_step, "unit": unit,
        "ratio": "" if ratio is None else ratio, "ratio_over": baseline, "notes": notes,
    }


# ------------------------------------------------------------------------------------------------
# (a) training


def adam_step(module: nn.Module, loss_fn: Callable[[], Tensor]) -> Callable[[], None]:
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimizer.step()

    return step


def hnn_training(batch: int, device: torch.device, min_seconds: float) -> dict:
    system = MassSpring()
    x = system.sample_initial_states(batch, torch.Generator().manual_seed(0), dtype=torch.float32, device=device)
    target = system.vector_field(0.0, x)  # (batch, 2)
    torch.manual_seed(0)
    model = HNN(1, hidden=(200, 200), activation="tanh").to(device)
    step = adam_step(model, lambda: ((model(0.0, x) - target) ** 2).mean())
    rate = _common.steps_per_second(step, device, min_seconds)
    return row("training step", "HNN 2-200-200-1 tanh, mass-spring", "derivative MSE, Adam", batch, rate, batch,
               "samples/s")


def lnn_training(batch: int, device: torch.device, min_seconds: float) -> dict:
    system = DoublePendulum()
    x = system.sample_initial_states(batch, torch.Generator().manual_seed(0), dtype=torch.float32, device=device)
    target = system.accelerations(x)  # (batch, 2)
    torch.manual_seed(0)
    model = LNN(2, hidden=(600, 600, 600), activation="softplus").to(device)
    step = adam_step(model, lambda: (model.accelerations(x) - target).abs().mean())
    rate = _common.steps_per_second(step, device, min_seconds)
    return row("training step", "LNN 4-600-600-600-1 softplus, double pendulum", "acceleration L1, Adam", batch,
               rate, batch, "samples/s")


def fit_seconds(data: Path, workdir: Path, steps: int, device: torch.device) -> float:
    """Wall seconds of ``hnnlab fit`` with the spring HNN config for ``steps`` full-batch steps."""
    from hnnlab.cli import main

    workdir.mkdir(parents=True)
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    cwd = os.getcwd()
    os.chdir(workdir)  # checkpoints and logs land in the scratch directory
    try:
        start = time.perf_counter()
        status = main([
            "fit", "--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(data),
            "--trainer.max_epochs", str(steps), "--trainer.accelerator", accelerator, "--trainer.devices", "1",
        ])
        seconds = time.perf_counter() - start
    finally:
        os.chdir(cwd)
    if status != 0:
        raise RuntimeError(f"hnnlab fit ({steps} steps on {device}) exited with status {status}")
    return seconds


def fit_throughput(device: torch.device, sizes: Sizes) -> dict:
    from hnnlab.data import get_recipe, write_dataset

    os.environ["WANDB_MODE"] = "disabled"
    os.environ.setdefault("CI", "1")  # plain progress lines
    short, long = sizes.fit_steps
    with tempfile.TemporaryDirectory(prefix="hnnlab-gpu-fit-") as tmp:
        data = Path(tmp) / "greydanus-spring.h5"
        write_dataset(data, get_recipe("greydanus-spring").build(0))
        fit_seconds(data, Path(tmp) / "warm-up", 1, device)  # imports, CUDA context, cuBLAS handles
        t_short = fit_seconds(data, Path(tmp) / "short", short, device)
        t_long = fit_seconds(data, Path(tmp) / "long", long, device)
    extra = t_long - t_short
    rate = (long - short) / extra if extra > 0 else float("nan")
    return row("hnnlab fit", "spring HNN config (750 points, full batch)", "Trainer.fit via hnnlab fit", 750, rate,
               750, "samples/s",
               notes=f"steps/s = ({long} - {short}) steps / ({t_long:.1f} - {t_short:.1f}) s; "
                     f"whole {long}-step run incl. start-up: {long / t_long:.3g} steps/s")


# ------------------------------------------------------------------------------------------------
# (b) rollouts


def hnn_rollouts(device: torch.device, sizes: Sizes) -> list[dict]:
    bench = _common.load_script("bench_hnn_rollout")
    torch.manual_seed(0)
    models, initial, dt = bench.trained_models(sizes.rollout_train_steps, device)
    keys = [("SeparableHNN", "torchdiffeq rk4"), ("SeparableHNN", "hnnlab leapfrog")]
    rows = []
    for batch in sizes.rollout_batches:
        for r in bench.measure_case(models, initial, dt, batch, sizes.rollout_steps, sizes.repeats, device, keys):
            is_ours = r["method"] != "torchdiffeq rk4"
            rows.append(row(
                "rollout", "spring SeparableHNN 2-200-200-1 tanh", r["method"], batch,
                r["state_steps_per_s"] / batch, batch, "state-steps/s",
                ratio=r["ratio_vs_torchdiffeq"] if is_ours else None,
                baseline="torchdiffeq rk4" if is_ours else "", notes=f"{sizes.rollout_steps} steps, dt {dt:.4g}",
            ))
    return rows


def pendulum_rollouts(device: torch.device, sizes: Sizes) -> list[dict]:
    bench = _common.load_script("bench_rollout")
    batch, dt = sizes.pendulum_batch, 0.01
    r = bench.run_case(batch, sizes.pendulum_steps, dt, torch.float32, device, sizes.repeats)
    notes = f"{sizes.pendulum_steps} steps, dt {dt}; max |leapfrog - rk4| {r['max_abs_difference']:.1e}"
    return [
        row("rollout", "analytic pendulum", "torchdiffeq rk4", batch, r["torchdiffeq_state_steps_per_s"] / batch,
            batch, "state-steps/s", notes=notes),
        row("rollout", "analytic pendulum", "hnnlab leapfrog", batch, r["hnnlab_state_steps_per_s"] / batch, batch,
            "state-steps/s", ratio=r["ratio"], baseline="torchdiffeq rk4", notes=notes),
    ]


# ------------------------------------------------------------------------------------------------


COLUMNS = ["part", "model", "method", "batch", "steps/s", "throughput", "ratio", "notes"]


def table_cells(r: dict) -> list[str]:
    ratio = f"{r['ratio']:.2f}x over {r['ratio_over']}" if r["ratio"] != "" else ""
    return [r["part"], r["model"], r["method"], str(r["batch"]), f"{r['steps_per_s']:.3g}",
            f"{r['throughput']:.3g} {r['unit']}", ratio,
            r["notes"]]


def build_markdown(rows: Sequence[dict], device: torch.device, quick: bool) -> str:
    if device.type == "cuda":
        cuda = f", CUDA {torch.version.cuda}, float32 matmul precision {torch.get_float32_matmul_precision()!r}"
    else:
        cuda = f", {torch.get_num_threads()} intra-op thread(s)"
    head = (f"{_common.describe_device(device)}, torch {torch.__version__}{cuda}, float32. Training rates are "
            "steady-state steps of the plain module step; rollout rates are best of alternating rounds.")
    if quick:
        head += " **--quick: tiny sizes, a check of the script, not a measurement.**"
    return "# GPU throughput\n\n" + head + "\n\n" + _common.markdown_table(COLUMNS, [table_cells(r) for r in rows])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (to check the script)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds on a CPU)")
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "gpu", help="stem of the .md/.csv files")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            f"gpu.py: error: CUDA is not available (torch {torch.__version__}, CUDA build: "
            f"{torch.version.cuda or 'none'}); run it on a machine with an NVIDIA GPU, or check the script on "
            "the CPU with --device cpu --quick",
            file=sys.stderr,
        )
        return 2
    sizes = QUICK if args.quick else FULL
    rows: list[dict] = []
    for batch in sizes.hnn_batches:
        rows.append(hnn_training(batch, device, sizes.min_seconds))
        print(f"gpu.py: HNN training, batch {batch}: {rows[-1]['steps_per_s']:.3g} steps/s", flush=True)
    for batch in sizes.lnn_batches:
        rows.append(lnn_training(batch, device, sizes.min_seconds))
        print(f"gpu.py: LNN training, batch {batch}: {rows[-1]['steps_per_s']:.3g} steps/s", flush=True)
    rows.append(fit_throughput(device, sizes))
    print(f"gpu.py: hnnlab fit: {rows[-1]['steps_per_s']:.3g} steps/s", flush=True)
    rows += hnn_rollouts(device, sizes)
    rows += pendulum_rollouts(device, sizes)
    markdown = build_markdown(rows, device, args.quick)
    md, csv_path = _common.write_results(args.out, markdown, rows)
    print()
    print(markdown)
    print(f"\nwritten: {md}, {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
