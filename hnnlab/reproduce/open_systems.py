"""Open systems: the port-Hamiltonian network against a neural ODE and the dissipative HNN on driven, damped systems
(``hnnlab reproduce open-systems``).

Tasks (``hnnlab.systems``, the literature's parameters; noise-free data, dopri8 at 1e-12):

- ``duffing``: the forced Duffing oscillator ``q'' + 0.3 q' - q + q^3 = 0.5 cos(1.2 t)``;
- ``forced_pendulum``: Baker and Gollub's driven pendulum ``q'' + q' / 2 + sin q = 1.5 cos(2 t / 3)``;
- ``spring_damper_chain``: 3 masses, damping 0.1, driven by one input ``u(t)`` on the last mass; trained on inputs
  of the ``sinusoids`` family and tested on new sinusoids and on a family it never saw (``steps``, a zero-order
  hold);
- ``mass_spring_phlearn``: the damped, forced mass-spring of phlearn's example (Eidnes et al. 2023):
  ``q'' + 0.3 q' + q = 0.5 cos(pi t / 2)`` (the Duffing form with ``alpha = 1, beta = 0``; phlearn drives it with
  ``0.5 sin(pi t / 2)``), saved every 0.1 to ``t = 10``.

Models, each trained by derivative matching (or, with the setting ``loss="rollout"``, through rk4 windows driven by
their own inputs and started at their own times) through :func:`hnnlab.reproduce.common.fit` (full batch, Adam with a
cosine schedule, the same steps for all, float64):

- ``phnn``: :class:`hnnlab.models.PortHamiltonianNN`, separable ``H``, a constant damping ``R_p = L L^T``, a force
  ``f(t)`` (forced tasks) or a constant input map ``g`` (the chain);
- ``node``: :class:`DrivenNODE`, ``dx/dt = MLP(x, t, u)``, a neural ODE that sees the time and the inputs (without
  them no autonomous network can fit a driven field);
- ``dhnn``: :class:`hnnlab.models.DissipativeHNN` as it is (autonomous): a damping-aware model that knows nothing of
  forcing (on the chain it is trained on the same trajectories stored without their inputs, since a model without
  inputs is refused on a file with them).

Measured on the test trajectories of every input family (rk4 rollouts, ``substeps`` steps per saved interval, each
trajectory driven by its own inputs): the RMS state error at ``error_times``; the energy balance of the rollout
judged by the true system (:func:`hnnlab.audit.balance.energy_balance`, the median over trajectories of its relative
residual; the row ``true system`` is the floor, the residual of the true test trajectories on the same save grid);
the recovered damping ``-d(dp_i/dt)/dp_i``, averaged over the test states and the momenta (the same estimator for
every model; for these systems it is exactly the damping coefficient ``delta``, ``1/Q``, ``c``); and, for the PHNN on
a forced task, its learned force against the true one (:func:`hnnlab.models.phnn.decomposition`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from hnnlab.audit.balance import energy_balance
from hnnlab.data.input_families import AbstractInputFamily, Sinusoids, Steps
from hnnlab.data.simulate import SimulationResult, simulate
from hnnlab.data.writer import write_dataset
from hnnlab.errors import InvalidArgumentError
from hnnlab.inputs import DrivenField, InputSignal
from hnnlab.models import DissipativeHNN, PortHamiltonianNN
from hnnlab.models.base import AbstractModel
from hnnlab.models.mlp import MLP
from hnnlab.models.phnn import decomposition
from hnnlab.reproduce.common import ReproduceConfig, fit, merged_settings
from hnnlab.reproduce.open_systems_report import write_page
from hnnlab.rollout import solve
from hnnlab.systems import get_system


@dataclass(frozen=True)
class Case:
    """A task: the system (registered name and parameters), its save grid, the training inputs (``None``: the
    system is driven by its own force and takes no inputs) and the test input families by label."""

    system: str
    params: dict[str, Any]
    dt: float
    n_steps: int
    train_inputs: AbstractInputFamily | None
    test_inputs: dict[str, AbstractInputFamily | None]

    def make_system(self) -> Any:
        return get_system(self.system, **self.params)


CASES: dict[str, Case] = {
    "duffing": Case("duffing", {}, 0.1, 60, None, {"none": None}),
    "forced_pendulum": Case("forced_pendulum", {}, 0.1, 60, None, {"none": None}),
    "spring_damper_chain": Case("spring_damper_chain", {}, 0.1, 60, Sinusoids(),
                                {"sinusoids (seen)": Sinusoids(), "steps (unseen)": Steps()}),
    "mass_spring_phlearn": Case("duffing", {"alpha": 1.0, "beta": 0.0, "delta": 0.3, "gamma": 0.5,
                                            "omega": math.pi / 2}, 0.1, 100, None, {"none": None}),
}
TASKS: tuple[str, ...] = tuple(CASES)
MODELS: tuple[str, ...] = ("phnn", "node", "dhnn")

# All sizes of a run; ``cfg.extra`` overrides any of them (tests use tiny ones). The cpu budget (3 seeds) was
# measured on the 2-core machine: see the results page's notes for the time it took.
_CPU: dict[str, Any] = {
    "n_traj": 32,  # training trajectories per task
    "n_test": 16,  # test trajectories per input family
    "steps": 1000,  # optimizer steps per model (full batch)
    "lr": 1e-2,  # Adam, cosine-annealed to lr / 100
    "hidden": (64, 64),
    "models": MODELS,
    "error_times": (1.0, 3.0, 6.0),
    "substeps": 10,  # rk4 steps per saved interval in the test rollouts
    "loss": "derivative",  # or "rollout": rk4 windows of `window` saved steps, each driven by its own inputs
    "window": 5,
}
BUDGETS: dict[str, dict[str, Any]] = {
    "cpu": _CPU,
    "published": {**_CPU, "n_traj": 256, "n_test": 64, "steps": 20000, "hidden": (128, 128)},  # meant for a GPU
}


class DrivenNODE(AbstractModel):
    """``dx/dt = MLP(x, t, u)``: a neural ODE with the time and the inputs as extra network inputs (the baseline).

    Not conservative, not separable; depends on time; takes ``n_inputs`` inputs through ``field_with_inputs``.
    """

    name: ClassVar[str] = ""
    conservative: ClassVar[bool] = False
    time_dependent: ClassVar[bool] = True

    def __init__(self, dof: int, n_inputs: int = 0, hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__(dof)
        self.n_inputs = n_inputs
        self.net = MLP(2 * dof + 1 + n_inputs, hidden, 2 * dof, "tanh", True, False)

    def field_with_inputs(self, t: Tensor | float, x: Tensor, u: Tensor | None) -> Tensor:
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        tt = (tt[..., None] if tt.ndim else tt.reshape(1)).expand(*x.shape[:-1], 1)  # (..., 1)
        parts = [x, tt] + ([u.to(x.dtype)] if self.n_inputs else [])
        return self.net(torch.cat(parts, dim=-1))  # (..., 2 * dof)

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self.field_with_inputs(t, x, None)


def build_model(name: str, system: Any, hidden: tuple[int, ...]) -> AbstractModel:
    """The model ``name`` for ``system`` (float64), its weights drawn from the global generator (seeded by
    :func:`~hnnlab.reproduce.common.fit`)."""
    k = system.n_inputs
    if name == "phnn":
        model: AbstractModel = PortHamiltonianNN(system.dof, hidden=hidden, separable=True,
                                                 force="none" if k else "time", n_inputs=k)
    elif name == "node":
        model = DrivenNODE(system.dof, k, hidden)
    else:
        model = DissipativeHNN(system.dof, hidden=hidden)
    return model.double()


def settings(cfg: ReproduceConfig) -> dict[str, Any]:
    """The budget's sizes with ``cfg.extra`` applied; unknown keys and models are refused."""
    merged = merged_settings("open-systems", BUDGETS, cfg)
    merged["models"], merged["hidden"] = tuple(merged["models"]), tuple(merged["hidden"])
    merged["error_times"] = tuple(float(t) for t in merged["error_times"])
    bad = [m for m in merged["models"] if m not in MODELS]
    if bad:
        raise InvalidArgumentError(f"open-systems: unknown model {bad[0]!r}; available: {', '.join(MODELS)}")
    if merged["loss"] not in ("derivative", "rollout"):
        raise InvalidArgumentError(f"open-systems: loss must be 'derivative' or 'rollout', got {merged['loss']!r}")
    for key in ("n_traj", "n_test", "steps", "substeps", "window"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"open-systems: {key} must be an integer >= 1, got {value!r}")
    return merged


