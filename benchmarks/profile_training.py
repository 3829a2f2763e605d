"""Where ``hnnlab fit`` spends its time against the published loop: the accounting behind bench_training.py.

The same workload (greydanus-spring, 750 full-batch points, MLP 2-200-200 tanh, Adam, float32, one thread), each
item measured in this process's CPU time (what a shared machine's other processes change least), the candidates
alternating over ``--rounds`` (order reversed every other round), medians:

per step (median over the steps of a run):
- the published loop's step, with its per-step test forward and without it (``--bare``: the training arithmetic);
- hnnlab's ``HNN`` + ``derivative_loss`` + the same Adam in a plain loop (no Lightning): hnnlab's model against
  the published network;
- ``hnnlab fit --config configs/spring_hnn.yaml``: the time between consecutive epoch starts (one step per epoch at
  full batch), so everything Lightning, the callbacks and the data do per step;
- the same two with a 2-4-1 network (compute ~0): ``hnnlab fit``'s per-step cost beyond the arithmetic, and the
  plain loop's;

once per run of ``--steps`` steps: parsing the config and building the objects (``main`` to ``trainer.fit``), the
set-up up to the first epoch, the checkpoint writes, the rollout callback's evaluations; once per process: the
import of hnnlab's CLI (Lightning, jsonargparse).

Usage: ``python benchmarks/profile_training.py [--steps 2000] [--rounds 3]``; writes
``benchmarks/results/profile_training.md`` and ``.csv``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

try:  # imported from the repository root
    from benchmarks._common import write_results
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from _common import write_results

ROOT = Path(__file__).resolve().parents[1]
CLOCK = time.process_time


def loop_step_times(x: torch.Tensor, dxdt: torch.Tensor, test_x: torch.Tensor, test_dxdt: torch.Tensor, steps: int,
                    hidden: tuple[int, ...], test_every_step: bool) -> list[float]:
    """CPU seconds of each step of the published loop (bench_training.published_loop, timed per step)."""
    torch.manual_seed(0)
    sizes = [2, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.Tanh()]
    layers.append(nn.Linear(sizes[-1], 2, bias=False))
    for layer in layers[::2]:
        nn.init.orthogonal_(layer.weight)
    net = nn.Sequential(*layers)
    M = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    optim = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
    x, test_x = x.clone().requires_grad_(True), test_x.clone().requires_grad_(True)

    def time_derivative(z: torch.Tensor) -> torch.Tensor:
        _, F2 = net(z).split(1, 1)
        return torch.autograd.grad(F2.sum(), z, create_graph=True)[0] @ M.t()

    out = []
    for _ in range(steps):
        start = CLOCK()
        loss = ((dxdt - time_derivative(x)) ** 2).mean()
        loss.backward()
        optim.step()
        optim.zero_grad()
        loss.item()
        if test_every_step:
            ((test_dxdt - time_derivative(test_x)) ** 2).mean().item()
        out.append(CLOCK() - start)
    return out


def hnnlab_model_step_times(x: torch.Tensor, dxdt: torch.Tensor, steps: int, hidden: tuple[int, ...]) -> list[float]:
    """CPU seconds of each step of hnnlab's HNN and derivative loss with the same Adam, in a plain loop."""
    from hnnlab.models import HNN
    from hnnlab.training.losses import derivative_loss

    torch.manual_seed(0)
    model = HNN(1, hidden=hidden)
    optim = torch.optim.Adam(model.parameters(), 1e-3, weight_decay=1e-4)
    out = []
    for _ in range(steps):
        start = CLOCK()
        loss = derivative_loss(model, x, dxdt)
        loss.backward()
        optim.step()
        optim.zero_grad()
        out.append(CLOCK() - start)
    return out


