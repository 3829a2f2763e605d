"""The chaos benchmark (``hnnlab reproduce chaos``): prediction time in Lyapunov times on chaotic systems.

Tasks: Henon-Heiles near ``E = 1/8`` and ``E = 1/6`` (energies drawn in a narrow band), the double pendulum at
high energy (angles uniform on the circle) and the planar three-body problem. Every model that applies is
trained on derivatives of short trajectories (the separable HNN through leapfrog rollouts), the echo state
network is fitted on the same trajectories at the dataset's own step, and each is rolled out from at least 100
test states over many Lyapunov times. Reported per model: the valid prediction time (normalised error above
``vpt_threshold``) in Lyapunov times of the true system, median with a 95 % bootstrap interval over the test
states; the true energy's error over the horizon; the model's own largest exponent ``l1`` against the true one;
and the perturbed-initial-state floor (the true system from ``x0 + eps N(0, I)``).

The Lyapunov time of a task is ``1 / l1`` with ``l1`` the median finite-time largest exponent of the true system
over the test states that are chaotic (``l1 T > 10`` e-foldings over the averaging time ``T``); the fraction of
chaotic states is reported beside it (Henon-Heiles at ``E = 1/8`` has a mixed phase space).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from hnnlab.audit.lyapunov import CHAOS_E_FOLDINGS, lyapunov_spectrum, perturbed_floor, spectrum_integrator
from hnnlab.audit.metrics import valid_prediction_time
from hnnlab.data.recipes import Recipe, TestSet
from hnnlab.errors import HnnlabError, InvalidArgumentError
from hnnlab.integrators import get_integrator
from hnnlab.reproduce.common import ReproduceConfig, build_dataset, cached, fit, merged_settings
from hnnlab.rollout import solve


@dataclass(frozen=True)
class ChaosTask:
    """A benchmark system: its canonical and Lagrangian registered systems (the same when the masses are one)."""

    label: str
    canonical: str
    lagrangian: str
    params: dict[str, Any]
    dof: int
    dt: float
    train_t_end: float
    test_t_end: float
    spectrum_substeps: int  # the true l1 is computed at dt / spectrum_substeps
    separable: bool  # the true Hamiltonian is T(p) + V(q): the separable HNN applies
    spectrum_steps_factor: int = 1  # the true l1 averages over lyapunov_steps * this steps of dt / substeps


TASK_SPECS: dict[str, ChaosTask] = {
    "henon-heiles-E1/8": ChaosTask("henon-heiles-E1/8", "henon_heiles", "henon_heiles",
                                   {"energy_range": (0.12, 0.13)}, 2, 0.1, 10.0, 200.0, 1, True),
    "henon-heiles-E1/6": ChaosTask("henon-heiles-E1/6", "henon_heiles", "henon_heiles",
                                   {"energy_range": (0.16, 0.1665)}, 2, 0.1, 10.0, 200.0, 1, True),
    "double-pendulum": ChaosTask("double-pendulum", "double_pendulum_hamiltonian", "double_pendulum",
                                 {"angle_range": (0.0, 2 * math.pi), "velocity_range": (-1.0, 1.0)}, 2, 0.02, 2.0,
                                 20.0, 2, False),
    # The 3-body's finite-time l1 needs T ~ 100 (10x the other tasks' steps): over 30 test states its median was
    # 0.316 at T = 10 (3 % of the states past l1 T > 10), 0.249 at T = 40 (50 %), 0.209 at T = 100 (100 %).
    "three-body": ChaosTask("three-body", "three_body", "three_body", {}, 6, 0.02, 2.0, 10.0, 4, True,
                            spectrum_steps_factor=10),
}
TASKS: tuple[str, ...] = tuple(TASK_SPECS)

_CPU: dict[str, Any] = {
    "n_traj": 200,  # training trajectories
    "n_eval": 100,  # test initial states (>= 100 for the intervals)
    "steps": 1500,
    "batch_size": 256,
    "hidden": (128, 128),
    "lr": 1e-3,
    "window": 5,  # leapfrog rollout window of the separable HNN
    "models": ("HNN", "SeparableHNN", "LNN", "StructuredLNN", "NODE", "SecondOrderNODE", "ESN"),
    "esn_units": 400,
    "esn_washout": 20,
    "warmup": 20,  # teacher-forced states before every forecast (the physics models start at the last one)
    "lyapunov_steps": 2000,  # true l1: steps of dt / spectrum_substeps
    "model_lyapunov_states": 16,
    "model_lyapunov_steps": 500,
    "perturbation": 1e-4,
    "vpt_threshold": 0.01,
    "bootstrap": 2000,
}
BUDGETS: dict[str, dict[str, Any]] = {
    "cpu": _CPU,
    "published": {**_CPU, "n_traj": 1000, "steps": 10000, "hidden": (256, 256, 256), "esn_units": 1000,
                  "lyapunov_steps": 10000, "model_lyapunov_states": 100, "model_lyapunov_steps": 2000},
}
SMOKE: dict[str, Any] = {  # ``cfg.extra`` of the fast test
    "n_traj": 8, "n_eval": 100, "steps": 4, "batch_size": 64, "hidden": (8,), "esn_units": 20, "esn_washout": 5,
    "warmup": 5, "lyapunov_steps": 50, "model_lyapunov_states": 2, "model_lyapunov_steps": 5, "bootstrap": 50,
}


# -- models ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """How a model is built, on which coordinates it trains, and with which integrator it is trained and rolled out."""

    label: str
    build: Callable[[int, tuple[int, ...]], nn.Module] | None  # None: the ESN
    coordinates: str  # "canonical" (q, p) or "lagrangian" (q, q_dot)
    integrator: str
    loss: str = "derivative"
    needs_separable: bool = False


def _hnn(dof: int, hidden: tuple[int, ...]) -> nn.Module:
    from hnnlab.models import HNN

    return HNN(dof, hidden=hidden, activation="tanh")


def _separable(dof: int, hidden: tuple[int, ...]) -> nn.Module:
    from hnnlab.models import SeparableHNN

    return SeparableHNN(dof, hidden=hidden, activation="tanh")


def _lnn(dof: int, hidden: tuple[int, ...]) -> nn.Module:
    from hnnlab.models import LNN

    return LNN(dof, hidden=hidden, activation="softplus")


def _structured(dof: int, hidden: tuple[int, ...]) -> nn.Module:
    """tanh, not the LNN's softplus: with M(q) positive definite by construction the activation needs no convexity,
    and on Henon-Heiles E ~ 1/8 (1,500 steps, seed 0) tanh fits the accelerations 39x better (test MSE 6.3e-5
    against 2.5e-3; softplus at 6,000 steps: 1.3e-3, at lr 3e-3: 1.9e-3; the HNN: 4.3e-5). The general LNN keeps
    softplus: with tanh its Hessian in q_dot is indefinite, and its test MSE was 0.55 against softplus's 1.0e-2."""
    from hnnlab.models import StructuredLNN

    return StructuredLNN(dof, hidden=hidden, activation="tanh")