# -- data --------------------------------------------------------------------------------------------


def build_data(case: Case, task: str, n_traj: int, n_test: int, seed: int, folder: Path) -> tuple[Any, Path, dict]:
    """The system, its training file, and the test splits by input family ``{label: (SplitData, interpolation)}``.
    For a task with inputs, also ``<task>_seed<seed>-states-only.h5``: the same trajectories without their
    inputs, for the models that take none."""
    system = case.make_system()
    train = simulate(system, n_traj, dt=case.dt, n_steps=case.n_steps, inputs=case.train_inputs, seed=seed,
                     splits=(1.0, 0.0, 0.0), integrator="dopri8")
    folder.mkdir(parents=True, exist_ok=True)
    path = write_dataset(folder / f"{task}_seed{seed}.h5", train, overwrite=True)
    if case.train_inputs is not None:
        plain = SimulationResult({k: v for k, v in train.metadata.items() if k != "inputs"},
                                 {k: dataclasses.replace(v, inputs=None) for k, v in train.splits.items()})
        write_dataset(_states_only(path), plain, overwrite=True)
    tests = {}
    for i, (label, family) in enumerate(case.test_inputs.items()):
        result = simulate(system, n_test, dt=case.dt, n_steps=case.n_steps, inputs=family, seed=seed + 100 + i,
                          splits=(0.0, 0.0, 1.0), integrator="dopri8")
        tests[label] = (result.splits["test"], None if family is None else family.interpolation)
    return system, path, tests


