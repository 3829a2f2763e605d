"""Cranmer et al. 2020, Lagrangian Neural Networks: the double-pendulum energy error at t = 100.

Protocol (the paper's): a double pendulum with ``m1 = m2 = l1 = l2 = 1``, ``g = 9.8``; train on random
states ``theta ~ U(0, 2 pi)^2``, ``omega ~ U(-10, 10)^2`` with their analytic accelerations as targets
(L1 loss, Adam); from 40 initial states ``theta ~ U(0, 2 pi)^2``, ``omega ~ U(0, 0.1)^2`` integrate the
learned field to ``t = 100`` and report the mean over the states of

    ``|E_true(x_pred(100)) - E_true(x0)| / 29.4``   (29.4 = m g l (2 + 1), the largest potential energy)

with its standard error. Models: the LNN (3 x 600 softplus) and the paper's "MLP baseline", a black-box
network for the accelerations (:class:`~hnnlab.models.SecondOrderNeuralODE`, the second-order baseline).

hnnlab adds: float64 evaluation (and the float32 number beside it), the energy error over the whole
horizon (maximum and at ``t = 100``), the valid prediction time against the reference trajectory, a
check that the evaluation integrator's own error is far below the models' (two tolerances, the true
system through the same integrator, and the drift of the LNN's own conserved energy), and one plot.
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

from hnnlab.errors import InvalidArgumentError
from hnnlab.integrators import get_integrator
from hnnlab.reproduce.common import (
    Estimate,
    ReproduceConfig,
    build_dataset,
    cached,
    fit,
    merged_settings,
    summed_seconds,
)
from hnnlab.reproduce.cranmer_models import ANGLE_INPUTS as ANGLE_INPUTS
from hnnlab.reproduce.cranmer_models import MODELS, _angle_input, make_model
from hnnlab.reproduce.cranmer_models import NetworkInput as NetworkInput
from hnnlab.reproduce.cranmer_models import cranmer_init as cranmer_init
from hnnlab.reproduce.cranmer_report import RECIPE, write_page
from hnnlab.rollout import solve

NAME = "cranmer"
TASKS: tuple[str, ...] = ("double_pendulum",)

VELOCITY_STD = 10 / math.sqrt(3)  # standard deviation of the training velocities, U(-10, 10)
MAX_POTENTIAL = 29.4  # (m1 + m2) g l1 + m2 g l2 with m = l = 1, g = 9.8: the energy scale of the metric

# Sizes per budget; cfg.extra overrides any key. The cpu budget fits 2 cores in under an hour; the time
# of each training and evaluation is on the results page (train s, eval s).
BUDGETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "n_states": 100_000,  # random train + val states (90 % / 10 %)
        "steps": 5_000,  # optimizer steps per model
        "batch_size": 256,
        "lr": 1e-3,
        "lr_final": 1e-5,  # cosine decay per step to this
        "hidden": (600, 600, 600),
        "structured_hidden": (300, 300, 300),  # each of the Structured LNN's two networks (M and V)
        "n_test": 40,  # evaluation states (the paper's 40)
        "t_end": 100.0,
        "n_times": 1001,  # dt = 0.1, the paper's 10 points per unit time
        "eval_rtol": 1e-5,  # dopri5, rtol = atol; the true system's metric is ~1e-3 at this tolerance
        "check_rtol": 1e-6,  # the second tolerance
        # the LNN's check is its learned-energy drift (free); the Structured LNN's error is near the
        # integrator's own at eval_rtol, so it is measured at check_rtol too
        "check_models": ("MLP baseline", "Structured LNN"),
        "float32_models": ("MLP baseline",),
        "truth": "dopri8",  # recipe default, dopri8 at 1e-12 (faster here than the paper's dopri5 at 1e-10)
        "max_steps_factor": 1.5,  # a model's trajectory may take this many times the true system's most dopri5 steps
        "lnn_init": "cranmer",  # the paper's custom_init ("default": PyTorch's)
        "angles": "features",  # networks see (cos q, sin q); "wrap": the paper's q mod 2 pi (see NetworkInput)
        "velocity_scale": VELOCITY_STD,  # networks see q_dot / this (1.0: the paper's raw q_dot)
    },
    "published": {
        # notebooks/DoublePendulum.ipynb: epochs of 2000 minibatches of 512 fresh random states, 300 epochs,
        # a one-cycle cosine learning rate; here 600,000 steps at batch 512 over ~1M fixed random states.
        "n_states": 1_100_000,
        "steps": 600_000,
        "batch_size": 512,
        "lr": 1e-3,
        "lr_final": 1e-7,
        "hidden": (600, 600, 600),
        "structured_hidden": (300, 300, 300),
        "n_test": 40,
        "t_end": 100.0,
        "n_times": 1001,
        "eval_rtol": 1e-7,
        "check_rtol": 1e-6,
        "check_models": MODELS,
        "float32_models": MODELS,
        "truth": "dopri8",
        "max_steps_factor": 5.0,
        "lnn_init": "cranmer",
        "angles": "features",
        "velocity_scale": VELOCITY_STD,
    },
}
TRUTH_INTEGRATORS: dict[str, dict[str, Any]] = {
    "dopri8": {},  # the recipe's default: dopri8 at rtol = atol = 1e-12
    "published": {"integrator": "dopri5", "integrator_options": {"rtol": 1e-10, "atol": 1e-10}},
}
VPT_THRESHOLD = 0.01


def settings(cfg: ReproduceConfig) -> dict[str, Any]:
    """The budget's sizes with ``cfg.extra`` applied; unknown keys are refused."""
    sizes = merged_settings(NAME, BUDGETS, cfg)
    _angle_input(sizes["angles"], 2, float(sizes["velocity_scale"]))  # refuse a bad choice before any work
    if sizes["truth"] not in TRUTH_INTEGRATORS:
        raise InvalidArgumentError(
            f"cranmer: truth must be one of {', '.join(TRUTH_INTEGRATORS)}, got {sizes['truth']!r}"
        )
    for key in ("check_models", "float32_models"):
        bad = [m for m in sizes[key] if m not in MODELS]
        if bad:
            raise InvalidArgumentError(f"cranmer: {key} has unknown model {bad[0]!r}; models: {', '.join(MODELS)}")
    return sizes