def _node(dof: int, hidden: tuple[int, ...]) -> nn.Module:
    from hnnlab.models import NeuralODE

    return NeuralODE(dof, hidden=hidden, activation="tanh", coordinates="lagrangian")


def _second_order(dof: int, hidden: tuple[int, ...]) -> nn.Module:
    from hnnlab.models import SecondOrderNeuralODE

    return SecondOrderNeuralODE(dof, hidden=hidden, activation="tanh")


MODELS: dict[str, ModelSpec] = {
    "HNN": ModelSpec("HNN", _hnn, "canonical", "rk4"),
    "SeparableHNN": ModelSpec("SeparableHNN", _separable, "canonical", "leapfrog", "rollout", True),
    "LNN": ModelSpec("LNN", _lnn, "lagrangian", "rk4"),
    "StructuredLNN": ModelSpec("StructuredLNN", _structured, "lagrangian", "rk4"),
    "NODE": ModelSpec("NODE", _node, "lagrangian", "rk4"),
    "SecondOrderNODE": ModelSpec("SecondOrderNODE", _second_order, "lagrangian", "rk4"),
    "ESN": ModelSpec("ESN", None, "lagrangian", "none"),
}


def settings(cfg: ReproduceConfig) -> dict[str, Any]:
    """The budget's sizes with ``cfg.extra`` applied; unknown keys, unknown models and bad sizes are refused."""
    merged = merged_settings("chaos", BUDGETS, cfg)
    merged["models"], merged["hidden"] = tuple(merged["models"]), tuple(merged["hidden"])
    bad = [m for m in merged["models"] if m not in MODELS]
    if bad:
        raise InvalidArgumentError(f"chaos: unknown model {bad[0]!r}; available: {', '.join(MODELS)}")
    for key in ("n_traj", "steps", "batch_size", "window", "esn_units", "warmup", "lyapunov_steps",
                "model_lyapunov_states", "model_lyapunov_steps", "bootstrap"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"chaos: {key} must be an integer >= 1, got {value!r}")
    if isinstance(merged["n_eval"], bool) or not isinstance(merged["n_eval"], int) or merged["n_eval"] < 100:
        raise InvalidArgumentError(f"chaos: n_eval must be an integer >= 100 (the 95 % intervals are over the test "
                                   f"states), got {merged['n_eval']!r}")
    return merged


