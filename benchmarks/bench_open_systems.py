"""Benchmark: the port-Hamiltonian network against a neural ODE and the dissipative HNN on driven, damped systems.

Systems (``hnnlab.systems``, the literature's parameters): the forced Duffing oscillator and the forced damped
pendulum (a drive ``F(t) = (0, gamma cos(omega t))``), and the spring-damper chain of 3 masses driven by one input
``u(t)`` on the last mass. Data: noise-free trajectories from random initial states (dopri8 at 1e-12); the chain's
training inputs are drawn from the ``sinusoids`` family, and it is tested both on new sinusoids and on inputs of a
family it never saw (``steps``, a zero-order hold).

Models, each trained by derivative matching through ``hnnlab.training.fit`` (full batch, Adam with a cosine
schedule, the same steps for all):

- ``phnn``: :class:`hnnlab.models.PortHamiltonianNN`, separable ``H``, a constant damping ``R_p = L L^T``, a force
  ``f(t)`` (Duffing, pendulum) or a constant input map ``g`` (chain);
- ``node``: a neural ODE that sees what a driven system depends on, ``dx/dt = MLP(x, t, u)`` (time, and the inputs
  where there are any, as extra network inputs: without them no autonomous network can fit a driven field);
- ``dhnn``: :class:`hnnlab.models.DissipativeHNN` as it is (autonomous): what a damping-aware model that knows
  nothing of forcing does (on the chain it is trained on the same trajectories stored without their inputs, since a
  model without inputs is refused on a file with them).

Measured on the test trajectories (rk4 rollouts, 10 steps per saved interval, each trajectory with its own
inputs): the RMS state error at three times; the energy balance of the rollout judged by the true system
(:func:`hnnlab.audit.balance.energy_balance`, the median over trajectories of its relative residual; the row
``true system`` gives the floor, the residual of the true test trajectories on the same save grid); and the
recovered damping, ``-d(dp_i/dt)/dp_i`` averaged over test states and momenta (the same estimator for every model;
for these systems it is exactly the damping coefficient: ``delta``, ``1/Q``, ``c``).

Writes ``benchmarks/results/bench_open_systems.{md,csv}`` and ``bench_open_systems_force.png`` (the PHNN's learned
force against the true one, Duffing and pendulum):

    .venv/bin/python benchmarks/bench_open_systems.py                 # full: 2000 steps per model
    .venv/bin/python benchmarks/bench_open_systems.py --steps 600 --n-traj 24   # reduced
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from hnnlab.audit.balance import energy_balance
from hnnlab.data.datamodule import HDF5DataModule
from hnnlab.data.input_families import Sinusoids, Steps
from hnnlab.data.simulate import SimulationResult, simulate
from hnnlab.data.writer import write_dataset
from hnnlab.inputs import DrivenField, InputSignal
from hnnlab.models import DissipativeHNN, PortHamiltonianNN
from hnnlab.models.base import AbstractModel
from hnnlab.models.mlp import MLP
from hnnlab.models.phnn import decomposition
from hnnlab.rollout import solve
from hnnlab.systems import get_system
from hnnlab.training import fit
from hnnlab.training.module import DynamicsModule

try:
    from benchmarks import _common
except ImportError:  # run as a script from benchmarks/
    import _common

# system -> (dt between saved states, saved steps per trajectory, training inputs, test input families)
CASES = {
    "duffing": (0.1, 60, None, {"none": None}),
    "forced_pendulum": (0.1, 60, None, {"none": None}),
    "spring_damper_chain": (0.1, 60, Sinusoids(), {"sinusoids (seen)": Sinusoids(), "steps (unseen)": Steps()}),
}
ERROR_TIMES = (1.0, 3.0, 6.0)
SUBSTEPS = 10


class DrivenNODE(AbstractModel):
    """``dx/dt = MLP(x, t, u)``: a neural ODE with the time and the inputs as extra network inputs (the baseline
    of this benchmark)."""

    name: ClassVar[str] = ""
    conservative: ClassVar[bool] = False

    def __init__(self, dof: int, n_inputs: int = 0, hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__(dof)
        self.n_inputs = n_inputs
        self.net = MLP(2 * dof + 1 + n_inputs, hidden, 2 * dof, "tanh", True, False)

    def field_with_inputs(self, t: Tensor | float, x: Tensor, u: Tensor | None) -> Tensor:
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        tt = (tt[..., None] if tt.ndim else tt.reshape(1)).expand(*x.shape[:-1], 1)
        parts = [x, tt] + ([u.to(x.dtype)] if self.n_inputs else [])
        return self.net(torch.cat(parts, dim=-1))

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self.field_with_inputs(t, x, None)


MODELS = ("phnn", "node", "dhnn")


def make_model(name: str, system, hidden: tuple[int, ...], seed: int) -> AbstractModel:  # noqa: ANN001
    """The model ``name`` for ``system``, its weights drawn after seeding with ``seed`` (float64)."""
    torch.manual_seed(seed)
    k = system.n_inputs
    if name == "phnn":
        model = PortHamiltonianNN(system.dof, hidden=hidden, separable=True, force="none" if k else "time",
                                  n_inputs=k)
    elif name == "node":
        model = DrivenNODE(system.dof, k, hidden)
    else:
        model = DissipativeHNN(system.dof, hidden=hidden)
    return model.double()


def data(name: str, n_traj: int, n_test: int, seed: int, folder: Path) -> tuple:
    """The system, its training file, and the test splits by input family ``{label: (SplitData, interpolation)}``."""
    system = get_system(name)
    dt, n_steps, train_inputs, test_families = CASES[name]
    train = simulate(system, n_traj, dt=dt, n_steps=n_steps, inputs=train_inputs, seed=seed, splits=(1.0, 0.0, 0.0))
    path = write_dataset(folder / f"{name}.h5", train, overwrite=True)
    if train_inputs is not None:  # the same trajectories without their inputs, for the models that take none
        plain = SimulationResult({k: v for k, v in train.metadata.items() if k != "inputs"},
                                 {k: dataclasses.replace(v, inputs=None) for k, v in train.splits.items()})
        write_dataset(folder / f"{name}-states-only.h5", plain, overwrite=True)
    tests = {}
    for i, (label, family) in enumerate(test_families.items()):
        result = simulate(system, n_test, dt=dt, n_steps=n_steps, inputs=family, seed=seed + 100 + i,
                          splits=(0.0, 0.0, 1.0))
        tests[label] = (result.splits["test"], None if family is None else family.interpolation)
    return system, path, tests


def recovered_damping(field, t: Tensor, x: Tensor, u: Tensor | None, dof: int) -> float:  # noqa: ANN001
    """``-d(dp_i/dt)/dp_i`` averaged over the states ``(n, 2 * dof)`` and the momenta."""
    x = x.clone().requires_grad_(True)
    out = field.field_with_inputs(t, x, u) if u is not None else field(t, x)
    total = 0.0
    for i in range(dof):
        (grad,) = torch.autograd.grad(out[:, dof + i].sum(), x, retain_graph=True)
        total += float(-grad[:, dof + i].mean())
    return total / dof


def evaluate(model, system, split, interpolation: str | None) -> dict[str, float]:  # noqa: ANN001
    """RMS state errors at ``ERROR_TIMES``, the median energy-balance residual and the recovered damping."""
    dt = float(split.t[1] - split.t[0])
    x0, true = split.state[:, 0], split.state
    u = split.inputs
    if u is not None and model.n_inputs:
        field = DrivenField(model, InputSignal(split.t, u, interpolation))
    else:
        field = model
    with torch.no_grad():
        pred = solve(field, "rk4", x0, dt / SUBSTEPS, (split.n_times - 1) * SUBSTEPS, SUBSTEPS).ys
    out: dict[str, float] = {}
    for when in ERROR_TIMES:
        k = int(round(when / dt))
        out[f"rmse_t{when:g}"] = float((pred[:, k] - true[:, k]).pow(2).mean().sqrt())
    finite = torch.isfinite(pred).all(-1).all(-1)
    if bool(finite.any()):
        balance = energy_balance(system, pred[finite], split.t, inputs=None if u is None else u[finite],
                                 interpolation=interpolation or "linear")
        out["balance_residual"] = float(torch.tensor(balance.residual_per_trajectory).median())
    else:
        out["balance_residual"] = float("nan")
    states = true.reshape(-1, true.shape[-1])
    times = split.t.repeat(split.n_traj)
    flat_u = None if u is None or not model.n_inputs else u.reshape(-1, u.shape[-1])
    out["damping"] = recovered_damping(model, times, states, flat_u, system.dof)
    return out


def true_damping(system) -> float:  # noqa: ANN001
    x = system.sample_initial_states(64, torch.Generator().manual_seed(0))
    u = torch.zeros(64, system.n_inputs, dtype=torch.float64) if system.n_inputs else None
    return recovered_damping(system, torch.zeros(64, dtype=torch.float64), x, u, system.dof)


def learned_force(model: PortHamiltonianNN, system, split) -> dict:  # noqa: ANN001
    """The PHNN's decomposition at the test states and times (:func:`hnnlab.models.phnn.decomposition`), and its
    force ``f(t)`` against the true one on a fine grid over the test horizon (the learned one shifted by the constant
    offset a potential can absorb)."""
    t_states = split.t.repeat(split.n_traj)
    report = decomposition(model, system, t_states, split.state.reshape(-1, split.state.shape[-1]))
    grid = torch.linspace(float(split.t[0]), float(split.t[-1]), 400, dtype=torch.float64)
    zeros = torch.zeros(grid.numel(), 2 * system.dof, dtype=torch.float64)
    with torch.no_grad():
        learned = model.force(grid, zeros)[:, system.dof]
        true = system.force(grid, zeros)[:, system.dof]
    return {"report": report, "t": grid, "learned": learned - report["force_offset"][0], "true": true}


def plot_forces(curves: dict[str, dict], path: Path) -> Path:
    """The learned against the true force of each system, one panel each (PNG)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.4), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items(), strict=True):
        r = c["report"]
        ax.plot(c["t"], c["true"], color="black", lw=2, label="true F(t)")
        ax.plot(c["t"], c["learned"], color="tab:red", ls="--", lw=1.5, label="PHNN f(t) - offset")
        ax.set_title(f"{name}: damping {r['damping_learned'][0][0]:.4f} (true {r['damping_true'][0][0]:.4f})")
        ax.set_xlabel("t (time units of the system)")
        ax.set_ylabel("force on p")
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(args: argparse.Namespace, curves: dict | None = None) -> list[dict]:
    """The rows of the table; with ``curves``, the PHNN's learned forces are added to it by system."""
    rows = []
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.systems:
            system, path, tests = data(name, args.n_traj, args.n_test, args.seed, Path(tmp))
            truth = true_damping(system)
            for label, (split, interpolation) in tests.items():  # the floor: the true trajectories' own balance
                balance = energy_balance(system, split.state, split.t, inputs=split.inputs,
                                         interpolation=interpolation or "linear")
                rows.append({"system": name, "test_inputs": label, "model": "true system",
                             **{f"rmse_t{t:g}": 0.0 for t in ERROR_TIMES},
                             "balance_residual": float(torch.tensor(balance.residual_per_trajectory).median()),
                             "damping": truth, "damping_true": truth, "train_seconds": 0.0})
            for model_name in MODELS:
                model = make_model(model_name, system, tuple(args.hidden), args.seed)
                module = DynamicsModule(
                    model, optimizer=lambda p: torch.optim.Adam(p, lr=args.lr),
                    scheduler=lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, args.steps, args.lr / 100),
                ).double()
                file = path if model.n_inputs or system.n_inputs == 0 else path.with_name(f"{name}-states-only.h5")
                datamodule = HDF5DataModule(str(file), batch_size=None)
                print(f"[{name}] training {model_name} for {args.steps} steps", flush=True)
                result = fit(module, datamodule, max_steps=args.steps, checkpoint=False, accelerator="cpu",
                             progress=None, enable_model_summary=False)
                if model_name == "phnn" and system.n_inputs == 0 and curves is not None:
                    curves[name] = learned_force(model, system, next(iter(tests.values()))[0])
                for label, (split, interpolation) in tests.items():
                    measured = evaluate(model, system, split, interpolation)
                    rows.append({"system": name, "test_inputs": label, "model": model_name, **measured,
                                 "damping_true": truth, "train_seconds": round(result.seconds, 1)})
                    print(f"  {label}: {measured}", flush=True)
    return rows


