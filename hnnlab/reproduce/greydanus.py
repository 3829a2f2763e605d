"""Greydanus, Dzamba, Yosinski 2019, "Hamiltonian Neural Networks": the table of test losses and energy MSEs.

``hnnlab reproduce greydanus`` regenerates the four datasets (mass-spring, pendulum, 2-body, 3-body) with the
published recipes (``published_quirks=True``: the published ground-truth tolerances), trains the published
baseline (an MLP predicting ``dx/dt``) and HNN (an MLP ``H(q, p)``) with the published optimiser and number of
steps, and evaluates them twice:

- **published protocol**, quirks included: 15 random initial states, the model's field (float32, as
  published) integrated with RK45 at ``rtol = 1e-12`` and scipy's default ``atol = 1e-6`` over 100 points; the
  time span grows by 1.09 in place on every call, so trajectory ``k`` runs to ``t_end * 1.09**k``; the
  pendulum's "energy" is ``q^2 + p^2``;
- **corrected protocol**: the same 15 states over the stated span ``[0, t_end]``, the true energy ``H``, the
  model in float64 integrated with dopri8 at ``rtol = atol = 1e-12``.

The test loss is the MSE of ``dx/dt`` on the test split (noisy inputs, exact targets), with the standard
error over test points, as published. Energy MSE = mean over the 100 points of ``(E(x_pred) - E(x_true))^2``
per trajectory, with the standard error over the 15 trajectories; with several seeds, over seeds.

hnnlab's additions on the same data ("beat them"): a separable HNN ``H = T(p) + V(q)`` trained by derivative
matching and one trained through leapfrog rollouts (symplectic integration inside training), all evaluated
over a 10x longer horizon in float64 with a symplectic integrator (implicit midpoint for the general HNN,
leapfrog for the separable ones) against the published evaluation (RK45, float32 field): maximum relative
energy error, drift verdict and valid prediction time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hnnlab.audit import audit_trajectories
from hnnlab.data.io import load_dataset
from hnnlab.errors import ConvergenceError, InvalidArgumentError, NonFiniteStateError
from hnnlab.integrators import get_integrator
from hnnlab.models import HNN, NeuralODE, SeparableHNN
from hnnlab.reproduce.common import Estimate, ReproduceConfig, build_dataset, cached, fit, merged_settings
from hnnlab.reproduce.greydanus_report import write_page
from hnnlab.rollout import rollout

TASKS = ("spring", "pendulum", "2body", "3body")


@dataclass(frozen=True)
class Task:
    """One row group of the table: the recipe, the published training set-up and the evaluation spans.

    Attributes:
        recipe: the dataset recipe; ``dof`` its degrees of freedom.
        steps, batch_size, weight_decay: the published training (``batch_size=None``: full batch).
        energy_t_end: the energy protocol's span ``[0, energy_t_end]`` (100 points, 15 states).
        span_growth: the published in-place growth of the span per trajectory (1.0: none).
        quirk_energy: the published evaluation's energy: ``"H"`` or ``"q2p2"`` (``q^2 + p^2``).
        long_t_end, long_dt: the horizon and step of hnnlab's long rollouts.
        window, substeps: the rollout-trained separable HNN's windows and leapfrog substeps per data step.
    """

    recipe: str
    dof: int
    steps: int
    batch_size: int | None
    weight_decay: float
    energy_t_end: float
    span_growth: float
    quirk_energy: str
    long_t_end: float
    long_dt: float
    window: int = 4
    substeps: int = 1


TASK_SPECS: dict[str, Task] = {
    "spring": Task("greydanus-spring", 1, 2000, None, 1e-4, 20.0, 1.09, "H", 200.0, 0.05),
    "pendulum": Task("greydanus-pendulum", 1, 2000, None, 1e-4, 20.0, 1.09, "q2p2", 200.0, 0.05),
    "2body": Task("greydanus-2body", 4, 10_000, 200, 0.0, 20.0, 1.0, "H", 100.0, 0.01, window=2, substeps=8),
    "3body": Task("greydanus-3body", 6, 10_000, 600, 1e-4, 5.0, 1.0, "H", 10.0, 0.005, window=2, substeps=8),
}

# Sizes by budget; ``cfg.extra`` overrides any key. steps_scale multiplies every task's published steps.
BUDGETS: dict[str, dict[str, Any]] = {
    "cpu": {"steps_scale": 1.0, "3body_n_traj": 1000, "n_energy": 15, "n_long": 8, "models": "all",
            "rollout_steps_scale": 0.5, "rollout_train_steps_scale": {"2body": 0.2, "3body": 0.2}},
    "published": {"steps_scale": 1.0, "3body_n_traj": 5000, "n_energy": 15, "n_long": 16, "models": "all",
                  "rollout_steps_scale": 1.0},
}

# name -> (builder(dof), loss, description)
MODELS: dict[str, tuple[Callable[[int], torch.nn.Module], str, str]] = {
    "baseline": (lambda dof: NeuralODE(dof, hidden=(200, 200), activation="tanh", orthogonal_init=True),
                 "derivative", "published baseline: MLP predicting dx/dt"),
    "HNN": (lambda dof: HNN(dof, hidden=(200, 200), activation="tanh", orthogonal_init=True),
            "derivative", "published HNN: MLP H(q, p), derivative matching"),
    "SepHNN": (lambda dof: SeparableHNN(dof, hidden=(200, 200), activation="tanh", orthogonal_init=True),
               "derivative", "hnnlab: separable H = T(p) + V(q), derivative matching"),
    "SepHNN-leapfrog": (lambda dof: SeparableHNN(dof, hidden=(200, 200), activation="tanh", orthogonal_init=True),
                        "rollout", "hnnlab: separable H trained through leapfrog rollouts"),
}


def _budget(cfg: ReproduceConfig) -> dict[str, Any]:
    budget = merged_settings("greydanus", BUDGETS, cfg)
    models = budget["models"]
    if models != "all" and (not isinstance(models, list | tuple) or not models
                            or any(m not in MODELS for m in models)):
        raise InvalidArgumentError(f"greydanus: models must be 'all' or a list of {', '.join(MODELS)}; "
                                   f"got {models!r}")
    return budget


def _rollout_train_scale(budget: dict[str, Any], task_name: str) -> float:
    """Fraction of the task's steps for the rollout-trained model (each of its steps integrates windows)."""
    return float(budget.get("rollout_train_steps_scale", {}).get(task_name, 1.0))