# -- data -----------------------------------------------------------------------------------------------------


def recipe(task: ChaosTask, system: str, sizes: dict[str, Any]) -> Recipe:
    """The task's dataset recipe (not registered): training trajectories of ``train_t_end`` and a separate test
    split of ``n_eval`` long trajectories (``warmup`` states, then the horizon ``test_t_end``)."""
    n_train = round(task.train_t_end / task.dt) + 1
    n_test = sizes["warmup"] + round(task.test_t_end / task.dt)
    return Recipe(
        name=f"chaos-{task.label}", source="hnnlab chaos benchmark (issue 14)", system=system,
        system_params=task.params, n_traj=sizes["n_traj"], t_end=task.dt * (n_train - 1), n_times=n_train,
        splits=(1.0, 0.0, 0.0), integrator="dopri8", integrator_options={"rtol": 1e-12, "atol": 1e-12},
        test_set=TestSet(n_traj=sizes["n_eval"], t_end=task.dt * (n_test - 1), n_times=n_test),
    )


# -- the run --------------------------------------------------------------------------------------------------


def _energy_error(system: Any, states: Tensor, e0: Tensor) -> Tensor:
    """Mean over the horizon of ``|E(x(t)) - E(x(0))|`` per trajectory (``inf`` where the state turned non-finite)."""
    with torch.no_grad():
        e = system.energy(states.to(torch.float64))
    err = (e - e0[:, None]).abs()
    return torch.where(torch.isfinite(err).all(dim=1), err.mean(dim=1), torch.inf)


def _forecast(spec: ModelSpec, model: Any, x_start: Tensor, warm: Tensor, n_steps: int, dt: float,
              to_lagrangian: Callable[[Tensor], Tensor] | None) -> Tensor:
    if spec.build is None:
        return model.forecast(warm, n_steps)
    model64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        ys = solve(model64, get_integrator(spec.integrator), x_start, dt, n_steps).ys
    return to_lagrangian(ys) if to_lagrangian is not None else ys


