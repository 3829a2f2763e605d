"""The chaos benchmark's results page: one row per task and model, and the prediction-time distributions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from hnnlab.reproduce.chaos import chaotic_states
from hnnlab.reproduce.common import Column, ReproduceConfig, figure, median_interval, publish, summed_seconds

TITLE = "Chaos benchmark: valid prediction time in Lyapunov times (issue 14)"


def _cell(values: Any, scale: float, sizes: dict[str, Any], seed: int) -> tuple[float, float, float]:
    x = torch.as_tensor(values, dtype=torch.float64) * scale
    return median_interval(x, n_boot=sizes["bootstrap"], generator=torch.Generator().manual_seed(seed))


def rows(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task, seed and model (and the perturbed floor), from the raw numbers."""
    sizes = raw["settings"]
    out: list[dict[str, Any]] = []
    for task, per_seed in raw["tasks"].items():
        for seed, res in zip(raw["seeds"], per_seed, strict=True):
            l1 = res["l1"]
            chaotic = chaotic_states(res["l1_true"], res["averaging_time"])
            entries = [("floor (true system, perturbed x0)", res["floor"], None)]
            entries += [(label, r, r.get("l1_model")) for label, r in res["models"].items()]
            for label, r, l1_model in entries:
                row: dict[str, Any] = {"task": task, "seed": seed, "model": label, "l1_true": l1,
                                       "chaotic_fraction": res["chaotic_fraction"]}
                if "failed" in r:
                    row["note"] = "failed: " + r["failed"].split(";")[0]
                    out.append(row)
                    continue
                med, lo, hi = _cell(r["vpt"], l1, sizes, seed)
                row.update({"vpt_lyap": med, "vpt_lo": lo, "vpt_hi": hi, "censored": r["censored"]})
                if bool(chaotic.any()) and not bool(chaotic.all()):
                    row["vpt_chaotic"] = float(torch.as_tensor(r["vpt"], dtype=torch.float64)[chaotic].median()) * l1
                emed, elo, ehi = _cell(r["energy"], 1.0, sizes, seed)
                row.update({"energy": emed, "energy_lo": elo, "energy_hi": ehi})
                if l1_model is not None:
                    row["l1_model"] = float(torch.as_tensor(l1_model, dtype=torch.float64).nanquantile(0.5))
                out.append(row)
    return out


COLUMNS = [
    Column("task", "task"), Column("seed", "seed"), Column("model", "model"),
    Column("l1_true", "true l1", ".3g"), Column("chaotic_fraction", "chaotic states", ".2f"),
    Column("vpt_lyap", "VPT (Lyapunov times, median)", ".3g"), Column("vpt_lo", "95% lo", ".3g"),
    Column("vpt_hi", "95% hi", ".3g"), Column("vpt_chaotic", "VPT on the chaotic states (median)", ".3g"),
    Column("censored", "censored", ".2f"),
    Column("energy", "mean abs energy error (median)", ".2e"), Column("energy_lo", "95% lo", ".2e"),
    Column("energy_hi", "95% hi", ".2e"), Column("l1_model", "model l1 (median)", ".3g"), Column("note", "note"),
]


def headline(table: list[dict[str, Any]]) -> tuple[list[Column], list[dict[str, Any]]]:
    """Median VPT in Lyapunov times with its 95 % interval, one row per model, one column per task (first seed)."""
    tasks = list(dict.fromkeys(r["task"] for r in table))
    first = {task: next(r["seed"] for r in table if r["task"] == task) for task in tasks}
    models = list(dict.fromkeys(r["model"] for r in table))
    columns = [Column("model", "model"), *[Column(task, task) for task in tasks]]
    out = []
    for model in models:
        row: dict[str, Any] = {"model": model}
        for task in tasks:
            r = next((r for r in table if r["task"] == task and r["seed"] == first[task] and r["model"] == model), None)
            if r is None:
                row[task] = "n/a"
            elif "vpt_lyap" not in r:
                row[task] = "failed (see every row)" if "note" in r else "–"
            elif r["censored"] >= 0.5:  # the median is the horizon: the forecast outlasted the test trajectories
                row[task] = f">= {r['vpt_lyap']:.2f} (the horizon; {r['censored']:.0%} censored)"
            else:
                row[task] = f"{r['vpt_lyap']:.2f} ({r['vpt_lo']:.2f}-{r['vpt_hi']:.2f})"
        out.append(row)
    out.append({"model": "true l1 (chaotic states)",
                **{task: next(f"{r['l1_true']:.3g} ({r['chaotic_fraction']:.0%})" for r in table if r["task"] == task)
                   for task in tasks}})
    return columns, out


