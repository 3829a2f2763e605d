"""Finzi, Wang, Wilson 2020: chain pendulum rollouts, geometric-mean relative error (``hnnlab reproduce finzi``).

Protocol (REFERENCE.md): a chain of ``n`` links with masses and lengths ``~ U(0.6, 1.4)`` drawn once,
angles and angular velocities ``~ N(0, 1)``, ``dt = 0.03``, ``T = 3`` (100 steps), 800 / 100 / 100
trajectories. Models are trained on chunks of 5 steps with the mean absolute error of RK4 rollouts
(AdamW, lr 3e-3, weight decay 1e-4, cosine schedule, 3 x 256 networks) and evaluated by rolling out
the 100 test initial states for 100 steps. The figure of merit is

    ``rel(t) = |x_pred(t) - x_true(t)| / (|x_pred(t)| + |x_true(t)|)`` (Euclidean norms over the state),
    ``GMRE_i = exp(mean_t log rel_i(t))`` over the 100 steps, and the geometric mean of ``GMRE_i``
    over the test trajectories,

on angle coordinates ``(q, q_dot)`` for every model: a Hamiltonian model's ``(q, p)`` prediction is
mapped with the true system's inverse Legendre transform ``q_dot = M(q)^-1 p``. The floor is the
GMRE of the true system started from ``x_0 + eps N(0, I)``.

The paper computes the GMRE in Cartesian coordinates (the bodies' positions and velocities ``(x, v)``); every
model's rollout is also mapped there (``gmre_cartesian``: an angle model's through the chain's forward kinematics).
The constrained models CHNN and CLNN are trained on the same chains and states in Cartesian coordinates
(``chnn-chain-pendulum-cartesian``: ``(x, p)`` for CHNN, ``(x, v)`` for CLNN) and mapped back to angles for the
``(q, q_dot)`` column.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hnnlab.audit.lyapunov import perturbed_floor as perturbed_floor  # the paper's floor, shared with the audit
from hnnlab.audit.metrics import geometric_mean_relative_error, relative_error_series, valid_prediction_time
from hnnlab.errors import FileFormatError, HnnlabError, InvalidArgumentError
from hnnlab.integrators import AbstractIntegrator, get_integrator
from hnnlab.reproduce.common import Estimate, ReproduceConfig, build_dataset, fit, merged_settings
from hnnlab.reproduce.finzi_report import write_page
from hnnlab.rollout import solve
from hnnlab.systems import SYSTEMS, AbstractSystem

TASKS: tuple[str, ...] = ("1-link", "2-link", "3-link", "5-link")
LINKS = {"1-link": 1, "2-link": 2, "3-link": 3, "5-link": 5}
RECIPE = "chnn-chain-pendulum"
HAMILTONIAN_SYSTEM = "chain_pendulum_hamiltonian"
CARTESIAN_RECIPE = "chnn-chain-pendulum-cartesian"
CARTESIAN_SYSTEM = "chain_pendulum_cartesian"
CARTESIAN_LAGRANGIAN_SYSTEM = "chain_pendulum_cartesian_lagrangian"

# All sizes of a run; ``cfg.extra`` overrides any of them (tests use tiny ones).
# "published": REFERENCE.md does not give the number of epochs; the authors' public training script
# defaults to 2000 epochs of one 5-step chunk per training trajectory (800) at batch 200, i.e. 8000
# optimizer steps, which is what the published budget uses (meant for a GPU).
_CPU: dict[str, Any] = {
    "n_traj": 1000,  # 800 train / 100 val / 100 test (recipe splits)
    "steps": 2000,  # per model (the LNN, ~10x slower per step, is in the published budget only)
    "batch_size": 200,
    "window": 5,
    "hidden": (256, 256, 256),
    "activation": "softplus",
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "models": ("NODE", "HNN", "SecondOrderNODE", "CHNN", "CLNN"),
    # Steps of the models named here instead of ``steps``: the constrained models learn a potential and a mass
    # matrix only and reach the published CHNN's error in far fewer steps (3 links, 600 steps: 1.8e-4 on (x, v)
    # against the published 3.4e-4), at about 0.22 s a step on one core (3 links) against the NODE's 0.05.
    "model_steps": {"CHNN": 600, "CLNN": 600},
    "n_eval": 100,  # test trajectories evaluated (all of the test split when larger)
    "perturbation": 1e-4,  # eps of the perturbed-initial-state floor (the authors' code uses 1e-4)
    "midpoint_tol": 1e-12,  # implicit-midpoint tolerance in float64 evaluation
    "vpt_threshold": 0.01,
}
BUDGETS: dict[str, dict[str, Any]] = {
    "cpu": _CPU,
    # HNN-midpoint (about 4.5 min a task at 2000 steps) and the LNN (about 1.1 s a step) are in the published
    # budget only, so that the cpu budget's four tasks fit in an hour on 2 cores.
    "published": {**_CPU, "steps": 8000, "model_steps": {},
                  "models": ("NODE", "HNN", "SecondOrderNODE", "HNN-midpoint", "LNN", "CHNN", "CLNN")},
}


# -- models ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A model of the comparison: how to build it, its coordinates, and its integrators.

    ``coordinates`` is ``"lagrangian"`` (trained on ``(q, q_dot)``), ``"canonical"`` (``(q, p)``),
    ``"cartesian_canonical"`` (``(x, p)``) or ``"cartesian_lagrangian"`` (``(x, v)``);
    ``train_integrator`` integrates the rollout loss, ``eval_integrator`` the test rollouts (float64).
    """

    label: str
    build: Callable[[int, tuple[int, ...], str], nn.Module]
    coordinates: str
    train_integrator: str
    eval_integrator: str
    published_as: str | None  # the paper's column this model reproduces (None: an hnnlab addition)
    description: str