def sum_of_squares(x: Tensor) -> Tensor:
    """The published pendulum evaluation's "energy": ``q^2 + p^2`` (not the pendulum's H)."""
    return (x**2).sum(dim=-1)


def protocol_spans(t_end: float, n: int, growth: float) -> Tensor:
    """Span of each of ``n`` trajectories: ``t_end * growth**k`` (``growth = 1``: all ``t_end``)."""
    return t_end * growth ** torch.arange(n, dtype=torch.float64)


def integrate_spans(field: Callable[[Tensor | float, Tensor], Tensor], x0: Tensor, spans: Tensor, n_points: int,
                    integrator: Any) -> Tensor:
    """States ``(n, n_points, 2 * dof)`` of ``dx/dt = field(x)`` at ``n_points`` even times in ``[0, spans[k]]``
    for each start ``x0[k]``, in one batched adaptive solve.

    Autonomous fields only: with ``s = t / h_k`` and ``h_k = spans[k] / (n_points - 1)`` every trajectory is
    saved at the integer times ``s = 0, 1, ..., n_points - 1`` of ``dx/ds = h_k field(x)``.
    The step ``h_k`` rides along in the state, as a pair ``(h_k, 0)`` with zero derivative, so that the field is
    a function of each row alone (the loop steps rows on their own)."""
    h = (spans / (n_points - 1)).to(x0)[:, None]  # (n, 1)
    width = x0.shape[-1]

    def rescaled(s: Tensor | float, y: Tensor) -> Tensor:  # y = (x, h, 0): (n, width + 2)
        return torch.cat([y[..., width : width + 1] * field(s, y[..., :width]), torch.zeros_like(y[..., width:])], -1)

    y0 = torch.cat([x0, h, torch.zeros_like(h)], dim=-1)  # (n, width + 2)
    return rollout(rescaled, integrator, y0, 1.0, n_points - 1)[..., :width]


def float32_field(model: torch.nn.Module) -> Callable[[Tensor | float, Tensor], Tensor]:
    """The published evaluation: a float32 network called on the float64 solver state (as scipy does)."""
    m32 = model.float()

    def field(t: Tensor | float, x: Tensor) -> Tensor:
        return m32(t, x.float()).to(x.dtype)

    return field