@contextlib.contextmanager
def instrumented() -> Iterator[dict[str, float | list[float]]]:
    """Record, during ``hnnlab fit``: CPU time at ``trainer.fit``'s call, at every epoch start and at the first, in
    checkpoint writes and in rollout callback evaluations (``HnnlabCheckpoint._save_checkpoint``,
    ``RolloutMetricsCallback.evaluate``, ``hnnlab.training.cli.fit_trainer`` wrapped; restored on exit)."""
    import lightning.pytorch as pl

    import hnnlab.training.cli as cli
    from hnnlab.training.callbacks import HnnlabCheckpoint, RolloutMetricsCallback

    record: dict[str, float | list[float]] = {"checkpoint writes": 0.0, "rollout evaluations": 0.0, "epochs": []}

    class Clock(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            record["epochs"].append(CLOCK())

    def accumulate(function: Callable, key: str) -> Callable:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            start = CLOCK()
            try:
                return function(*args, **kwargs)
            finally:
                record[key] += CLOCK() - start
        return wrapper

    def fit_trainer(trainer: pl.Trainer, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        record["fit call"] = CLOCK()
        trainer.callbacks.insert(0, Clock())
        return original_fit(trainer, *args, **kwargs)

    original_fit = cli.fit_trainer
    originals = [(HnnlabCheckpoint, "_save_checkpoint"), (RolloutMetricsCallback, "evaluate")]
    saved = [getattr(cls, name) for cls, name in originals]
    cli.fit_trainer = fit_trainer
    HnnlabCheckpoint._save_checkpoint = accumulate(saved[0], "checkpoint writes")
    RolloutMetricsCallback.evaluate = accumulate(saved[1], "rollout evaluations")
    try:
        yield record
    finally:
        cli.fit_trainer = original_fit
        for (cls, name), function in zip(originals, saved, strict=True):
            setattr(cls, name, function)


def hnnlab_fit(data: Path, workdir: Path, steps: int, hidden: tuple[int, ...]) -> dict[str, float]:
    """``hnnlab fit`` with the shipped config (W&B disabled): per-step median and one-off CPU seconds."""
    from hnnlab.cli import main

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        with instrumented() as record, contextlib.redirect_stdout(io.StringIO()):
            start = CLOCK()
            status = main(["fit", "--config", str(ROOT / "configs/spring_hnn.yaml"), "--data.path", str(data),
                           "--trainer.max_epochs", str(steps), "--trainer.accelerator", "cpu",
                           "--model.model.init_args.hidden", str(list(hidden))])
            total = CLOCK() - start
    finally:
        os.chdir(cwd)
    if status != 0:
        raise SystemExit(f"hnnlab fit failed with status {status}")
    epochs = record["epochs"]
    steps_times = [b - a for a, b in zip(epochs, epochs[1:], strict=False)]
    return {"step": statistics.median(steps_times), "total": total,
            "build": record["fit call"] - start, "setup": epochs[0] - record["fit call"],
            "checkpoint writes": record["checkpoint writes"], "rollout evaluations": record["rollout evaluations"]}


def measure(steps: int, rounds: int) -> dict[str, float]:
    """The items of the module docstring, by name, in CPU seconds (medians over rounds)."""
    from hnnlab.data import get_recipe, write_dataset
    from hnnlab.data.dataset import TrajectoryDataset

    start = CLOCK()
    import hnnlab.cli
    import hnnlab.training.cli  # noqa: F401 - Lightning, jsonargparse

    values: dict[str, list[float]] = {"import of hnnlab's CLI": [CLOCK() - start]}
    with tempfile.TemporaryDirectory(prefix="profile-training-") as tmp:
        data = Path(tmp) / "greydanus-spring.h5"
        write_dataset(data, get_recipe("greydanus-spring").build(0))
        train, test = TrajectoryDataset(data, "train"), TrajectoryDataset(data, "test")
        tr, te = train[list(range(len(train)))], test[list(range(len(test)))]
        x, dxdt, test_x, test_dxdt = tr["x"].float(), tr["dxdt"].float(), te["x"].float(), te["dxdt"].float()
        loop_steps = min(steps, 400)  # enough for a per-step median
        jobs: dict[str, Callable[[], None]] = {}

        def per_step(name: str, times: Callable[[], list[float]]) -> None:
            jobs[name] = lambda: values.setdefault(name, []).append(statistics.median(times()))

        for hidden, tag in (((200, 200), ""), ((4,), " (2-4-1 network)")):
            per_step(f"published loop{tag}", lambda h=hidden: loop_step_times(x, dxdt, test_x, test_dxdt, loop_steps,
                                                                                h, True))
            per_step(f"published loop without its test forward{tag}", lambda h=hidden: loop_step_times(
                x, dxdt, test_x, test_dxdt, loop_steps, h, False))
            per_step(f"hnnlab HNN + derivative_loss, plain loop{tag}",
                     lambda h=hidden: hnnlab_model_step_times(x, dxdt, loop_steps, h))

            def fit(h: tuple[int, ...] = hidden, tag: str = tag) -> None:
                result = hnnlab_fit(data, Path(tempfile.mkdtemp(dir=tmp)), steps, h)
                values.setdefault(f"hnnlab fit{tag}", []).append(result.pop("step"))
                if not tag:
                    for key, value in result.items():
                        values.setdefault(f"hnnlab fit, {key}", []).append(value)

            jobs[f"hnnlab fit{tag}"] = fit
        names = list(jobs)
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                jobs[name]()
    return {name: statistics.median(v) for name, v in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/profile_training"))
    args = parser.parse_args()
    os.environ["WANDB_MODE"] = "disabled"
    os.environ.setdefault("CI", "1")
    torch.set_num_threads(1)
    m = measure(args.steps, args.rounds)
    tiny = " (2-4-1 network)"
    per_step = [
        ("published loop: one step", m["published loop"]),
        ("  of which its per-step test forward", m["published loop"] - m["published loop without its test forward"]),
        ("published loop without its test forward (the training arithmetic)",
         m["published loop without its test forward"]),
        ("hnnlab's HNN + derivative_loss + Adam, plain loop (hnnlab's model, no Lightning)",
         m["hnnlab HNN + derivative_loss, plain loop"]),
        ("hnnlab fit: one step (median time between epoch starts)", m["hnnlab fit"]),
        ("  beyond its model's plain loop (Lightning, callbacks, data)",
         m["hnnlab fit"] - m["hnnlab HNN + derivative_loss, plain loop"]),
        ("  the same beyond, with a 2-4-1 network (arithmetic ~0)",
         m[f"hnnlab fit{tiny}"] - m[f"hnnlab HNN + derivative_loss, plain loop{tiny}"]),
    ]
    once = [("parse the config, build the objects (main to trainer.fit)", m["hnnlab fit, build"]),
            ("set-up to the first epoch (data, W&B off, config saved)", m["hnnlab fit, setup"]),
            ("checkpoint writes (every 100 epochs, and last)", m["hnnlab fit, checkpoint writes"]),
            ("rollout callback (reference once, evaluations every 500 epochs and at the end)",
             m["hnnlab fit, rollout evaluations"]),
            ("import of hnnlab's CLI (Lightning, jsonargparse), once per process", m["import of hnnlab's CLI"])]
    loop_total = args.steps * m["published loop"]
    imported = m["import of hnnlab's CLI"]
    fit_total = m["hnnlab fit, total"]
    rows = [{"item": k, "per_step_ms": f"{1e3 * v:.3f}", "seconds": ""} for k, v in per_step]
    rows += [{"item": k, "per_step_ms": f"{1e3 * v / args.steps:.3f}", "seconds": f"{v:.3f}"} for k, v in once]
    lines = [
        "# Where hnnlab fit's time goes against the published loop (spring HNN)", "",
        f"CPU time of this process, {args.steps} full-batch steps (750 points), float32, 1 thread, torch "
        f"{torch.__version__}, median of {args.rounds} round(s), alternating; per-step items are medians over the "
        f"steps of a run ({min(args.steps, 400)} for the plain loops).", "",
        "| item | ms per step | seconds per run |", "|---|---|---|",
        *(f"| {r['item']} | {r['per_step_ms']} | {r['seconds']} |" for r in rows), "",
        f"Per run of {args.steps} steps: the published loop {loop_total:.2f} s ({args.steps} x its step), hnnlab fit "
        f"{fit_total:.2f} s (call to return, measured): {loop_total / fit_total:.2f}x; with the import charged to "
        f"this one run {loop_total / (fit_total + imported):.2f}x.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_results(Path(args.out), text, rows)


if __name__ == "__main__":
    main()