def markdown(rows: list[dict], header: str) -> str:
    columns = ["system", "test inputs", "model", *(f"RMS state error, t = {t:g}" for t in ERROR_TIMES),
               "energy-balance residual (median)", "damping (true)", "train s"]
    table = [[r["system"], r["test_inputs"], r["model"], *(f"{r[f'rmse_t{t:g}']:.3g}" for t in ERROR_TIMES),
              f"{r['balance_residual']:.3g}", f"{r['damping']:.4f} ({r['damping_true']:.4f})", r["train_seconds"]]
             for r in rows]
    return "\n".join([header, "", _common.markdown_table(columns, table), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--n-traj", type=int, default=48, help="training trajectories per system")
    parser.add_argument("--n-test", type=int, default=16, help="test trajectories per input family")
    parser.add_argument("--steps", type=int, default=2000, help="training steps per model")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=_common.RESULTS / "bench_open_systems")
    args = parser.parse_args()
    start = time.perf_counter()
    curves: dict[str, dict] = {}
    rows = run(args, curves)
    elapsed = time.perf_counter() - start
    header = (f"# Open systems: PHNN vs NODE(x, t, u) vs DissipativeHNN\n\n"
              f"`{' '.join(['benchmarks/bench_open_systems.py', *sys.argv[1:]])}`: {args.n_traj} training "
              f"trajectories, {args.n_test} test trajectories per input family, {args.steps} steps per model, hidden "
              f"{args.hidden}, seed {args.seed}; {elapsed / 60:.1f} min on {platform.machine()} "
              f"({torch.get_num_threads()} thread).")
    text = markdown(rows, header)
    if curves:
        png = plot_forces(curves, args.out.with_name(args.out.name + "_force.png"))
        errors = ", ".join(f"{name} {c['report']['force_rms_error'] / c['report']['force_rms_true']:.1%}"
                           for name, c in curves.items())
        text += (f"\nPHNN's learned force against the true one over the test horizon, shifted by the constant a "
                 f"potential can absorb ([plot]({png.name})); RMS error relative to the true force's RMS: {errors}.\n")
    md, csv_path = _common.write_results(args.out, text, rows)
    print(f"wrote {md} and {csv_path} in {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