def plot(raw: dict[str, Any], path: Path) -> Path:
    """Box plots of the prediction time in Lyapunov times, one panel per task (first seed), log axis from one step
    to past the horizon (a forecast that never left the threshold is drawn at the horizon, dashed line)."""
    tasks = list(raw["tasks"])
    with figure(path, 1, len(tasks), figsize=(4.3 * len(tasks), 4.6), squeeze=False) as (fig, axes):
        for ax, task in zip(axes[0], tasks, strict=True):
            res = raw["tasks"][task][0]
            l1, step = res["l1"], res["dt"] * res["l1"]
            labels, data = ["floor (perturbed x0)"], [torch.as_tensor(res["floor"]["vpt"]).double() * l1]
            for label, r in res["models"].items():
                if "failed" not in r:
                    labels.append(label)
                    data.append(torch.as_tensor(r["vpt"]).double() * l1)
            ax.boxplot([d.clamp(min=step).numpy() for d in data], orientation="horizontal", widths=0.6)
            ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
            horizon = res["horizon"] * l1
            ax.axvline(horizon, color="gray", linestyle="--", linewidth=1)
            ax.set_xscale("log")
            ax.set_xlim(step / 1.5, horizon * 1.5)
            ax.set_xlabel("valid prediction time (Lyapunov times)", fontsize=8)
            ax.set_title(f"{task}: l1 = {l1:.3g}, {res['chaotic_fraction']:.0%} of states chaotic", fontsize=9)
        fig.suptitle("Valid prediction time over the test states (box: quartiles and median; whiskers: 1.5 IQR; "
                     "dashed: the horizon; left edge: one step)", fontsize=9)
    return path


def write_page(cfg: ReproduceConfig, raw: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """Write ``chaos.md``, ``.csv``, ``.json`` and ``chaos/prediction_time.png`` to ``cfg.results``."""
    sizes = raw["settings"]
    table = rows(raw)
    figure_path = plot(raw, cfg.results / "chaos" / "prediction_time.png")
    model_minutes = summed_seconds([res["models"] for per_seed in raw["tasks"].values() for res in per_seed],
                                   ("train_s", "eval_s")) / 60
    notes = [
        f"Budget {cfg.budget!r} with settings as listed. Training and evaluation of the models, summed (a model "
        f"saved by an earlier run counts with its own time): {model_minutes:.0f} min; the run that wrote this "
        f"page: {elapsed:.0f} s wall, {raw.get('cpu_seconds', math.nan):.0f} s CPU.",
        "VPT: first time the normalised squared error exceeds the threshold, times the task's l1 (median finite-time "
        "l1 of the true system over the chaotic test states); the interval is a 95 % percentile bootstrap of the "
        "median over the test states. Censored: fraction that never crossed within the horizon.",
        "Energy error: |E(x(t)) - E(x(0))| of the true energy at the predicted states, averaged over the horizon "
        "(inf for a forecast that turned non-finite).",
        "Model l1: finite-time largest exponent of the learned field's own discrete flow (its rollout integrator) "
        f"over {sizes['model_lyapunov_steps']} steps from {sizes['model_lyapunov_states']} test states: short, so "
        "noisy. The ESN has none (a discrete map on standardised states, not a vector field).",
        f"Plot: {figure_path}.",
    ]
    md, csv_path, json_path = publish(
        "chaos", cfg, raw={**raw, "rows": table, "seconds": elapsed}, title=TITLE,
        sections=[("Valid prediction time in Lyapunov times: median (95 % interval)", *headline(table)),
                  ("Every row", COLUMNS, table)], notes=notes,
        config={"budget": cfg.budget, "seeds": list(cfg.seeds), **sizes},
    )
    return {"markdown": md, "csv": csv_path, "json": json_path, "rows": table, "plot": figure_path}