def _model_result(cfg: ReproduceConfig, task: ChaosTask, spec: ModelSpec, label: str, seed: int,
                  sizes: dict[str, Any], *, lag: Any, lag_path: Any, can_path: Any, test_lag: Tensor,
                  test_can: Tensor, truth: Tensor, t: Tensor, system: Any, e0: Tensor, l1: float,
                  to_lag: Callable[[Tensor], Tensor] | None, same: bool) -> dict[str, Any]:
    """Train (or fit) one model on a task and evaluate its forecasts: prediction time, energy error, own l1."""
    from hnnlab.models.esn import EchoStateNetwork

    safe = task.label.replace("/", "_")
    w = sizes["warmup"]
    n_steps = truth.shape[1] - 1
    name = f"chaos-{safe}-{label}-seed{seed}"
    started = time.perf_counter()
    try:
        if spec.build is None:
            esn = EchoStateNetwork(2 * task.dof, sizes["esn_units"], seed=seed)
            esn.fit(lag.splits["train"].state.to(torch.float64), washout=sizes["esn_washout"])
            model: Any = esn
            train_s = time.perf_counter() - started
        else:
            path = can_path if spec.coordinates == "canonical" else lag_path
            options: dict[str, Any] = ({"mode": "windows", "window": sizes["window"], "metric": "mse"}
                                       if spec.loss == "rollout" else {})
            module, train_s = fit(
                lambda spec=spec: spec.build(task.dof, sizes["hidden"]), path, cfg, name=name,
                steps=sizes["steps"], batch_size=sizes["batch_size"], seed=seed, loss=spec.loss,
                integrator=spec.integrator if spec.integrator != "none" else "leapfrog",
                optimizer=lambda p: torch.optim.Adam(p, lr=sizes["lr"]), group="chaos", **options)
            model = module.model.eval()
    except HnnlabError as exc:
        print(f"  {name} failed: {exc}", flush=True)
        return {"failed": str(exc)}
    try:
        canonical = spec.coordinates == "canonical" and not same
        start = (test_can if canonical else test_lag)[:, w - 1]
        started = time.perf_counter()
        pred = _forecast(spec, model, start, test_lag[:, :w], n_steps, task.dt, to_lag if canonical else None)
        vpt, cens = valid_prediction_time(pred, truth, t, threshold=sizes["vpt_threshold"])
        energy = _energy_error(system, pred, e0)
        model_l1 = None
        if spec.build is not None:
            k = sizes["model_lyapunov_states"]
            m64 = copy.deepcopy(model).double().eval()
            l1_model = lyapunov_spectrum(m64, start[:k], dt=task.dt, n_steps=sizes["model_lyapunov_steps"],
                                         integrator=spec.integrator, n_exponents=1, renorm_every=10,
                                         progress=False)[:, 0]
            model_l1 = l1_model.to(torch.float64)
    except HnnlabError as exc:  # e.g. a learned Lagrangian whose mass matrix turns singular on a test state
        print(f"  {name} evaluation failed: {exc}", flush=True)
        return {"failed": f"evaluation: {exc}"}
    eval_s = time.perf_counter() - started
    print(f"  {name}: median VPT {float(vpt.median()):.3g} (x l1 = {float(vpt.median()) * l1:.3g} Lyapunov "
          f"times), train {train_s:.0f} s, eval {eval_s:.0f} s", flush=True)
    return {"vpt": vpt, "censored": float(cens.double().mean()), "energy": energy, "l1_model": model_l1,
            "train_s": train_s, "eval_s": eval_s,
            "nonfinite": float((~torch.isfinite(pred).all(dim=(1, 2))).double().mean())}


def chaotic_states(l1_true: Tensor, averaging_time: float) -> Tensor:
    """Which states are chaotic: their finite-time ``l1`` over the averaging time gives more than
    :data:`~hnnlab.audit.lyapunov.CHAOS_E_FOLDINGS` e-foldings (a task's Lyapunov time is taken over these)."""
    l1 = torch.as_tensor(l1_true, dtype=torch.float64)
    return torch.isfinite(l1) & (l1 * averaging_time > CHAOS_E_FOLDINGS)


def _truth(task: ChaosTask, sizes: dict[str, Any], can_system: Any, system: Any, start: Tensor, truth: Tensor,
           t: Tensor, e0: Tensor, seed: int) -> dict[str, Any]:
    """The true system on the test states: its finite-time ``l1`` (its own symplectic discrete flow at
    ``dt / substeps``, from the canonical ``start``), the task's Lyapunov time, and the perturbed floor."""
    started = time.perf_counter()
    sdt = task.dt / task.spectrum_substeps
    n_steps = sizes["lyapunov_steps"] * task.spectrum_steps_factor
    l1_true = lyapunov_spectrum(can_system, start, dt=sdt, n_steps=n_steps, integrator=spectrum_integrator(can_system),
                                n_exponents=1, renorm_every=10, progress=False)[:, 0].to(torch.float64)
    averaging = n_steps * sdt
    chaotic = chaotic_states(l1_true, averaging)
    l1 = float(l1_true[chaotic].median()) if bool(chaotic.any()) else math.nan
    print(f"  {task.label}: true l1 {l1:.4g} ({float(chaotic.double().mean()):.0%} chaotic, averaged over "
          f"T = {averaging:g}), {time.perf_counter() - started:.0f} s", flush=True)
    floor_states = perturbed_floor(system, truth, task.dt, sizes["perturbation"],
                                   torch.Generator().manual_seed(1000 + seed))
    floor_vpt, floor_cens = valid_prediction_time(floor_states, truth, t, threshold=sizes["vpt_threshold"])
    return {
        "l1_true": l1_true, "l1": l1, "chaotic_fraction": float(chaotic.double().mean()), "averaging_time": averaging,
        "horizon": float(t[-1]), "dt": task.dt, "n_eval": int(truth.shape[0]),
        "energy_scale": float(e0.abs().mean()),
        "floor": {"vpt": floor_vpt, "censored": float(floor_cens.double().mean()),
                  "energy": _energy_error(system, floor_states, e0)},
    }