def energy_mse(
    model: torch.nn.Module,
    system: Any,
    x0: Tensor,
    *,
    t_end: float,
    n_points: int = 100,
    protocol: str,
    task: Task,
) -> dict[str, Any]:
    """The energy-MSE protocol ``"published"`` or ``"corrected"`` (module docstring) from starts ``x0``.

    Returns the per-trajectory energy MSEs ``(n,)`` and their estimate; a prediction that leaves the
    finite numbers gives ``inf`` for its trajectory."""
    n = x0.shape[0]
    published = protocol == "published"
    spans = protocol_spans(t_end, n, task.span_growth if published else 1.0)
    with torch.no_grad():
        truth = integrate_spans(system, x0, spans, n_points, get_integrator("dopri8", rtol=1e-12, atol=1e-12))
    if published:
        field = float32_field(model)
        integ = get_integrator("dopri5", rtol=1e-12, atol=1e-6)
    else:
        field = model.double()
        integ = get_integrator("dopri8", rtol=1e-12, atol=1e-12)
    energy = sum_of_squares if (published and task.quirk_energy == "q2p2") else system.energy
    try:
        with torch.no_grad():  # HNNs differentiate H inside; no graph to the parameters is kept
            pred = integrate_spans(field, x0, spans, n_points, integ)
        per_traj = ((energy(pred) - energy(truth)) ** 2).mean(dim=1).detach()  # (n,)
    except (NonFiniteStateError, ConvergenceError):
        per_traj = torch.full((n,), math.inf, dtype=torch.float64)
    model.double()
    return {"per_traj": per_traj, "estimate": Estimate.of(per_traj), "spans": spans}


def test_loss(model: torch.nn.Module, x: Tensor, dxdt: Tensor) -> dict[str, Any]:
    """Published test loss: the MSE of ``dx/dt`` over test points; stderr over points."""
    model = model.double()
    flat_x, flat_d = x.reshape(-1, x.shape[-1]), dxdt.reshape(-1, dxdt.shape[-1])
    with torch.enable_grad():
        pred = model(0.0, flat_x).detach()
    per_point = ((pred - flat_d) ** 2).mean(dim=-1)  # (n_points,)
    return {"per_point": per_point, "estimate": Estimate.of(per_point)}


