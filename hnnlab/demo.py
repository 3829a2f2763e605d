"""The main job: ``hnnlab demo``, the claim hnnlab exists to make, on two small systems in a few CPU minutes.

On the Greydanus et al. (2019) mass-spring and pendulum datasets, three models trained on the same data and
rolled out from the same test states over the same long horizon (10,000 steps, float64):

- **published HNN**: an MLP ``H(q, p)`` trained by derivative matching (the published recipe), rolled out with
  the implicit midpoint rule (symplectic for a general ``H``);
- **hnnlab's best model**: a separable HNN ``H = T(p) + V(q)`` trained through leapfrog rollouts (the rollout
  loss over short windows of the data, stepped with the same leapfrog and step as the evaluation) with a
  derivative term (``derivative_weight`` times the published ``dx/dt`` loss at the windows' states), rolled
  out with leapfrog (``SepHNN-leapfrog``). The rollout loss alone (``SepHNN-leapfrog`` on the results page,
  ``benchmarks/results/greydanus.md``) follows trajectories longest but fits the noisy states' energy levels
  less well than the derivative labels do (the pendulum's max energy error twice the published HNN's); the
  derivative term keeps the energy error below the published HNN's on both systems.
- **baseline**: a neural ODE (an MLP predicting ``dx/dt``), rolled out with RK4.

Stages, printed in order:

1. Integrators on the analytic pendulum: symplectic methods keep the energy error bounded, RK4 drifts.
2. Datasets: the Greydanus mass-spring and pendulum recipes, simulated to HDF5.
3. Models: each trained with :func:`hnnlab.training.fit` (tracked in W&B, offline unless a key is configured),
   rolled out against the true system's reference and audited; ``jobs`` models at a time (one process each).
4. Comparison: one table (energy error and valid prediction time) and one figure (``comparison.png``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hnnlab.audit import audit_file, audit_trajectories, metrics
from hnnlab.audit.sources import load_source
from hnnlab.errors import InvalidArgumentError
from hnnlab.rollout import rollout
from hnnlab.systems import get_system

DEMO_SYSTEMS = ("greydanus-spring", "greydanus-pendulum")
N_STAGES = 4
# The implicit midpoint's fixed-point tolerance: a residual of 1e-8 per step adds at most ~1e-4 to a relative
# energy error over 10,000 steps, far below any learned model's (1e-2 and up here).
IMPLICIT_TOL = 1e-8


@dataclass(frozen=True)
class ModelSpec:
    """One of the demo's models: how it is built, trained and rolled out.

    Attributes:
        key: the name in the table (``"HNN"``, ``"SepHNN-leapfrog"``, ``"baseline"``).
        description: what it is, in words.
        loss: ``"derivative"`` (``dx/dt`` matching on ``(state, dx/dt)`` pairs) or ``"rollout"`` (states of
            windows of ``window`` data steps, stepped with ``integrator``).
        integrator: the rollout integrator (training, for the rollout loss, and evaluation).
    """

    key: str
    description: str
    loss: str
    integrator: str


MODELS: dict[str, ModelSpec] = {
    "HNN": ModelSpec("HNN", "published HNN: MLP H(q, p), derivative matching", "derivative", "implicit_midpoint"),
    "SepHNN-leapfrog": ModelSpec("SepHNN-leapfrog", "hnnlab: separable H = T(p) + V(q) trained through leapfrog "
                                 "rollouts with a dx/dt term", "rollout", "leapfrog"),
    "baseline": ModelSpec("baseline", "baseline: neural ODE, MLP predicting dx/dt", "derivative", "rk4"),
}
BEST = "SepHNN-leapfrog"  # hnnlab's model, the one the claim is about
PUBLISHED = ("HNN", "baseline")


@dataclass
class DemoConfig:
    """The demo's settings (``hnnlab demo --help`` shows the same defaults).

    Attributes:
        out: output directory.
        train_steps: full-batch Adam steps for the published HNN and the baseline (the published 2000).
        leapfrog_steps: full-batch Adam steps for the separable HNN trained through leapfrog windows.
        window: data steps per training window of the leapfrog-trained model.
        leapfrog_lr: its Adam learning rate (the published models use the published 1e-3).
        derivative_weight: its derivative term's weight beside the rollout loss (0: rollout loss only).
        rollout_steps: rollout length in data steps (every model, every system).
        n_rollouts: test initial states rolled out per model (the same for every model).
        integrator_steps: steps of the integrator comparison on the analytic pendulum.
        seed: seed of the datasets, the initialisations and the training.
        jobs: models trained at a time, one process each (1: all in this process).
        models: the models to run, a subset of :data:`MODELS`, in table order.
        overwrite: replace rollout files of an earlier run in ``out``.
    """

    out: Path = Path("runs/demo")
    train_steps: int = 2000
    leapfrog_steps: int = 2000
    window: int = 4
    leapfrog_lr: float = 1e-3
    derivative_weight: float = 0.1
    rollout_steps: int = 10_000
    n_rollouts: int = 16
    integrator_steps: int = 20_000
    seed: int = 0
    jobs: int = 2
    models: tuple[str, ...] = ("HNN", "SepHNN-leapfrog", "baseline")
    overwrite: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for name in ("train_steps", "leapfrog_steps", "window", "rollout_steps", "n_rollouts", "integrator_steps",
                     "jobs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.leapfrog_lr, int | float) and math.isfinite(self.leapfrog_lr) and self.leapfrog_lr > 0):
            raise InvalidArgumentError(f"leapfrog_lr must be a finite number > 0, got {self.leapfrog_lr!r}")
        w = self.derivative_weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise InvalidArgumentError(f"derivative_weight must be a finite number >= 0, got {w!r}")
        self.models = tuple(self.models)
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or not self.models or len(set(self.models)) != len(self.models):
            raise InvalidArgumentError(
                f"models must be distinct names among {', '.join(MODELS)}, got {', '.join(self.models) or 'none'}"
            )


# -- tables -----------------------------------------------------------------------------------------------


def md_cell(text: str) -> str:
    """A Markdown table cell: ``|`` escaped (``\\|``), so that it does not split the cell."""
    return str(text).replace("|", r"\|")


def markdown_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    """A titled Markdown table; every cell escaped with :func:`md_cell`."""
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in rows]
    return f"### {title}\n\n" + "\n".join(lines) + "\n"


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    """Print a table on the console (rich) and return it as Markdown."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        left = h in ("system", "model", "trained by", "rollout", "integrator", "verdict", "energy")
        table.add_column(h, justify="left" if left else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=max(Console().width, 140)).print(table)
    return markdown_table(title, header, rows)


