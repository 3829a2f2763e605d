"""Cranmer et al. 2020, the results page: energy error at t = 100 by the paper's protocol, hnnlab's additions
(horizon, valid prediction time), the check of the evaluation integrator, notes from ``templates/cranmer.md``
and the energy error against time.

Built from the per-seed results of :func:`hnnlab.reproduce.cranmer.run` alone (``cranmer.json`` keeps them),
so it can be redrawn from a saved run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hnnlab.reproduce.common import Column, Estimate, Notes, ReproduceConfig, figure, pooled, publish

NAME = "cranmer"
TITLE = "Cranmer et al. 2020 (LNN): double-pendulum energy error at t = 100"
RECIPE = "lnn-double-pendulum"
SOURCE = "Cranmer et al. 2020, Lagrangian Neural Networks (arXiv:2003.04630), double-pendulum energy error"
# The paper's figures: mean over 40 states of |E(x_pred(100)) - E(x0)| / 29.4 (no error bar given).
PUBLISHED: dict[str, float] = {"LNN": 0.0043, "MLP baseline": 0.074}
# The paper's notebook: 300 epochs of 2000 minibatches of 512 states (the published budget's steps x batch).
PUBLISHED_SAMPLES = 600_000 * 512
NOTES = Notes("cranmer")


def write_page(cfg: ReproduceConfig, sizes: dict[str, Any], results: list[dict[str, Any]], minutes: float
               ) -> dict[str, Any]:
    """Write ``cranmer.md``, ``.csv``, ``.json`` and ``cranmer/energy_error.png`` to ``cfg.results`` from the
    per-seed ``results`` of a run of ``minutes`` with settings ``sizes``."""
    rows = build_rows(results, sizes)
    plot = plot_energy(results, cfg.results / NAME / "energy_error.png")
    columns_main = [Column("protocol", "protocol"), Column("model", "model"), Column("source", "source"),
                    Column("dtype", "eval dtype"), Column("integrator", "model integrator"),
                    Column("training", "steps x batch"), Column("metric", "energy error at t = 100"),
                    Column("diverged", "diverged or unfinished")]
    columns_extra = [Column("model", "model"), Column("source", "source"), Column("dtype", "eval dtype"),
                     Column("at_100", "energy error at t = 100"), Column("max_horizon", "max over the reached horizon"),
                     Column("reached", "time reached", ".1f"),
                     Column("vpt", "valid prediction time"), Column("censored", "VPT censored"),
                     Column("val_l1", "val L1 on q_dd", ".3g"), Column("zero_l1", "L1 of q_dd = 0", ".3g"),
                     Column("train_s", "train s", ".0f"), Column("eval_s", "eval s", ".0f")]
    columns_check = [Column("model", "field"), Column("at_rtol", f"metric, rtol {sizes['eval_rtol']:g}"),
                     Column("at_check", f"metric, rtol {sizes['check_rtol']:g}"),
                     Column("difference", "difference", ".1e"),
                     Column("drift", "learned-energy drift (integration error)"),
                     Column("evaluations", "field evaluations")]
    columns_seeds = [Column("model", "model"), Column("per_seed", "energy error at t = 100, per seed"),
                     Column("median", "median over seeds", ".3g"), Column("range", "min - max"),
                     Column("val_l1", "val L1 on q_dd, per seed")]
    per_seed = ([(f"Per seed (seeds {', '.join(str(r['seed']) for r in results)}: each its own dataset and "
                  "initialisation), float64", columns_seeds, seed_rows(results))] if len(results) > 1 else [])
    md, csv_path, json_path = publish(
        NAME,
        cfg,
        title=TITLE,
        sections=[
            ("Published protocol: mean over the evaluation states of |E(x(100)) - E(x0)| / 29.4", columns_main,
             rows["main"]),
            *per_seed,
            ("hnnlab's additions: energy error over the horizon and valid prediction time (threshold 0.01)",
             columns_extra, rows["extra"]),
            ("Evaluation-integrator check (the integrator's error must be far below the models')", columns_check,
             rows["check"]),
        ],
        notes=notes(rows, sizes, cfg, minutes),
        config={"budget": cfg.budget, "seeds": list(cfg.seeds), **sizes},
        raw={"settings": sizes, "seeds": results, "rows": rows, "minutes": minutes, "plot": plot},
    )
    flat = [row for section in rows.values() for row in section]
    return {"markdown": md, "csv": csv_path, "json": json_path, "plot": plot, "rows": flat}


def seed_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: each seed's energy error at t = 100 (the mean over its evaluation states, float64), their median
    and range, and each seed's validation L1 on the accelerations; at small budgets the seed decides much of it."""
    out = []
    for name in results[0]["models"]:
        values = [r["models"][name]["float64"]["final"].mean for r in results]  # in seed order
        out.append({
            "model": name,
            "per_seed": ", ".join(f"{v:.3g}" for v in values),
            "median": statistics.median(values),
            "range": f"{min(values):.3g} - {max(values):.3g}",
            "val_l1": ", ".join(f"{r['models'][name]['val_l1']:.3g}" for r in results),
        })
    return out