def _states_only(path: Path) -> Path:
    return path.with_name(f"{path.stem}-states-only.h5")


# -- the measures ------------------------------------------------------------------------------------


def recovered_damping(field: Any, t: Tensor, x: Tensor, u: Tensor | None, dof: int) -> float:
    """``-d(dp_i/dt)/dp_i`` averaged over the states ``x`` ``(n, 2 * dof)`` (at times ``t`` ``(n,)``, inputs ``u``
    ``(n, n_inputs)`` for a field that takes them) and the momenta: the damping coefficient of a field
    ``dp/dt = -c p + (terms without p)``."""
    x = x.clone().requires_grad_(True)
    out = field.field_with_inputs(t, x, u) if u is not None else field(t, x)  # (n, 2 * dof)
    total = 0.0
    for i in range(dof):
        (grad,) = torch.autograd.grad(out[:, dof + i].sum(), x, retain_graph=True)
        total += float(-grad[:, dof + i].mean())
    return total / dof


def true_damping(system: Any) -> float:
    """:func:`recovered_damping` of the true system at 64 of its initial states."""
    x = system.sample_initial_states(64, torch.Generator().manual_seed(0))
    u = torch.zeros(64, system.n_inputs, dtype=torch.float64) if system.n_inputs else None
    return recovered_damping(system, torch.zeros(64, dtype=torch.float64), x, u, system.dof)


def evaluate(model: Any, system: Any, split: Any, interpolation: str | None, sizes: dict[str, Any]
             ) -> dict[str, float]:
    """RMS state errors at ``sizes["error_times"]``, the median energy-balance residual and the recovered damping of
    ``model`` on a test split ``(n_test, n_times, 2 * dof)`` (each trajectory driven by its own inputs)."""
    dt = float(split.t[1] - split.t[0])
    x0, true = split.state[:, 0], split.state
    u = split.inputs
    field = DrivenField(model, InputSignal(split.t, u, interpolation)) if u is not None and model.n_inputs else model
    substeps = sizes["substeps"]
    with torch.no_grad():
        pred = solve(field, "rk4", x0, dt / substeps, (split.n_times - 1) * substeps, substeps).ys
    out: dict[str, float] = {}
    for when in sizes["error_times"]:
        k = min(int(round(when / dt)), split.n_times - 1)
        out[f"rmse_t{when:g}"] = float((pred[:, k] - true[:, k]).pow(2).mean().sqrt())
    finite = torch.isfinite(pred).all(-1).all(-1)  # (n_test,)
    out["balance_residual"] = math.nan
    if bool(finite.any()):
        balance = energy_balance(system, pred[finite], split.t, inputs=None if u is None else u[finite],
                                 interpolation=interpolation or "linear")
        out["balance_residual"] = float(torch.tensor(balance.residual_per_trajectory).median())
    states = true.reshape(-1, true.shape[-1])  # (n_test * n_times, 2 * dof)
    times = split.t.repeat(split.n_traj)
    flat_u = None if u is None or not model.n_inputs else u.reshape(-1, u.shape[-1])
    out["damping"] = recovered_damping(model, times, states, flat_u, system.dof)
    return out


