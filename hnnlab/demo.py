"""The main job: ``hnnlab demo``, the whole pipeline on two small systems in a few CPU minutes.

1. Integrators on the analytic pendulum: symplectic methods keep the energy error bounded, RK4 drifts.
2. Datasets: the Greydanus et al. (2019) mass-spring and pendulum recipes, simulated to HDF5.
3. Training with Lightning: an HNN and the baseline MLP (a neural ODE) on each, tracked in W&B
   (offline unless a key is configured).
4. Rollouts of 10,000 steps from test initial states, in float64, with the reference of the true system.
5. The conservation audit of every rollout, plots, and a comparison table (HNN against baseline).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hnnlab.audit import audit_file, audit_trajectories
from hnnlab.rollout import rollout
from hnnlab.systems import get_system

DEMO_SYSTEMS = ("greydanus-spring", "greydanus-pendulum")


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    train_steps: int = 2000
    rollout_steps: int = 10_000
    n_rollouts: int = 16
    integrator_steps: int = 20_000
    seed: int = 0
    overwrite: bool = True


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="right" if h not in ("system", "model", "integrator", "verdict") else "left")
    for row in rows:
        table.add_row(*row)
    Console(width=max(Console().width, 140)).print(table)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return f"### {title}\n\n" + "\n".join(lines) + "\n"


def integrator_comparison(n_steps: int = 20_000, dt: float = 0.1) -> tuple[list[dict[str, Any]], str]:
    """Energy behaviour of leapfrog, Yoshida-4 and RK4 on the analytic pendulum over ``n_steps`` steps."""
    system = get_system("pendulum")
    x0 = system.sample_initial_states(8, torch.Generator().manual_seed(0))
    t = torch.arange(n_steps // 10 + 1, dtype=torch.float64) * dt * 10
    results, rows = [], []
    for name in ("leapfrog", "yoshida4", "rk4"):
        start = time.perf_counter()
        states = rollout(system, name, x0, dt, n_steps, save_every=10)
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


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run every stage; returns the summary (also written to ``cfg.out / "summary.json"``)."""
    from hnnlab.training.runner import quiet_lightning

    with quiet_lightning():  # no accelerator banners, tips or known-harmless warnings
        return _run_demo(cfg)