# -- stage 1 ----------------------------------------------------------------------------------------------


def integrator_comparison(n_steps: int = 20_000, dt: float = 0.1) -> tuple[list[dict[str, Any]], str]:
    """Energy behaviour of leapfrog, Yoshida-4 and RK4 on the analytic pendulum over ``n_steps`` steps."""
    system = get_system("pendulum")
    x0 = system.sample_initial_states(8, torch.Generator().manual_seed(0))
    save_every = 10 if n_steps % 10 == 0 else 1
    t = torch.arange(n_steps // save_every + 1, dtype=torch.float64) * dt * save_every
    results, rows = [], []
    for name in ("leapfrog", "yoshida4", "rk4"):
        start = time.perf_counter()
        states = rollout(system, name, x0, dt, n_steps, save_every=save_every)
        elapsed = time.perf_counter() - start
        report = audit_trajectories(states, t, system=system, check_structure=False)
        e = report.energy
        results.append({"integrator": name, "max_energy_error": e.max_error, "drift": e.drift,
                        "verdict": e.verdict, "seconds": elapsed})
        rows.append([name, f"{e.max_error:.2e}", f"{e.drift:+.2e}", e.verdict, f"{elapsed:.1f}"])
    md = _print_table(
        f"Analytic pendulum, {n_steps:,} steps of dt = {dt}: relative energy error",
        ["integrator", "max |dE|/E0", "secular drift", "verdict", "seconds"], rows,
    )
    return results, md


# -- stage 3: one model, start to end (runs in a worker process when jobs > 1) ----------------------------


@dataclass(frozen=True)
class ModelTask:
    """Everything one worker needs to train, roll out and audit one model on one system (picklable)."""

    recipe: str
    model: str
    data_path: str
    out: str
    seed: int
    train_steps: int
    window: int
    lr: float
    derivative_weight: float
    rollout_steps: int
    n_rollouts: int
    overwrite: bool

    @property
    def system_name(self) -> str:
        return self.recipe.removeprefix("greydanus-")

    @property
    def label(self) -> str:
        return f"{self.system_name}/{self.model}"

    @property
    def run_name(self) -> str:
        return f"{self.system_name}_{self.model.lower()}"


class _Prefixed:
    """A text stream that starts every line with ``prefix`` (the lines of one model's worker)."""

    def __init__(self, stream: Any, prefix: str) -> None:
        self.stream, self.prefix, self._at_start = stream, prefix, True

    def write(self, text: str) -> int:
        out = []
        for piece in text.splitlines(keepends=True):
            if self._at_start and piece.strip():
                out.append(self.prefix)
            out.append(piece)
            self._at_start = piece.endswith("\n")
        self.stream.write("".join(out))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextmanager
def _labelled_output(prefix: str) -> Iterator[None]:
    saved = sys.stdout
    sys.stdout = _Prefixed(saved, prefix)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = saved


def log_interval(train_steps: int, every: int, at_most: int = 50) -> int:
    """Steps between logged training losses: a divisor of both the progress interval ``every`` and
    ``train_steps``, at most ``at_most``, so that every progress line (the last one included) shows the loss
    of the step it names, never an earlier one (the training step logs only on the logger's steps)."""
    g = math.gcd(train_steps, every)
    return max(d for d in range(1, min(g, at_most) + 1) if g % d == 0)


def derivative_test_mse(model: torch.nn.Module, x: torch.Tensor, dxdt: torch.Tensor) -> float:
    """MSE of the model's ``dx/dt`` at the test split's (noisy) states against the exact ``dx/dt``: the
    published test loss, the same for every model whatever its training loss."""
    flat_x, flat_d = x.reshape(-1, x.shape[-1]).double(), dxdt.reshape(-1, dxdt.shape[-1]).double()
    with torch.enable_grad():
        pred = model(0.0, flat_x).detach()
    return float(((pred - flat_d) ** 2).mean())


def build_network(model: str) -> torch.nn.Module:
    """The network of a demo model: the published size (two hidden layers of 200, tanh, orthogonal init)."""
    from hnnlab.models import HNN, NeuralODE, SeparableHNN

    cls = {"HNN": HNN, "SepHNN-leapfrog": SeparableHNN, "baseline": NeuralODE}[model]
    return cls(1, hidden=(200, 200), activation="tanh", orthogonal_init=True)


def run_model(task: ModelTask) -> dict[str, Any]:
    """Train, roll out and audit one model (:class:`ModelTask`); returns its row of the comparison."""
    from hnnlab.training.runner import quiet_lightning

    os.environ.setdefault("WANDB_SILENT", "true")
    if "OMP_NUM_THREADS" not in os.environ:
        # The demo's networks are small: intra-op threads cost more than they gain, and much more on a
        # busy machine (measured: up to 10x slower training steps with 2 threads under load).
        torch.set_num_threads(1)
    with quiet_lightning(), _labelled_output(f"  {task.label}: "):
        return _run_model(task)


def _run_model(task: ModelTask) -> dict[str, Any]:
    import lightning.pytorch as pl

    from hnnlab.data.datamodule import HDF5DataModule
    from hnnlab.data.io import load_dataset
    from hnnlab.evaluate import predict_to_file
    from hnnlab.integrators import get_integrator
    from hnnlab.training import fit
    from hnnlab.training.callbacks import PlainProgressLog
    from hnnlab.training.logging import HnnlabWandbLogger
    from hnnlab.training.module import DynamicsModule

    spec = MODELS[task.model]
    out = Path(task.out)
    cpu0 = time.process_time()
    data = load_dataset(task.data_path)
    split, system = data.splits["test"], data.system
    x0 = split.clean[: task.n_rollouts, 0].double()  # (n_rollouts, 2), the same for every model

    pl.seed_everything(task.seed, verbose=False)
    net = build_network(task.model)
    rollout_loss = spec.loss == "rollout"
    derivative_weight = task.derivative_weight if rollout_loss else 0.0
    module = DynamicsModule(
        net, loss=spec.loss, integrator=spec.integrator if rollout_loss else "leapfrog",
        derivative_weight=derivative_weight, optimizer=lambda p: torch.optim.Adam(p, lr=task.lr, weight_decay=1e-4),
    )
    datamodule = HDF5DataModule(task.data_path, mode="windows" if rollout_loss else "pairs",
                                window=task.window if rollout_loss else 1, batch_size=None, seed=task.seed,
                                with_dxdt=derivative_weight > 0)
    logger = HnnlabWandbLogger(project="hnnlab-demo", name=task.run_name, save_dir=str(out), log_model=True)
    how = f"windows of {task.window} leapfrog steps" if rollout_loss else "dx/dt matching"
    if derivative_weight > 0:
        how += f" + {derivative_weight:g} x dx/dt matching"
    print(f"training {task.train_steps} full-batch steps ({how}, Adam lr {task.lr:g})", flush=True)
    every = max(task.train_steps // 4, 1)  # full batch: an epoch is a step
    result = fit(module, datamodule, max_steps=task.train_steps, max_epochs=task.train_steps, accelerator="cpu",
                 logger=logger, checkpoint=out / "checkpoints" / task.run_name,
                 progress=PlainProgressLog(every_n_epochs=every), limit_val_batches=0,
                 log_every_n_steps=log_interval(task.train_steps, every))
    model = module.model.double().eval()
    test_mse = derivative_test_mse(model, split.state, split.dxdt)

    rollout_path = out / "rollouts" / f"{task.run_name}.h5"
    print(f"rollout of {task.rollout_steps:,} steps of dt = {split.dt:.4g} ({spec.integrator}, float64, "
          f"{x0.shape[0]} test states)", flush=True)
    t0 = time.perf_counter()
    integrator = (get_integrator("implicit_midpoint", tol=IMPLICIT_TOL) if spec.integrator == "implicit_midpoint"
                  else get_integrator(spec.integrator))
    save_every = 10 if task.rollout_steps % 10 == 0 else 1
    summary = predict_to_file(
        model, x0, dt=split.dt, n_steps=task.rollout_steps, out=rollout_path, system=system, integrator=integrator,
        save_every=save_every, overwrite=task.overwrite, progress=False,
        metadata={"command": "hnnlab demo", "extra": {"test_loss": test_mse}},
    )
    rollout_seconds = time.perf_counter() - t0
    report = audit_file(rollout_path, model=model, plots=out / "plots" / task.run_name)
    report.to_json(out / "rollouts" / f"{task.run_name}.audit.json")
    energy, acc = report.energy, report.accuracy
    row = {
        "system": task.system_name, "model": task.model, "description": spec.description,
        "loss": spec.loss, "train_steps": task.train_steps, "window": task.window if rollout_loss else None,
        "lr": task.lr, "derivative_weight": derivative_weight, "integrator": summary["integrator"],
        "test_loss": test_mse,
        "max_energy_error": energy.max_error, "energy_drift": energy.drift, "energy_verdict": energy.verdict,
        "vpt_mean": acc.vpt_mean, "vpt_min": acc.vpt_min, "rollout_mse": acc.mse, "horizon": acc.horizon,
        "train_seconds": result.seconds, "rollout_seconds": rollout_seconds,
        "cpu_seconds": time.process_time() - cpu0, "plots": {k: str(v) for k, v in report.plots.items()},
        "rollout_file": str(rollout_path), "first_nonfinite_step": summary["first_nonfinite_step"],
    }
    logger.log_metrics({f"demo/{k}": v for k, v in row.items() if isinstance(v, float)})
    _log_plots(logger, report.plots)
    logger.experiment.finish()
    print(f"done: max |dE|/E0 {energy.max_error:.2e}, VPT {acc.vpt_mean:.2f} ({result.seconds:.0f} s training, "
          f"{rollout_seconds:.0f} s rollout)", flush=True)
    return row


# -- the whole demo ---------------------------------------------------------------------------------------


def _stage(k: int, text: str) -> None:
    print(f"[{k}/{N_STAGES}] {text}", flush=True)


def tasks_for(cfg: DemoConfig, data_paths: dict[str, Path]) -> list[ModelTask]:
    """The (system, model) tasks of a demo, in table order."""
    tasks = []
    for recipe in DEMO_SYSTEMS:
        for model in cfg.models:
            best = model == BEST
            tasks.append(ModelTask(
                recipe=recipe, model=model, data_path=str(data_paths[recipe]), out=str(cfg.out), seed=cfg.seed,
                train_steps=cfg.leapfrog_steps if best else cfg.train_steps, window=cfg.window,
                lr=cfg.leapfrog_lr if best else 1e-3, derivative_weight=cfg.derivative_weight if best else 0.0,
                rollout_steps=cfg.rollout_steps, n_rollouts=cfg.n_rollouts,
                overwrite=cfg.overwrite,
            ))
    return tasks


def _cost(task: ModelTask) -> float:
    """A rough relative cost, to start the longest tasks first (each rollout-loss step integrates windows)."""
    per_step = 2.0 * task.window if MODELS[task.model].loss == "rollout" else 1.0
    rollout_cost = {"implicit_midpoint": 8.0, "leapfrog": 1.0, "rk4": 2.0}[MODELS[task.model].integrator]
    return task.train_steps * per_step + task.rollout_steps * rollout_cost / 10


def run_tasks(tasks: list[ModelTask], jobs: int) -> list[dict[str, Any]]:
    """Run :func:`run_model` on every task, ``jobs`` at a time (spawned processes), results in task order."""
    if jobs == 1 or len(tasks) == 1:
        return [run_model(t) for t in tasks]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    order = sorted(range(len(tasks)), key=lambda i: -_cost(tasks[i]))
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=mp.get_context("spawn")) as pool:
        futures = {i: pool.submit(run_model, tasks[i]) for i in order}
        return [futures[i].result() for i in range(len(tasks))]


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run every stage; returns the summary (also written to ``cfg.out / "summary.json"``)."""
    from hnnlab.training.runner import quiet_lightning

    with quiet_lightning():  # no accelerator banners, tips or known-harmless warnings
        return _run_demo(cfg)


def _run_demo(cfg: DemoConfig) -> dict[str, Any]:
    from hnnlab.data.datamodule import HDF5DataModule
    from hnnlab.training.logging import wandb_mode

    started, cpu0 = time.perf_counter(), time.process_time()
    os.environ.setdefault("WANDB_SILENT", "true")  # keep the demo's output readable
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    out = cfg.out
    for sub in ("data", "rollouts", "plots", "checkpoints"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    _stage(1, f"integrators on the analytic pendulum (W&B mode: {wandb_mode()})")
    integrators, md_integrators = integrator_comparison(cfg.integrator_steps)

    _stage(2, "datasets: " + ", ".join(DEMO_SYSTEMS))
    data_paths = {}
    for recipe in DEMO_SYSTEMS:
        data_paths[recipe] = out / "data" / f"{recipe}.h5"
        print(f"  {recipe} -> {data_paths[recipe]}", flush=True)
        # simulates the recipe when the file is missing
        HDF5DataModule(str(data_paths[recipe]), recipe=recipe, mode="pairs", batch_size=None,
                       seed=cfg.seed).prepare_data()

    tasks = tasks_for(cfg, data_paths)
    _stage(3, f"{len(tasks)} models: train, roll out {cfg.rollout_steps:,} steps, audit "
              f"({min(cfg.jobs, len(tasks))} at a time)")
    for m in cfg.models:
        print(f"  {m}: {MODELS[m].description}; rollout with {MODELS[m].integrator}", flush=True)
    results = run_tasks(tasks, cfg.jobs)

    _stage(4, "comparison")
    rows = [[
        r["system"], r["model"], r["integrator"], f"{r['test_loss']:.2e}", f"{r['max_energy_error']:.2e}",
        r["energy_verdict"], f"{r['vpt_mean']:.2f}", f"{r['vpt_min']:.2f}",
    ] for r in results]
    horizon = results[0]["horizon"] if results else math.nan
    md = _print_table(
        f"Published HNN, hnnlab's SepHNN-leapfrog and the baseline: {cfg.rollout_steps:,}-step rollouts from "
        f"{cfg.n_rollouts} test states (float64)",
        ["system", "model", "rollout", "test dx/dt MSE", "max |dE|/E0", "energy", "VPT (mean)", "VPT (min)"], rows,
    )
    verdicts = claim(results)
    for line in verdicts["lines"]:
        print(line)
    figure = comparison_figure(results, out / "plots" / "comparison.png")
    seconds = time.perf_counter() - started
    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "integrators": integrators,
        "models": results,
        "claim": verdicts,
        "figure": str(figure),
        "seconds": seconds,
        "cpu_seconds_main": time.process_time() - cpu0,
        "wandb_dir": str(out / "wandb"),
    }
    notes = (
        f"\nVPT: the first time the normalised error against the true system passes 0.01 (horizon "
        f"{horizon:.0f}). max \\|dE\\|/E0: the largest relative error of the true energy over every trajectory and "
        f"time. Figure: {figure.name}. Total time: {seconds:.0f} s.\n"
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "summary.md").write_text(md_integrators + "\n" + md + "\n" + "\n".join(
        md_cell(x) for x in verdicts["lines"]) + "\n" + notes)
    print(f"\nSummary: {out / 'summary.md'} and {out / 'summary.json'}")
    print(f"Figure: {figure}")
    print(f"Rollouts and audit reports: {out / 'rollouts'}")
    print(f"Plots: {out / 'plots'}")
    print(f"W&B runs ({wandb_mode()}): {out / 'wandb'}  (upload later with: wandb sync {out / 'wandb'}/offline-run-*)")
    print(f"Total time: {seconds:.0f} s")
    return summary


def claim(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether hnnlab's model is ahead of every other model on both max energy error and VPT, per system."""
    by_system: dict[str, dict[str, dict[str, Any]]] = {}
    for r in results:
        by_system.setdefault(r["system"], {})[r["model"]] = r
    systems, lines = {}, []
    for name, rows in by_system.items():
        if BEST not in rows or len(rows) < 2:
            continue
        best = rows[BEST]
        others = {k: v for k, v in rows.items() if k != BEST}
        energy_ok = all(best["max_energy_error"] < o["max_energy_error"] for o in others.values())
        vpt_ok = all(best["vpt_mean"] > o["vpt_mean"] for o in others.values())
        ratios = {k: {"energy_error_ratio": o["max_energy_error"] / best["max_energy_error"]
                      if best["max_energy_error"] > 0 else math.inf,
                      "vpt_ratio": best["vpt_mean"] / o["vpt_mean"] if o["vpt_mean"] > 0 else math.inf}
                  for k, o in others.items()}
        systems[name] = {"ahead_on_energy": energy_ok, "ahead_on_vpt": vpt_ok, "ratios": ratios}
        names = " and ".join(others)
        energies = ", ".join(f"{o['max_energy_error']:.2e}" for o in others.values())
        vpts = ", ".join(f"{o['vpt_mean']:.2f}" for o in others.values())
        head = "ahead of" if energy_ok and vpt_ok else "NOT ahead of"
        lines.append(f"{name}: {BEST} {head} {names} on max |dE|/E0 ({best['max_energy_error']:.2e} against "
                     f"{energies}) and VPT ({best['vpt_mean']:.2f} against {vpts})")
    return {"systems": systems, "lines": lines,
            "holds": bool(systems) and all(s["ahead_on_energy"] and s["ahead_on_vpt"] for s in systems.values())}


# -- the figure -------------------------------------------------------------------------------------------

COLORS = {"HNN": "tab:blue", "SepHNN-leapfrog": "tab:green", "baseline": "tab:red"}


def running_max_curves(rollout_file: str | os.PathLike) -> tuple[Any, Any, Any]:
    """``(t, energy, error)`` of a demo rollout file, without ``t = 0``: the running maximum over time of each
    trajectory's relative true-energy error and of its normalised error against the reference
    (``(n_traj, n_times - 1)`` each). The last energy column's maximum is the table's max |dE|/E0, and the
    error curve crosses the VPT threshold at the trajectory's valid prediction time."""
    src = load_source(rollout_file)
    energy = metrics.relative_energy_error(src.system.energy(src.states))
    err = metrics.normalized_error(src.states, src.reference)
    energy = torch.nan_to_num(energy, nan=math.inf).cummax(dim=1).values
    err = torch.nan_to_num(err, nan=math.inf).cummax(dim=1).values
    return src.t[1:].numpy(), energy[:, 1:].numpy(), err[:, 1:].numpy()


def comparison_figure(results: list[dict[str, Any]], path: Path) -> Path:
    """One figure, a row per system: the running maximum of the relative energy error (left) and of the
    normalised error against the true system (right), median across test states with the 10-90 % band,
    log-log; the VPT threshold dashed."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    from hnnlab.audit.metrics import DEFAULT_VPT_THRESHOLD

    systems = list(dict.fromkeys(r["system"] for r in results))
    fig, axes = plt.subplots(len(systems), 2, figsize=(11, 3.6 * len(systems)), squeeze=False)
    floor = torch.finfo(torch.float64).eps
    for row, system in enumerate(systems):
        for r in (r for r in results if r["system"] == system):
            t, energy, err = running_max_curves(r["rollout_file"])
            for ax, values in ((axes[row, 0], energy), (axes[row, 1], err)):
                finite = np.where(np.isfinite(values), values, np.nan)
                lo, med, hi = (np.nanquantile(finite, q, axis=0) for q in (0.1, 0.5, 0.9))
                color = COLORS.get(r["model"], None)
                label = f"{r['model']} ({r['integrator']})"
                ax.plot(t, np.clip(med, floor, None), color=color, lw=2, label=label)
                ax.fill_between(t, np.clip(lo, floor, None), np.clip(hi, floor, None), color=color, alpha=0.2, lw=0)
        axes[row, 1].axhline(DEFAULT_VPT_THRESHOLD, color="0.3", ls="--", lw=1, label="VPT threshold")
        axes[row, 0].set_ylabel("running max of |E(t) - E(0)| / |E(0)|")
        axes[row, 1].set_ylabel("running max of normalised error")
        axes[row, 0].set_title(f"{system}: true energy error")
        axes[row, 1].set_title(f"{system}: error against the true system")
        for ax in axes[row]:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("t (system time units)")
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=8, loc="best")
    fig.suptitle("Median over the test states, 10-90 % band shaded (t = 0 left out: both errors are 0 there)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _log_plots(logger: Any, plots: dict[str, str]) -> None:
    try:
        import wandb

        if plots and logger.experiment is not None and not getattr(logger.experiment, "disabled", False):
            logger.experiment.log({f"plots/{name}": wandb.Image(str(path)) for name, path in plots.items()})
    except Exception as exc:  # noqa: BLE001 - media logging must never break the demo
        print(f"(could not log plots to W&B: {exc})")


__all__ = ["DEMO_SYSTEMS", "MODELS", "DemoConfig", "ModelSpec", "claim", "integrator_comparison", "markdown_table",
           "md_cell", "run_demo"]