def _node(dof: int, hidden: tuple[int, ...], activation: str) -> nn.Module:
    from hnnlab.models import NeuralODE

    return NeuralODE(dof, hidden=hidden, activation=activation, coordinates="lagrangian")


def _second_order(dof: int, hidden: tuple[int, ...], activation: str) -> nn.Module:
    from hnnlab.models import SecondOrderNeuralODE

    return SecondOrderNeuralODE(dof, hidden=hidden, activation=activation)


def _hnn(dof: int, hidden: tuple[int, ...], activation: str) -> nn.Module:
    from hnnlab.models import HNN

    # PyTorch's default initialisation, like the NODE's and the authors' code (not the orthogonal init of
    # Greydanus et al., HNN's default: the results page's training note says why).
    return HNN(dof, hidden=hidden, activation=activation, orthogonal_init=False)


def _chain_links(n: int) -> dict[str, Any]:
    """The chain's links as constraint structure (without the lengths, which are drawn per seed): body 0 on the
    pivot at the origin, body ``k`` on body ``k - 1``."""
    return {"spatial_dim": 2, "pairs": [[k - 1, k] for k in range(1, n)], "fixed": [[0, [0.0, 0.0]]]}


def _chnn(dof: int, hidden: tuple[int, ...], activation: str) -> nn.Module:
    from hnnlab.models import CHNN

    return CHNN(2 * dof, hidden=hidden, activation=activation, orthogonal_init=False, **_chain_links(dof))


def _clnn(dof: int, hidden: tuple[int, ...], activation: str) -> nn.Module:
    from hnnlab.models import CLNN

    return CLNN(2 * dof, hidden=hidden, activation=activation, orthogonal_init=False, **_chain_links(dof))


def _lnn(dof: int, hidden: tuple[int, ...], activation: str) -> nn.Module:
    from hnnlab.models import LNN

    return LNN(dof, hidden=hidden, activation=activation, solve_dtype="float64")


MODELS: dict[str, ModelSpec] = {
    "NODE": ModelSpec("NODE", _node, "lagrangian", "rk4", "rk4", "NODE",
                      "neural ODE on (q, q_dot) (the paper's NN baseline)"),
    "HNN": ModelSpec("HNN", _hnn, "canonical", "rk4", "rk4", "HNN",
                     "general learned H(q, p), trained with RK4 rollouts like the paper"),
    "SecondOrderNODE": ModelSpec("SecondOrderNODE", _second_order, "lagrangian", "rk4", "rk4", None,
                                 "second-order neural ODE q_dd = a(q, q_dot) (Gruver et al. 2022), hnnlab addition"),
    "HNN-midpoint": ModelSpec("HNN-midpoint", _hnn, "canonical", "implicit_midpoint", "implicit_midpoint", None,
                              "general learned H(q, p) trained and evaluated with the symplectic implicit "
                              "midpoint rule, hnnlab addition"),
    "LNN": ModelSpec("LNN", _lnn, "lagrangian", "rk4", "rk4", None,
                     "Lagrangian neural network on (q, q_dot), hnnlab addition"),
    "CHNN": ModelSpec("CHNN", _chnn, "cartesian_canonical", "rk4", "rk4", "CHNN",
                      "constrained HNN on Cartesian (x, p) with the links given, learned mass and potential"),
    "CLNN": ModelSpec("CLNN", _clnn, "cartesian_lagrangian", "rk4", "rk4", None,
                      "constrained LNN on Cartesian (x, v) with the links given, hnnlab addition"),
}