def _run_demo(cfg: DemoConfig) -> dict[str, Any]:
    import lightning.pytorch as pl

    from hnnlab.data.datamodule import HDF5DataModule
    from hnnlab.data.io import load_dataset
    from hnnlab.evaluate import predict_to_file
    from hnnlab.integrators import get_integrator
    from hnnlab.models import HNN, NeuralODE
    from hnnlab.training import fit
    from hnnlab.training.callbacks import PlainProgressLog
    from hnnlab.training.logging import HnnlabWandbLogger, wandb_mode
    from hnnlab.training.module import DynamicsModule

    started = time.perf_counter()
    os.environ.setdefault("WANDB_SILENT", "true")  # keep the demo's output readable
    if "OMP_NUM_THREADS" not in os.environ:
        # The demo's networks are small: intra-op threads cost more than they gain, and much more on a
        # busy machine (measured: up to 10x slower training steps with 2 threads under load).
        torch.set_num_threads(1)
    out = cfg.out
    for sub in ("data", "rollouts", "plots", "checkpoints"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    print(f"[1/5] integrators on the analytic pendulum (W&B mode: {wandb_mode()})")
    integrators, md_integrators = integrator_comparison(cfg.integrator_steps)

    rows, results = [], []
    for recipe in DEMO_SYSTEMS:
        system_name = recipe.removeprefix("greydanus-")
        data_path = out / "data" / f"{recipe}.h5"
        print(f"[2/5] dataset {recipe} -> {data_path}")
        dm_kwargs = dict(path=str(data_path), recipe=recipe, mode="pairs", batch_size=None, seed=cfg.seed)
        HDF5DataModule(**dm_kwargs).prepare_data()  # simulates the recipe when the file is missing
        data = load_dataset(data_path)
        split, system = data.splits["test"], data.system
        x0 = split.clean[: cfg.n_rollouts, 0].double()  # (n_rollouts, 2), the same for every model
        for model_name, model_cls in (("HNN", HNN), ("baseline", NeuralODE)):
            pl.seed_everything(cfg.seed, verbose=False)
            run_name = f"{system_name}_{model_name.lower()}"
            datamodule = HDF5DataModule(**dm_kwargs)
            net = model_cls(1, hidden=(200, 200), activation="tanh", orthogonal_init=True)
            module = DynamicsModule(
                net, loss="derivative",
                optimizer=lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4),
            )
            logger = HnnlabWandbLogger(project="hnnlab-demo", name=run_name, save_dir=str(out), log_model=True)
            print(f"[3/5] training {model_name} on {system_name}: {cfg.train_steps} full-batch steps")
            t0 = time.perf_counter()
            every = max(cfg.train_steps // 4, 1)  # full batch: an epoch is a step
            trainer = fit(module, datamodule, max_steps=cfg.train_steps, max_epochs=-1, accelerator="cpu",
                          logger=logger, checkpoint=out / "checkpoints" / run_name,
                          progress=PlainProgressLog(every_n_epochs=every), check_val_every_n_epoch=every).trainer
            test_loss = float(trainer.test(module, datamodule=datamodule, verbose=False)[0]["test/loss"])
            train_seconds = time.perf_counter() - t0

            model = module.model.double().eval()
            rollout_path = out / "rollouts" / f"{run_name}.h5"
            print(f"[4/5] rollout {model_name} on {system_name}: {cfg.rollout_steps:,} steps of dt = {split.dt:.4g}")
            t0 = time.perf_counter()
            # A general learned H needs an implicit symplectic method; 1e-10 is far below the model's error.
            integrator = get_integrator("implicit_midpoint", tol=1e-10) if model.has_energy else get_integrator("rk4")
            summary = predict_to_file(
                model, x0, dt=split.dt, n_steps=cfg.rollout_steps, out=rollout_path, system=system,
                integrator=integrator,
                save_every=10, overwrite=cfg.overwrite,
                metadata={"command": "hnnlab demo", "extra": {"test_loss": test_loss}},
            )
            rollout_seconds = time.perf_counter() - t0
            plot_dir = out / "plots" / run_name
            report = audit_file(rollout_path, model=model, plots=plot_dir)
            report.to_json(out / "rollouts" / f"{run_name}.audit.json")
            energy, acc = report.energy, report.accuracy
            result = {
                "system": system_name, "model": model_name, "integrator": summary["integrator"],
                "test_loss": test_loss, "max_energy_error": energy.max_error, "energy_drift": energy.drift,
                "energy_verdict": energy.verdict, "vpt_mean": acc.vpt_mean, "vpt_min": acc.vpt_min,
                "rollout_mse": acc.mse, "horizon": acc.horizon, "train_seconds": train_seconds,
                "rollout_seconds": rollout_seconds, "plots": dict(report.plots),
                "rollout_file": str(rollout_path), "first_nonfinite_step": summary["first_nonfinite_step"],
            }
            results.append(result)
            logger.log_metrics({f"demo/{k}": v for k, v in result.items() if isinstance(v, float)})
            _log_plots(logger, report.plots)
            logger.experiment.finish()
            rows.append([
                system_name, model_name, summary["integrator"], f"{test_loss:.3e}", f"{energy.max_error:.2e}",
                f"{energy.drift:+.2e}", energy.verdict, f"{acc.vpt_mean:.1f}", f"{acc.mse:.2e}",
            ])

    print("[5/5] comparison")
    md = _print_table(
        f"HNN against baseline: {cfg.rollout_steps:,}-step rollouts from {cfg.n_rollouts} test states (float64)",
        ["system", "model", "integrator", "test loss", "max |dE|/E0", "energy drift", "verdict",
         "VPT (mean)", "rollout MSE"], rows,
    )
    summary = {
        "integrators": integrators,
        "models": results,
        "seconds": time.perf_counter() - started,
        "wandb_dir": str(out / "wandb"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "summary.md").write_text(md_integrators + "\n" + md)
    print(f"\nSummary: {out / 'summary.md'} and {out / 'summary.json'}")
    print(f"Rollouts and audit reports: {out / 'rollouts'}")
    print(f"Plots: {out / 'plots'}")
    print(f"W&B runs ({wandb_mode()}): {out / 'wandb'}  (upload later with: wandb sync {out / 'wandb'}/offline-run-*)")
    print(f"Total time: {summary['seconds']:.0f} s")
    return summary


def _log_plots(logger: Any, plots: dict[str, str]) -> None:
    try:
        import wandb

        if plots and logger.experiment is not None and not getattr(logger.experiment, "disabled", False):
            logger.experiment.log({f"plots/{name}": wandb.Image(str(path)) for name, path in plots.items()})
    except Exception as exc:  # noqa: BLE001 - media logging must never break the demo
        print(f"(could not log plots to W&B: {exc})")