def long_rollout(model: torch.nn.Module, name: str, system: Any, x0: Tensor, task: Task, steps_scale: float
                 ) -> dict[str, Any]:
    """hnnlab's evaluation: ``long_t_end`` in float64 with a symplectic integrator for the HNNs (RK4 for
    the baseline), and the published RK45 on the float32 field for the published HNN, against the truth."""
    n_steps = max(int(round(task.long_t_end * steps_scale / task.long_dt)), 10)
    save_every = max(n_steps // 200, 1)
    n_steps = (n_steps // save_every) * save_every
    t = torch.arange(n_steps // save_every + 1, dtype=torch.float64) * task.long_dt * save_every
    with torch.no_grad():
        ref = rollout(system, "yoshida4", x0, task.long_dt / 4, n_steps * 4, save_every=save_every * 4)
    runs = []
    if name == "baseline":
        runs.append(("rk4 (float64)", lambda: rollout(model.double(), "rk4", x0, task.long_dt, n_steps, save_every)))
    elif name == "HNN":
        runs.append(("RK45 float32 field (published)", lambda: rollout(
            float32_field(model), get_integrator("dopri5", rtol=1e-12, atol=1e-6), x0, task.long_dt * save_every,
            n_steps // save_every)))
        runs.append(("implicit midpoint (float64)", lambda: rollout(
            model.double(), get_integrator("implicit_midpoint", tol=1e-12), x0, task.long_dt, n_steps, save_every)))
    else:
        runs.append(("leapfrog (float64)", lambda: rollout(model.double(), "leapfrog", x0, task.long_dt, n_steps,
                                                           save_every)))
    out = []
    for label, run in runs:
        started = time.perf_counter()
        try:
            with torch.no_grad():  # no graph to the parameters along the rollout
                pred = run()
            model.double()
            report = audit_trajectories(pred, t, system=system, reference=ref, check_structure=False)
            e, acc = report.energy, report.accuracy
            out.append({"integrator": label, "max_energy_error": e.max_error, "drift": e.drift,
                        "verdict": e.verdict, "vpt": acc.vpt_mean, "horizon": float(t[-1]),
                        "seconds": time.perf_counter() - started})
        except (NonFiniteStateError, ConvergenceError) as exc:
            model.double()
            out.append({"integrator": label, "max_energy_error": math.inf, "drift": math.nan,
                        "verdict": f"failed: {type(exc).__name__}", "vpt": math.nan, "horizon": float(t[-1]),
                        "seconds": time.perf_counter() - started})
    return {"runs": out}


def run_task(task_name: str, cfg: ReproduceConfig, seed: int) -> dict[str, Any]:
    """Train every model of one task with one seed and evaluate it; returns the raw numbers.

    The numbers are also saved under ``cfg.out / "results"`` with the settings that produced them, and
    reused when a later run asks for the same task, seed and settings (so a long reproduction can be run
    task by task, in separate processes, and the tables written at the end)."""
    budget = _budget(cfg)
    settings = {k: v for k, v in budget.items() if k != "rollout_train_steps_scale"}
    if _rollout_train_scale(budget, task_name) != 1.0:
        settings["rollout_train_steps_scale"] = _rollout_train_scale(budget, task_name)
    key = {"task": task_name, "seed": seed, "budget": cfg.budget, **settings}
    return cached(cfg.out / "results" / f"{task_name}-seed{seed}.pt", key,
                  lambda: _run_task(task_name, cfg, seed, budget), label=f"{task_name} seed {seed}")


def _run_task(task_name: str, cfg: ReproduceConfig, seed: int, budget: dict[str, Any]) -> dict[str, Any]:
    task = TASK_SPECS[task_name]
    overrides: dict[str, Any] = {"published_quirks": True}
    if task_name == "3body":
        overrides["n_traj"] = int(budget["3body_n_traj"])
    path = build_dataset(cfg.out / "data" / f"{task.recipe}-seed{seed}.h5", task.recipe, seed=seed,
                         overrides=overrides)
    data = load_dataset(path)
    system, test = data.system, data.splits["test"]
    steps = max(int(round(task.steps * float(budget["steps_scale"]))), 1)
    gen = torch.Generator().manual_seed(10_000 + seed)
    x0_energy = system.sample_initial_states(int(budget["n_energy"]), gen)
    x0_long = test.clean[: int(budget["n_long"]), 0].double()
    models = list(MODELS) if budget["models"] == "all" else list(budget["models"])
    results: dict[str, Any] = {}
    for name in models:
        builder, loss, _ = MODELS[name]
        kwargs: dict[str, Any] = {}
        model_steps = steps
        if loss == "rollout":
            kwargs = {"mode": "windows", "window": task.window, "integrator": "leapfrog", "substeps": task.substeps}
            model_steps = max(int(round(steps * _rollout_train_scale(budget, task_name))), 1)
        module, seconds = fit(
            lambda builder=builder: builder(task.dof), path, cfg, name=f"greydanus-{task_name}-{name}-seed{seed}",
            steps=model_steps, batch_size=task.batch_size, seed=seed, loss=loss,
            optimizer=lambda p, wd=task.weight_decay: torch.optim.Adam(p, lr=1e-3, weight_decay=wd),
            group=f"greydanus-{task_name}", **kwargs,
        )
        model = module.model.eval()
        entry: dict[str, Any] = {"train_seconds": seconds, "steps": model_steps}
        entry["test_loss"] = test_loss(model, test.state, test.dxdt)
        for protocol in ("published", "corrected"):
            entry[f"energy_{protocol}"] = energy_mse(model, system, x0_energy, t_end=task.energy_t_end,
                                                     protocol=protocol, task=task)
        entry["long"] = long_rollout(model, name, system, x0_long, task, float(budget["rollout_steps_scale"]))
        results[name] = entry
        print(f"  {task_name} {name}: test loss {entry['test_loss']['estimate']:.3e}, energy MSE published "
              f"{entry['energy_published']['estimate']:.3e}, corrected {entry['energy_corrected']['estimate']:.3e}"
              f" ({seconds:.0f} s training)", flush=True)
    return results


def run(cfg: ReproduceConfig) -> dict[str, Any]:
    """Run the selected tasks for every seed and write ``greydanus.md``, ``.csv``, ``.json`` and the plot."""
    started = time.perf_counter()
    tasks = cfg.select(TASKS)
    raw: dict[str, dict[int, Any]] = {}
    for task_name in tasks:
        print(f"[greydanus] {task_name}", flush=True)
        raw[task_name] = {seed: run_task(task_name, cfg, seed) for seed in cfg.seeds}
    return write_page(raw, cfg, _budget(cfg), time.perf_counter() - started)