def build_model(spec: ModelSpec, dof: int, sizes: dict[str, Any], seed: int) -> nn.Module:
    """``spec``'s network, initialised from ``seed`` alone (the global RNG state is left untouched;
    :func:`~hnnlab.reproduce.common.fit` seeds only after the model exists)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return spec.build(dof, tuple(sizes["hidden"]), sizes["activation"])


# -- settings ----------------------------------------------------------------------------------------


def settings(cfg: ReproduceConfig) -> dict[str, Any]:
    """The budget's sizes with ``cfg.extra`` applied; unknown keys and unknown models are refused."""
    merged = merged_settings("finzi", BUDGETS, cfg)
    if "steps" in cfg.extra and "model_steps" not in cfg.extra:  # steps given explicitly apply to every model
        merged["model_steps"] = {}
    merged["models"] = tuple(merged["models"])
    merged["hidden"] = tuple(merged["hidden"])
    bad = [m for m in merged["models"] if m not in MODELS]
    if bad:
        raise InvalidArgumentError(f"finzi: unknown model {bad[0]!r}; available: {', '.join(MODELS)}")
    for key in ("n_traj", "steps", "batch_size", "window", "n_eval"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"finzi: {key} must be an integer >= 1, got {value!r}")
    model_steps = merged["model_steps"]
    if not isinstance(model_steps, dict):
        raise InvalidArgumentError(f"finzi: model_steps must be a mapping of model to steps, got {model_steps!r}")
    for label, value in model_steps.items():
        if label not in MODELS:
            raise InvalidArgumentError(f"finzi: model_steps names an unknown model {label!r}; available: "
                                       f"{', '.join(MODELS)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"finzi: model_steps[{label!r}] must be an integer >= 1, got {value!r}")
    merged["model_steps"] = {label: model_steps[label] for label in merged["models"] if label in model_steps}
    if not (isinstance(merged["perturbation"], int | float) and merged["perturbation"] >= 0):
        raise InvalidArgumentError(f"finzi: perturbation must be a number >= 0, got {merged['perturbation']!r}")
    return merged


def per_step_cosine(lr: float, weight_decay: float, total_steps: int) -> Callable[[Any], torch.optim.Optimizer]:
    """AdamW whose learning rate follows ``lr (1 + cos(pi k / total_steps)) / 2`` over optimizer steps ``k``.

    DynamicsModule steps its scheduler once per epoch, and an epoch of 5-step windows is hundreds of
    steps, so the cosine is attached to the optimizer itself: a ``CosineAnnealingLR`` advanced after
    every optimizer step (the paper anneals per epoch of 4 steps, i.e. practically per step).
    """

    def make(params: Any) -> torch.optim.Optimizer:
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        optimizer.register_step_post_hook(lambda *_: schedule.step())
        return optimizer

    return make


# -- the protocol's mathematics --------------------------------------------------------------------


def gmre_per_trajectory(prediction: Tensor, truth: Tensor) -> Tensor:
    """``GMRE_i`` ``(n_traj,)``: the geometric mean of ``rel_i(t)`` over the steps after ``t = 0``."""
    return geometric_mean_relative_error(prediction, truth, skip_initial=True)


def gmre_rel_curve(prediction: Tensor, truth: Tensor) -> Tensor:
    """``rel(t)`` averaged geometrically over trajectories, ``(n_times,)`` (for the plot)."""
    rel = relative_error_series(prediction, truth).clamp_min(1e-300)
    return rel.log().mean(dim=0).exp()


def evaluate_field(
    f: Callable[[Tensor | float, Tensor], Tensor],
    integrator: AbstractIntegrator,
    x0: Tensor,
    truth: Tensor,
    dt: float,
    *,
    to_lagrangian: Callable[[Tensor], Tensor] | None = None,
    truth_lagrangian: Tensor | None = None,
    to_cartesian: Callable[[Tensor], Tensor] | None = None,
    truth_cartesian: Tensor | None = None,
    vpt_threshold: float = 0.01,
) -> dict[str, Any]:
    """Roll ``f`` out from ``x0`` on ``truth``'s grid and measure it.

    ``truth`` is in ``f``'s own coordinates. For a canonical model pass ``to_lagrangian`` (the true
    inverse Legendre transform) and ``truth_lagrangian``: the headline GMRE is then computed on
    ``(q, q_dot)`` and the own-coordinate GMRE is kept beside it.

    Returns the per-trajectory GMRE on ``(q, q_dot)`` (``"gmre"``), in own coordinates (``"gmre_own"``,
    ``None`` when they are ``(q, q_dot)`` already), the valid prediction times, and the ``rel(t)`` curve. With
    ``to_cartesian`` (own coordinates to ``(x, v)``) and ``truth_cartesian``, also the GMRE on ``(x, v)``
    (``"gmre_cartesian"``, else ``None``).
    """
    n_steps = truth.shape[1] - 1
    with torch.no_grad():  # a trajectory that blows up is NaN from its first bad step (rel = 1 from there)
        pred = solve(f, integrator, x0, dt, n_steps).ys  # (n_traj, n_times, 2 * dof)
    pred64 = pred.to(torch.float64)
    gmre_own, gmre_cartesian = None, None
    if to_cartesian is not None:
        if truth_cartesian is None:
            raise InvalidArgumentError("evaluate_field: to_cartesian needs truth_cartesian")
        with torch.no_grad():
            gmre_cartesian = gmre_per_trajectory(to_cartesian(pred64), truth_cartesian)
    if to_lagrangian is not None:
        if truth_lagrangian is None:
            raise InvalidArgumentError("evaluate_field: to_lagrangian needs truth_lagrangian")
        gmre_own = gmre_per_trajectory(pred64, truth)
        with torch.no_grad():
            pred64 = to_lagrangian(pred64)
        truth = truth_lagrangian
    t = torch.arange(n_steps + 1, dtype=torch.float64) * dt
    vpt, censored = valid_prediction_time(pred64, truth, t, threshold=vpt_threshold)
    return {
        "gmre": gmre_per_trajectory(pred64, truth),
        "gmre_own": gmre_own,
        "gmre_cartesian": gmre_cartesian,
        "vpt": vpt,
        "censored": censored,
        "curve": gmre_rel_curve(pred64, truth),
    }


# -- data --------------------------------------------------------------------------------------------


@dataclass
class TaskData:
    """The Lagrangian and the canonical dataset of one task and seed, with their test splits."""

    lagrangian_path: Path
    canonical_path: Path
    system: AbstractSystem  # the Lagrangian chain (for the Legendre transform)
    dt: float
    test_lagrangian: Tensor  # (n_eval, n_times, 2 * dof), (q, q_dot)
    test_canonical: Tensor  # (n_eval, n_times, 2 * dof), (q, p)
    cartesian: AbstractSystem  # the same chain in Cartesian coordinates, (x, v) form
    test_cartesian: Tensor  # (n_eval, n_times, 4 * dof), (x, v)
    cartesian_paths: dict[str, Path]  # "cartesian_canonical" / "cartesian_lagrangian" -> file, when a model needs it


def build_task_data(cfg: ReproduceConfig, task: str, seed: int, sizes: dict[str, Any]) -> TaskData:
    """Simulate (or reuse) both datasets of ``task`` and check that they describe the same chain and
    the same physical test trajectories (same seed: same masses, lengths and initial states)."""
    from hnnlab.data.io import load_dataset, rebuild_system

    n = LINKS[task]
    overrides = {"system_params": {"n": n}, "n_traj": sizes["n_traj"]}
    lag = build_dataset(cfg.out / f"chain{n}_lagrangian_seed{seed}.h5", RECIPE, seed=seed, overrides=overrides)
    can = build_dataset(cfg.out / f"chain{n}_canonical_seed{seed}.h5", RECIPE, seed=seed,
                        overrides={**overrides, "system": HAMILTONIAN_SYSTEM})
    lag_data, can_data = load_dataset(lag), load_dataset(can)
    system = rebuild_system(lag_data.metadata)
    n_eval = sizes["n_eval"]
    test_lag = lag_data.splits["test"].state[:n_eval].to(torch.float64)
    test_can = can_data.splits["test"].state[:n_eval].to(torch.float64)
    mapped = system.to_canonical(test_lag)
    gap = float((mapped - test_can).abs().max())
    if gap > 1e-7:
        raise FileFormatError(
            f"finzi {task}, seed {seed}: the canonical test trajectories differ from the Legendre transform of the "
            f"Lagrangian ones by {gap:.3g}; the datasets in {cfg.out} do not describe the same chain"
        )
    cartesian = SYSTEMS.get(CARTESIAN_LAGRANGIAN_SYSTEM)(**system.params())
    paths: dict[str, Path] = {}
    for label in sizes["models"]:
        kind = MODELS[label].coordinates
        if kind.startswith("cartesian") and kind not in paths:
            system_override = {"system": CARTESIAN_LAGRANGIAN_SYSTEM} if kind == "cartesian_lagrangian" else {}
            paths[kind] = build_dataset(cfg.out / f"chain{n}_{kind}_seed{seed}.h5", CARTESIAN_RECIPE, seed=seed,
                                        overrides={**overrides, **system_override})
            test = load_dataset(paths[kind]).splits["test"].state[:n_eval].to(torch.float64)
            xv = test if kind == "cartesian_lagrangian" else _canonical_form(cartesian).positions_and_velocities(test)
            gap = float((_same_turn(cartesian.to_angles(xv), test_lag) - test_lag).abs().max())
            if gap > 1e-7:
                raise FileFormatError(
                    f"finzi {task}, seed {seed}: the Cartesian test trajectories ({kind}) differ from the angle "
                    f"ones by {gap:.3g}; the datasets in {cfg.out} do not describe the same chain"
                )
    return TaskData(lag, can, system, float(lag_data.metadata["dt"]), test_lag, test_can, cartesian,
                    cartesian.from_angles(test_lag), paths)


# -- the run -----------------------------------------------------------------------------------------


def model_steps(sizes: dict[str, Any], label: str) -> int:
    """The optimizer steps of model ``label``: its ``model_steps`` entry, else ``steps``."""
    return sizes["model_steps"].get(label, sizes["steps"])


def _train_and_evaluate(cfg: ReproduceConfig, spec: ModelSpec, task: str, seed: int, data: TaskData,
                        sizes: dict[str, Any]) -> dict[str, Any]:
    model = build_model(spec, LINKS[task], sizes, seed)
    steps = model_steps(sizes, spec.label)
    paths = {"canonical": data.canonical_path, "lagrangian": data.lagrangian_path, **data.cartesian_paths}
    path = paths[spec.coordinates]
    name = f"finzi-{task}-{spec.label}-seed{seed}"
    try:
        module, seconds = fit(
            model, path, cfg, name=name, steps=steps, batch_size=sizes["batch_size"],
            optimizer=per_step_cosine(sizes["lr"], sizes["weight_decay"], steps), seed=seed,
            loss="rollout", metric="l1", integrator=spec.train_integrator, mode="windows", window=sizes["window"],
            group="finzi",
        )
    except HnnlabError as exc:  # a diverged training run is reported, not fatal to the others
        print(f"  {name} failed: {exc}", flush=True)
        return {"failed": str(exc)}
    trained = module.model.eval()
    truth, extra = _views(spec.coordinates, data)
    options = {"tol": sizes["midpoint_tol"]} if spec.eval_integrator == "implicit_midpoint" else {}
    integ64 = get_integrator(spec.eval_integrator, **options)
    started = time.perf_counter()
    model64 = copy.deepcopy(trained).double()
    result = evaluate_field(model64, integ64, truth[:, 0], truth, data.dt, vpt_threshold=sizes["vpt_threshold"],
                            **extra)
    eval_seconds = time.perf_counter() - started
    # The same rollout in float32 (the training dtype; the paper's evaluation dtype).
    model32 = copy.deepcopy(trained).float()
    integ32 = get_integrator(spec.eval_integrator)
    result32 = evaluate_field(model32, integ32, truth[:, 0].float(), truth, data.dt,
                              vpt_threshold=sizes["vpt_threshold"], **extra)
    g = Estimate.geometric(result["gmre"])
    print(f"  {name}: GMRE {g:.3e} (train {seconds:.0f} s, eval {eval_seconds:.1f} s)", flush=True)
    return {
        "gmre": g,
        "gmre32": Estimate.geometric(result32["gmre"]),
        "gmre_own": None if result["gmre_own"] is None else Estimate.geometric(result["gmre_own"]),
        "gmre_cartesian": Estimate.geometric(result["gmre_cartesian"]),
        "vpt": Estimate.of(result["vpt"]),
        "censored": float(result["censored"].double().mean()),
        "curve": result["curve"].tolist(),
        "seconds": seconds,
        "eval_seconds": eval_seconds,
    }


def _views(coordinates: str, data: TaskData) -> tuple[Tensor, dict[str, Any]]:
    """The test truth in a model's own coordinates and the maps of its predictions to the angle coordinates
    ``(q, q_dot)`` and to the Cartesian ``(x, v)`` (:func:`evaluate_field`'s keyword arguments). Canonical states
    map to velocities with the true masses (as the HNN's ``(q, p)`` with the true Legendre transform)."""
    cart = data.cartesian  # (x, v) form
    cartesian = {"truth_cartesian": data.test_cartesian}
    if coordinates == "lagrangian":
        return data.test_lagrangian, {"to_cartesian": cart.from_angles, **cartesian}
    if coordinates == "canonical":
        return data.test_canonical, {
            "to_lagrangian": data.system.from_canonical, "truth_lagrangian": data.test_lagrangian,
            "to_cartesian": lambda y: cart.from_angles(data.system.from_canonical(y)), **cartesian}
    to_xv = _identity if coordinates == "cartesian_lagrangian" else _canonical_form(cart).positions_and_velocities
    truth = data.test_cartesian if coordinates == "cartesian_lagrangian" else torch.cat(
        cart.positions_and_momenta(data.test_cartesian), dim=-1)
    return truth, {
        "to_lagrangian": lambda y: _same_turn(cart.to_angles(to_xv(y)), data.test_lagrangian),
        "truth_lagrangian": data.test_lagrangian, "to_cartesian": to_xv, **cartesian}


def _identity(y: Tensor) -> Tensor:
    return y


def _canonical_form(cart: AbstractSystem) -> AbstractSystem:
    """The ``(x, p)`` form of the Cartesian chain ``cart``."""
    return SYSTEMS.get(CARTESIAN_SYSTEM)(**cart.params())


def _same_turn(theta_omega: Tensor, truth: Tensor) -> Tensor:
    """Angles from ``atan2`` (unwrapped in time) moved by whole turns onto the truth's turn at ``t = 0``."""
    n = truth.shape[-1] // 2
    turns = torch.round((truth[:, :1, :n] - theta_omega[:, :1, :n]) / (2 * torch.pi))
    return torch.cat([theta_omega[..., :n] + 2 * torch.pi * turns, theta_omega[..., n:]], dim=-1)


def _floor(data: TaskData, sizes: dict[str, Any], seed: int) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(10_000 + seed)
    pert = perturbed_floor(data.system, data.test_lagrangian, data.dt, sizes["perturbation"], generator)
    cartesian = gmre_per_trajectory(data.cartesian.from_angles(pert), data.test_cartesian)
    return {
        "gmre": Estimate.geometric(gmre_per_trajectory(pert, data.test_lagrangian)),
        "gmre_cartesian": Estimate.geometric(cartesian),
        "curve": gmre_rel_curve(pert, data.test_lagrangian).tolist(),
    }


def run(cfg: ReproduceConfig) -> dict[str, Any]:
    """Run the reproduction for ``cfg``'s tasks and seeds; write ``finzi.md``, ``.csv``, ``.json`` and a plot."""
    tasks = cfg.select(TASKS)
    sizes = settings(cfg)
    started, cpu_started = time.perf_counter(), time.process_time()
    raw: dict[str, Any] = {"settings": sizes, "seeds": list(cfg.seeds), "tasks": {}}
    for task in tasks:
        print(f"finzi {task}", flush=True)
        per_model: dict[str, list[dict[str, Any]]] = {m: [] for m in sizes["models"]}
        floors: list[dict[str, Any]] = []
        for seed in cfg.seeds:
            data = build_task_data(cfg, task, seed, sizes)
            floors.append(_floor(data, sizes, seed))
            for label in sizes["models"]:
                per_model[label].append(_train_and_evaluate(cfg, MODELS[label], task, seed, data, sizes))
        raw["tasks"][task] = {"floor": floors, "models": per_model}
    elapsed = time.perf_counter() - started
    raw["cpu_seconds"] = time.process_time() - cpu_started
    return write_page(cfg, raw, elapsed, MODELS)