def recipe_overrides(sizes: dict[str, Any]) -> dict[str, Any]:
    """Overrides of the ``lnn-double-pendulum`` recipe for these sizes."""
    from hnnlab.data.recipes import TestSet, get_recipe

    test = get_recipe(RECIPE).test_set
    assert test is not None
    return {
        "n_traj": int(sizes["n_states"]),
        "test_set": TestSet(n_traj=int(sizes["n_test"]), t_end=float(sizes["t_end"]),
                            n_times=int(sizes["n_times"]), system_params=dict(test.system_params)),
        **TRUTH_INTEGRATORS[sizes["truth"]],
    }


def cosine_adam(lr: float, lr_final: float, steps: int) -> Callable[[Any], torch.optim.Optimizer]:
    """An Adam factory whose learning rate follows ``lr_final + (lr - lr_final) (1 + cos(pi s / steps)) / 2``
    per optimizer step ``s`` (a post-step hook: the module's schedulers step per epoch)."""

    def factory(params: Any) -> torch.optim.Optimizer:
        optimizer = torch.optim.Adam(params, lr=lr)
        count = [0]

        def after_step(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            count[0] += 1
            frac = min(count[0] / max(steps, 1), 1.0)
            for group in opt.param_groups:
                group["lr"] = lr_final + (lr - lr_final) * 0.5 * (1 + math.cos(math.pi * frac))

        optimizer.register_step_post_hook(after_step)
        return optimizer

    return factory


# -- the evaluation protocol --------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """One model's rollouts from the evaluation states, measured with the paper's protocol.

    Attributes:
        t: saved times ``(n_times,)``.
        x0: initial states ``(n_states, 4)``, float64.
        states: predicted states ``(n_states, n_times, 4)`` (NaN after a trajectory diverged).
        energy_error: ``|E_true(x(t)) - E_true(x0)| / 29.4``, ``(n_states, n_times)`` (inf once diverged).
        evaluations: vector-field evaluations used (calls on the live trajectories of the batch).
        internal_steps: dopri5 steps each trajectory took, ``(n_states,)``.
        seconds: wall time of the integration.
    """

    t: Tensor
    x0: Tensor
    states: Tensor
    energy_error: Tensor
    evaluations: int
    internal_steps: Tensor
    seconds: float

    @property
    def final(self) -> Tensor:
        """The paper's per-state metric at the last time, ``(n_states,)``."""
        return self.energy_error[:, -1]

    @property
    def worst(self) -> Tensor:
        """The largest energy error over the times each state reached, ``(n_states,)``."""
        finite = torch.isfinite(self.energy_error)
        return torch.where(finite, self.energy_error, -math.inf).amax(dim=1)

    @property
    def reached(self) -> Tensor:
        """The last time with a finite state, per state ``(n_states,)`` (``t_end`` when finished)."""
        finite = torch.isfinite(self.states).all(dim=-1)  # (n_states, n_times)
        last = (finite.to(torch.int64) * torch.arange(1, finite.shape[1] + 1)).amax(dim=1) - 1
        return self.t[last.clamp_min(0)]

    @property
    def diverged(self) -> int:
        return int((~torch.isfinite(self.states).all(dim=-1).all(dim=-1)).sum())


BLOWUP_ENERGY = 1000.0  # |E| beyond this (|omega| ~ 30, three times the training range) counts as diverged


def evaluate(field: Callable[[Any, Tensor], Tensor], system: Any, x0: Tensor, *, t_end: float, n_times: int,
             rtol: float, max_steps: int | None = None) -> Evaluation:
    """The paper's protocol: roll ``field`` out from ``x0`` ``(n, 4)`` (its dtype) to ``t_end`` on
    ``n_times`` saved times and measure the true energy error ``|E(x(t)) - E(x0)| / 29.4``.

    One solve with hnnlab's dopri5 at ``rtol = atol`` (max-norm error control, one step size per trajectory).
    A trajectory diverged, and is NaN from then on, where its solve failed (non-finite, or more than
    ``max_steps`` internal steps: an adaptive solver on a stiff learned field can otherwise take tiny steps
    for hours), or from the first saved time its true energy is outside ``|E| <= BLOWUP_ENERGY``. The field is
    frozen outside that bound, so that a blown-up trajectory stops costing steps."""
    dt = t_end / (n_times - 1)
    start = time.perf_counter()

    def bounded(x: Tensor) -> Tensor:
        return system.energy(x.to(torch.float64)).abs() <= BLOWUP_ENERGY

    def frozen_when_blown_up(t: Any, x: Tensor) -> Tensor:
        return torch.where(bounded(x)[:, None], field(t, x), 0.0)

    integrator = get_integrator("dopri5", rtol=rtol, atol=rtol, max_steps=max_steps)
    with torch.no_grad():
        solution = solve(frozen_when_blown_up, integrator, x0, dt, n_times - 1)
    seconds = time.perf_counter() - start
    states64 = solution.ys.to(torch.float64)  # (n, n_times, 4)
    with torch.no_grad():
        outside = ~bounded(states64)  # (n, n_times): also where the solve failed (NaN)
        after = outside.cumsum(dim=1) > 0
        states64 = torch.where(after[..., None], math.nan, states64)
        e0 = system.energy(x0.to(torch.float64))  # (n,)
        err = (system.energy(states64) - e0[:, None]).abs() / MAX_POTENTIAL  # (n, n_times)
    err = torch.where(torch.isfinite(err), err, math.inf)
    t = torch.arange(n_times, dtype=torch.float64) * dt
    return Evaluation(t=t, x0=x0.to(torch.float64), states=states64, energy_error=err,
                      evaluations=int(solution.stats["field_evaluations"]),
                      internal_steps=solution.stats["internal_steps"], seconds=seconds)


def learned_energy_drift(model: nn.Module, system: Any, evaluation: Evaluation, chunk: int = 4096) -> Tensor:
    """The integrator's error on a model's own conserved energy, in the metric's units, ``(n_states,)``.

    The exact flow of an LNN conserves its energy ``E_theta``, so any change of ``E_theta`` along the
    rollout is integration error. ``E_theta`` is only defined up to ``a E + b`` (scaling ``L`` changes
    nothing), so ``a`` is fitted by least squares on the initial states and the drift is
    ``max_t |E_theta(x(t)) - E_theta(x0)| / (|a| 29.4)`` (NaN for a trajectory that did not finish)."""
    states = evaluation.states
    dtype = next(model.parameters()).dtype
    flat = states.reshape(-1, states.shape[-1]).to(dtype)
    learned = torch.cat([model.energy(flat[i : i + chunk]).detach() for i in range(0, flat.shape[0], chunk)])
    learned = learned.to(torch.float64).reshape(states.shape[:2])  # (n_states, n_times)
    x0 = evaluation.x0.to(dtype)
    learned0 = model.energy(x0).detach().to(torch.float64)  # (n_states,)
    true0 = system.energy(evaluation.x0)  # (n_states,)
    design = torch.stack([true0, torch.ones_like(true0)], dim=-1)  # (n_states, 2)
    a = torch.linalg.lstsq(design, learned0[:, None]).solution[0, 0]
    return (learned - learned0[:, None]).abs().amax(dim=1) / (a.abs() * MAX_POTENTIAL)


def acceleration_l1(model: nn.Module, x: Tensor, dxdt: Tensor, chunk: int = 2048) -> float:
    """Mean ``|q_dd_model - q_dd_true|`` over states ``(n, 4)`` (the paper's L1 on accelerations), in the
    model's dtype; ``model = None`` gives the error of predicting zero acceleration."""
    total = 0.0
    for i in range(0, x.shape[0], chunk):
        xb, target = x[i : i + chunk], dxdt[i : i + chunk, 2:]
        if model is None:
            pred = torch.zeros_like(target)
        else:
            dtype = next(model.parameters()).dtype
            with torch.no_grad():
                pred = model(0.0, xb.to(dtype))[..., 2:].to(target.dtype)
        total += float((pred - target).abs().sum())
    return total / (x.shape[0] * 2)


def valid_prediction_times(evaluation: Evaluation, reference: Tensor) -> tuple[Tensor, Tensor]:
    """VPT per state against the reference trajectories ``(n_states, n_times, 4)``, threshold 0.01."""
    from hnnlab.audit.metrics import valid_prediction_time

    return valid_prediction_time(evaluation.states, reference.to(torch.float64), evaluation.t,
                                 threshold=VPT_THRESHOLD)


# -- the run ------------------------------------------------------------------------------------------


def _finite(x: Tensor) -> Tensor:
    return x[torch.isfinite(x)]


def _estimate(x: Tensor) -> Estimate:
    finite = _finite(x)
    return Estimate.of(finite) if finite.numel() else Estimate(math.nan)


def _measure(ev: Evaluation, reference: Tensor) -> dict[str, Any]:
    vpt, censored = valid_prediction_times(ev, reference)
    return {
        "final": _estimate(ev.final), "worst": _estimate(ev.worst), "vpt": Estimate.of(vpt),
        "censored": int(censored.sum()), "diverged": ev.diverged, "reached": Estimate.of(ev.reached),
        "evaluations": ev.evaluations,
        "seconds": ev.seconds, "per_state_final": ev.final.tolist(),
    }


def run_seed(cfg: ReproduceConfig, sizes: dict[str, Any], seed: int) -> dict[str, Any]:
    """Build the data, train both models, evaluate them; every number of one seed."""
    from hnnlab.data.io import load_dataset

    tag = f"n{sizes['n_states']}-test{sizes['n_test']}x{sizes['n_times']}-{sizes['truth']}"
    path = build_dataset(cfg.out / f"{RECIPE}-{tag}-seed{seed}.h5", RECIPE, seed=seed,
                         overrides=recipe_overrides(sizes))
    data = load_dataset(path)
    system = data.system
    test = data.splits["test"]
    x0, reference = test.clean[:, 0].to(torch.float64), test.clean  # (n_test, 4), (n_test, n_times, 4)
    t_end, n_times, rtol = float(sizes["t_end"]), int(sizes["n_times"]), float(sizes["eval_rtol"])
    result: dict[str, Any] = {"seed": seed, "dataset": str(path), "t_end": t_end, "models": {}}
    val = data.splits["val"]
    val_x, val_dxdt = val.clean[:, 0].to(torch.float64), val.dxdt[:, 0].to(torch.float64)  # (n_val, 4)
    result["zero_l1"] = acceleration_l1(None, val_x, val_dxdt)

    print(f"  true system through the evaluation integrator (dopri5, rtol = atol = {rtol:g})", flush=True)
    truth = evaluate(system, system, x0, t_end=t_end, n_times=n_times, rtol=rtol)
    truth_check = evaluate(system, system, x0, t_end=t_end, n_times=n_times, rtol=float(sizes["check_rtol"]))
    result["truth"] = {"eval": _measure(truth, reference), "check": _measure(truth_check, reference),
                       "curve": truth.energy_error.mean(dim=0).tolist()}
    factor = float(sizes["max_steps_factor"])
    cap = {rtol: int(factor * truth.internal_steps.max()),
           float(sizes["check_rtol"]): int(factor * truth_check.internal_steps.max())}

    for name in MODELS:
        torch.manual_seed(seed)
        hidden = sizes["structured_hidden"] if name == "Structured LNN" else sizes["hidden"]
        model = make_model(name, hidden, init=sizes["lnn_init"], angles=sizes["angles"],
                           velocity_scale=float(sizes["velocity_scale"]))
        module, seconds = fit(
            model, path, cfg, name=f"cranmer-{name.replace(' ', '_')}-seed{seed}", steps=int(sizes["steps"]),
            batch_size=int(sizes["batch_size"]), seed=seed, loss="derivative", metric="l1", mode="pairs",
            optimizer=cosine_adam(float(sizes["lr"]), float(sizes["lr_final"]), int(sizes["steps"])),
            group="cranmer",
        )
        trained = module.model.eval()
        print(f"  trained {name} in {seconds:.0f} s; evaluating in float64 to t = {t_end:g}", flush=True)
        m64 = copy.deepcopy(trained).double()
        ev = evaluate(m64, system, x0, t_end=t_end, n_times=n_times, rtol=rtol, max_steps=cap[rtol])
        entry: dict[str, Any] = {"train_seconds": seconds, "val_l1": acceleration_l1(trained, val_x, val_dxdt),
                                 "float64": _measure(ev, reference),
                                 "curve": ev.energy_error.mean(dim=0).tolist()}
        print(f"    {name} float64: {_estimate(ev.final):.3e} ({ev.evaluations} evaluations, {ev.seconds:.0f} s)",
              flush=True)
        if m64.has_energy:
            entry["learned_drift"] = _estimate(learned_energy_drift(m64, system, ev))
        if name in sizes["check_models"]:
            check_rtol = float(sizes["check_rtol"])
            check = evaluate(m64, system, x0, t_end=t_end, n_times=n_times, rtol=check_rtol,
                             max_steps=cap[check_rtol])
            entry["check"] = _measure(check, reference)
            print(f"    {name} float64 at rtol {sizes['check_rtol']:g}: {_estimate(check.final):.3e}", flush=True)
        if name in sizes["float32_models"]:
            m32 = copy.deepcopy(trained).float()
            ev32 = evaluate(m32, system, x0.float(), t_end=t_end, n_times=n_times, rtol=rtol,
                            max_steps=cap[rtol])
            entry["float32"] = _measure(ev32, reference)
            print(f"    {name} float32: {_estimate(ev32.final):.3e}", flush=True)
        result["models"][name] = entry
    return result


def model_seconds(results: list[dict[str, Any]]) -> float:
    """The models' training and evaluation seconds (every ``train_seconds`` and ``seconds``), summed over the seeds:
    the run's cost whether each seed was computed now or saved by an earlier process."""
    return summed_seconds([r["models"] for r in results], ("train_seconds", "seconds"))


def run(cfg: ReproduceConfig) -> dict[str, Any]:
    """Run the reproduction; writes ``cfg.results / cranmer.{md,csv,json}`` and ``cranmer/energy_error.png``."""
    cfg.select(TASKS)
    sizes = settings(cfg)
    started = time.perf_counter()
    print(f"cranmer: double pendulum, budget {cfg.budget}, seeds {list(cfg.seeds)}", flush=True)
    results = [cached(cfg.out / "results" / f"seed{seed}.pt", {"seed": seed, "budget": cfg.budget, **sizes},
                      lambda seed=seed: run_seed(cfg, sizes, seed), label=f"seed {seed}") for seed in cfg.seeds]
    page = write_page(cfg, sizes, results, model_seconds(results) / 60)
    print(f"cranmer: done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    return page