def _pool(results: list[dict[str, Any]], get: Callable[[dict[str, Any]], Any]) -> Estimate | None:
    values = [get(r) for r in results]
    if any(v is None for v in values):
        return None
    return pooled(values)


def _maybe(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def build_rows(results: list[dict[str, Any]], sizes: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The table rows (published beside hnnlab's) from the per-seed results."""
    rtol = sizes["eval_rtol"]
    protocol = f"|E(x({sizes['t_end']:g})) - E(x0)| / 29.4, {sizes['n_test']} states"
    steps = f"{sizes['steps']} x {sizes['batch_size']}"
    main: list[dict[str, Any]] = []
    extra: list[dict[str, Any]] = []
    check: list[dict[str, Any]] = []
    models = list(results[0]["models"])  # every model of the run, in its order
    for name in models:
        if name in PUBLISHED:
            main.append({"protocol": protocol, "model": name, "source": "published", "dtype": "–",
                         "integrator": "adaptive ODE solver", "training": "paper",
                         "metric": Estimate(PUBLISHED[name])})
        for dtype in ("float64", "float32"):
            if _maybe(results[0], "models", name, dtype) is None:
                continue
            row = {
                "protocol": protocol, "model": name,
                "source": "hnnlab" if name in PUBLISHED else "hnnlab (addition)", "dtype": dtype,
                "integrator": f"dopri5 rtol=atol={rtol:g}", "training": steps,
                "metric": _pool(results, lambda r, n=name, d=dtype: r["models"][n][d]["final"]),
                "diverged": sum(r["models"][name][dtype]["diverged"] for r in results),
            }
            main.append(row)
            extra.append({
                "model": name, "source": row["source"], "dtype": dtype,
                "at_100": row["metric"],
                "max_horizon": _pool(results, lambda r, n=name, d=dtype: r["models"][n][d]["worst"]),
                "vpt": _pool(results, lambda r, n=name, d=dtype: r["models"][n][d]["vpt"]),
                "censored": sum(r["models"][name][dtype]["censored"] for r in results),
                "reached": _pool(results, lambda r, n=name, d=dtype: r["models"][n][d]["reached"]),
                "val_l1": sum(r["models"][name]["val_l1"] for r in results) / len(results),
                "zero_l1": sum(r["zero_l1"] for r in results) / len(results),
                "train_s": sum(r["models"][name]["train_seconds"] for r in results) / len(results),
                "eval_s": sum(r["models"][name][dtype]["seconds"] for r in results) / len(results),
            })
    for name in ("true system", *models):
        if name == "true system":
            at = _pool(results, lambda r: r["truth"]["eval"]["final"])
            chk = _pool(results, lambda r: r["truth"]["check"]["final"])
            evals = results[0]["truth"]["eval"]["evaluations"]
        else:
            at = _pool(results, lambda r, n=name: r["models"][n]["float64"]["final"])
            chk = _pool(results, lambda r, n=name: _maybe(r, "models", n, "check", "final"))
            evals = results[0]["models"][name]["float64"]["evaluations"]
        drift = _pool(results, lambda r, n=name: _maybe(r, "models", n, "learned_drift"))
        check.append({
            "model": name, "at_rtol": at, "at_check": chk,
            "difference": None if chk is None or at is None else abs(at.mean - chk.mean),
            "drift": drift, "evaluations": evals,
        })
    return {"main": main, "extra": extra, "check": check}


def plot_energy(results: list[dict[str, Any]], path: Path) -> Path:
    """The mean energy error over the evaluation states against time, each model and the true system through
    the evaluation integrator (first seed), with the published figures at t = 100."""
    first = results[0]
    n = len(first["truth"]["curve"])
    t = [k * first["t_end"] / (n - 1) for k in range(n)] if n > 1 else [0.0]
    styles = {"LNN": ("tab:blue", "-"), "MLP baseline": ("tab:orange", "--"), "Structured LNN": ("tab:green", "-.")}
    with figure(path, figsize=(6.4, 3.8), dpi=100) as (fig, ax):
        for name, (color, style) in styles.items():
            if name not in first["models"]:
                continue
            curve = first["models"][name]["curve"]
            ax.semilogy(t[1:], curve[1:], style, color=color, label=f"{name} (hnnlab, float64)")
            if name in PUBLISHED:
                ax.plot([t[-1]], [PUBLISHED[name]], marker="*", markersize=11, color=color, linestyle="none",
                        markeredgecolor="black", label=f"{name}, published at t = {t[-1]:g}")
        ax.semilogy(t[1:], first["truth"]["curve"][1:], ":", color="black", label="true system (integrator error)")
        ax.set_xlabel("t (time units)")
        ax.set_ylabel("mean |E(t) - E(0)| / 29.4 (dimensionless)")
        ax.set_title(f"Double pendulum: energy error over {len(first['truth']['eval']['per_state_final'])} states, "
                     f"seed {first['seed']} (a curve ends where a state diverged)", fontsize=8)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    return path


def notes(rows: dict[str, list[dict[str, Any]]], sizes: dict[str, Any], cfg: ReproduceConfig,
          minutes: float) -> list[str]:
    """The page's notes (``templates/cranmer.md``) from the table rows and the settings."""

    def metric(model: str, dtype: str = "float64") -> Estimate | None:
        for r in rows["main"]:
            if r["model"] == model and r["source"] != "published" and r["dtype"] == dtype:
                return r["metric"]
        return None

    lnn, base, structured = metric("LNN"), metric("MLP baseline"), metric("Structured LNN")
    published = {"published_lnn": PUBLISHED["LNN"], "published_baseline": PUBLISHED["MLP baseline"]}
    scale = sizes["velocity_scale"]
    # The evaluation before the one-loop rollout (settings with max_evaluations_factor) shared one dopri5 step
    # over the batch; the current one keeps a step size and a step budget per trajectory.
    steps = (NOTES("steps_shared") if "max_evaluations_factor" in sizes
             else NOTES("steps_per_trajectory", factor=sizes["max_steps_factor"]))
    lines = [
        NOTES("source", source=SOURCE, **published),
        NOTES("budget", budget=cfg.budget, steps=sizes["steps"], batch_size=sizes["batch_size"], lr=sizes["lr"],
              lr_final=sizes["lr_final"], n_states=sizes["n_states"], angles=NOTES(f"angles_{sizes['angles']}"),
              velocity=NOTES("velocity_scale", scale=scale) + " " if scale != 1 else "", minutes=minutes),
        NOTES("structured", hidden=list(sizes["structured_hidden"])),
        NOTES("data", recipe=RECIPE, n_test=sizes["n_test"], t_end=sizes["t_end"], n_times=sizes["n_times"],
              truth=NOTES("truth_dopri8" if sizes["truth"] == "dopri8" else "truth_published")),
        NOTES("integrator", steps=steps, eval_rtol=sizes["eval_rtol"], check_rtol=sizes["check_rtol"]),
        NOTES("chaos"),
    ]
    if lnn is not None and base is not None:
        short = ""
        if cfg.budget == "cpu" and lnn.mean > PUBLISHED["LNN"]:
            short = NOTES("result_short", ratio=PUBLISHED_SAMPLES / (sizes["steps"] * sizes["batch_size"]))
        lines.append(NOTES("result", lnn=lnn, baseline=base, verdict="below" if lnn.mean < base.mean else "not below",
                           short=short, **published))
    if structured is not None and not math.isnan(structured.mean):
        lines.append(NOTES("structured_result", structured=structured,
                           lnn="–" if lnn is None else format(lnn, ".2e"), **published))
    truth = next((r for r in rows["check"] if r["model"] == "true system"), None)
    for r in rows["check"]:
        if r["model"] == "true system" or truth is None or r["at_rtol"] is None or truth["at_rtol"] is None:
            continue
        if r["at_rtol"].mean < 5 * truth["at_rtol"].mean:
            finer = "" if r["at_check"] is None else NOTES(
                "near_integrator_finer", check_rtol=sizes["check_rtol"], at_check=r["at_check"],
                truth_at_check=truth["at_check"])
            lines.append(NOTES("near_integrator", model=r["model"], eval_rtol=sizes["eval_rtol"],
                               at_rtol=r["at_rtol"], truth_at_rtol=truth["at_rtol"], finer=finer))
    for r in rows["extra"]:
        if r["dtype"] == "float64" and r["val_l1"] > 0.5 * r["zero_l1"]:
            lines.append(NOTES("undertrained", model=r["model"], val_l1=r["val_l1"], zero_l1=r["zero_l1"]))
    lines.append(NOTES("vpt"))
    return lines