def learned_force(model: PortHamiltonianNN, system: Any, split: Any) -> dict[str, Any]:
    """The PHNN's decomposition at the test states and times, and its force ``f(t)`` against the true one on 400
    times over the test horizon (the learned one shifted by the constant offset a potential can absorb)."""
    t_states = split.t.repeat(split.n_traj)
    report = decomposition(model, system, t_states, split.state.reshape(-1, split.state.shape[-1]))
    grid = torch.linspace(float(split.t[0]), float(split.t[-1]), 400, dtype=torch.float64)
    zeros = torch.zeros(grid.numel(), 2 * system.dof, dtype=torch.float64)
    with torch.no_grad():
        learned = model.force(grid, zeros)[:, system.dof]
        true = system.force(grid, zeros)[:, system.dof]
    return {
        "relative_rms_error": report["force_rms_error"] / report["force_rms_true"],
        "t": grid.tolist(),
        "learned": (learned - report["force_offset"][0]).tolist(),
        "true": true.tolist(),
    }


# -- the run -----------------------------------------------------------------------------------------


def run_task(cfg: ReproduceConfig, task: str, seed: int, sizes: dict[str, Any]) -> dict[str, Any]:
    """Every model of ``sizes["models"]`` trained and measured on ``task`` for ``seed``: the rows (the floor and
    one per model and test family) and the PHNN's learned force (forced tasks)."""
    case = CASES[task]
    system, path, tests = build_data(case, task, sizes["n_traj"], sizes["n_test"], seed, cfg.out / "data")
    truth = true_damping(system)
    rows: list[dict[str, Any]] = []
    for label, (split, interpolation) in tests.items():  # the floor: the true trajectories' own balance
        balance = energy_balance(system, split.state, split.t, inputs=split.inputs,
                                 interpolation=interpolation or "linear")
        rows.append({"task": task, "seed": seed, "test_inputs": label, "model": "true system",
                     **{f"rmse_t{t:g}": 0.0 for t in sizes["error_times"]},
                     "balance_residual": float(torch.tensor(balance.residual_per_trajectory).median()),
                     "damping": truth, "damping_true": truth, "train_seconds": 0.0})
    force = None
    lr, steps = sizes["lr"], sizes["steps"]
    for name in sizes["models"]:
        def factory(name: str = name) -> AbstractModel:
            return build_model(name, system, sizes["hidden"])

        needs_plain = system.n_inputs and name == "dhnn"  # the chain's trajectories without their inputs
        module, seconds = fit(
            factory, _states_only(path) if needs_plain else path, cfg, name=f"{task}-{name}-seed{seed}",
            steps=steps, batch_size=None, seed=seed, group="open-systems", loss=sizes["loss"], integrator="rk4",
            mode="pairs" if sizes["loss"] == "derivative" else "windows", window=sizes["window"],
            optimizer=lambda p: torch.optim.Adam(p, lr=lr),
            scheduler=lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, steps, lr / 100),
        )
        model = module.model.cpu()  # trained on cfg.accelerator; measured on the CPU, where the test data are
        for label, (split, interpolation) in tests.items():
            measured = evaluate(model, system, split, interpolation, sizes)
            rows.append({"task": task, "seed": seed, "test_inputs": label, "model": name, **measured,
                         "damping_true": truth, "train_seconds": round(seconds, 1)})
            print(f"  {task} seed {seed} {name} [{label}]: "
                  + ", ".join(f"{k} {v:.3g}" for k, v in measured.items()), flush=True)
        if name == "phnn" and system.n_inputs == 0:
            force = learned_force(model, system, next(iter(tests.values()))[0])
    return {"rows": rows, "force": force}


def run(cfg: ReproduceConfig) -> dict[str, Any]:
    """Run ``cfg``'s tasks for every seed; write ``open_systems.md``, ``.csv``, ``.json`` and the plot."""
    tasks = cfg.select(TASKS)
    sizes = settings(cfg)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # every model is float64; the module (and so its batches) follows
    started, cpu_started = time.perf_counter(), time.process_time()
    raw: dict[str, Any] = {"settings": sizes, "seeds": list(cfg.seeds), "rows": [], "forces": {}}
    try:
        for task in tasks:
            for seed in cfg.seeds:
                print(f"open-systems {task} seed {seed} ({tasks.index(task) + 1}/{len(tasks)} tasks)", flush=True)
                result = run_task(cfg, task, seed, sizes)
                raw["rows"] += result["rows"]
                if result["force"] is not None:
                    raw["forces"].setdefault(task, {})[str(seed)] = result["force"]
    finally:
        torch.set_default_dtype(default_dtype)
    raw["seconds"] = time.perf_counter() - started
    raw["cpu_seconds"] = time.process_time() - cpu_started
    return write_page(cfg, raw)