def _task(cfg: ReproduceConfig, task: ChaosTask, seed: int, sizes: dict[str, Any]) -> dict[str, Any]:
    from hnnlab.data.io import load_dataset, rebuild_system

    same = task.canonical == task.lagrangian
    safe = task.label.replace("/", "_")
    lag_path = build_dataset(cfg.out / f"{safe}_lagrangian_seed{seed}.h5", recipe(task, task.lagrangian, sizes),
                             seed=seed)
    can_path = lag_path if same else build_dataset(cfg.out / f"{safe}_canonical_seed{seed}.h5",
                                                   recipe(task, task.canonical, sizes), seed=seed)
    lag, can = load_dataset(lag_path), load_dataset(can_path)
    system = rebuild_system(lag.metadata)  # (q, q_dot) system: its energy measures every forecast
    can_system = rebuild_system(can.metadata)
    to_lag = None if same else system.from_canonical
    w = sizes["warmup"]
    test_lag = lag.splits["test"].state.to(torch.float64)
    test_can = can.splits["test"].state.to(torch.float64)
    truth = test_lag[:, w - 1:]  # the horizon, from the last warm-up state
    n_steps = truth.shape[1] - 1
    t = torch.arange(n_steps + 1, dtype=torch.float64) * task.dt
    e0 = system.energy(truth[:, 0])

    truth_key = {"task": task.label, "seed": seed, "budget": cfg.budget, "substeps": task.spectrum_substeps,
                 "factor": task.spectrum_steps_factor,
                 **{k: sizes[k] for k in ("n_traj", "n_eval", "warmup", "lyapunov_steps", "perturbation",
                                          "vpt_threshold")}}
    result: dict[str, Any] = cached(
        cfg.out / "results" / f"{safe}-seed{seed}-truth.pt", truth_key,
        lambda: _truth(task, sizes, can_system, system, test_can[:, w - 1], truth, t, e0, seed),
        label=f"{task.label} true system seed {seed}")
    result = {**result, "models": {}}
    l1 = result["l1"]
    for label in sizes["models"]:
        spec = MODELS[label]
        if spec.needs_separable and not task.separable:
            continue
        key = {"task": task.label, "seed": seed, "model": label, "budget": cfg.budget, **sizes}
        result["models"][label] = cached(
            cfg.out / "results" / f"{safe}-seed{seed}-{label}.pt", key,
            lambda spec=spec, label=label: _model_result(
                cfg, task, spec, label, seed, sizes, lag=lag, lag_path=lag_path, can_path=can_path,
                test_lag=test_lag, test_can=test_can, truth=truth, t=t, system=system, e0=e0, l1=l1,
                to_lag=to_lag, same=same), label=f"{task.label} {label} seed {seed}")
    return result


def run(cfg: ReproduceConfig) -> dict[str, Any]:
    """Run the benchmark for ``cfg``'s tasks and seeds; write ``chaos.md``, ``.csv``, ``.json`` and the plot."""
    from hnnlab.reproduce.chaos_report import write_page

    tasks = cfg.select(TASKS)
    sizes = settings(cfg)
    started, cpu_started = time.perf_counter(), time.process_time()
    raw: dict[str, Any] = {"settings": sizes, "seeds": list(cfg.seeds), "budget": cfg.budget, "tasks": {}}
    for label in tasks:
        print(f"chaos {label}", flush=True)
        raw["tasks"][label] = [_task(cfg, TASK_SPECS[label], seed, sizes) for seed in cfg.seeds]
    raw["cpu_seconds"] = time.process_time() - cpu_started
    return write_page(cfg, raw, time.perf_counter() - started)
