"""The chaos benchmark's results page: one row per task and model, and the prediction-time distributions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from hnnlab.reproduce.common import Column, ReproduceConfig, figure, median_interval, publish

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
            entries = [("floor (true system, perturbed x0)", res["floor"], None)]
            entries += [(label, r, r.get("l1_model")) for label, r in res["models"].items()]
            for label, r, l1_model in entries:
                row: dict[str, Any] = {"task": task, "seed": seed, "model": label, "l1_true": l1,
                                       "chaotic_fraction": res["chaotic_fraction"]}
                if "failed" in r:
                    row["note"] = "failed: " + r["failed"][:60]
                    out.append(row)
                    continue
                med, lo, hi = _cell(r["vpt"], l1, sizes, seed)
                row.update({"vpt_lyap": med, "vpt_lo": lo, "vpt_hi": hi, "censored": r["censored"]})
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
    Column("vpt_hi", "95% hi", ".3g"), Column("censored", "censored", ".2f"),
    Column("energy", "mean abs energy error (median)", ".2e"), Column("energy_lo", "95% lo", ".2e"),
    Column("energy_hi", "95% hi", ".2e"), Column("l1_model", "model l1 (median)", ".3g"), Column("note", "note"),
]


def plot(raw: dict[str, Any], path: Path) -> Path:
    """Box plots of the prediction time in Lyapunov times, one panel per task (first seed)."""
    tasks = list(raw["tasks"])
    with figure(path, 1, len(tasks), figsize=(4.2 * len(tasks), 4.2), squeeze=False) as (_, axes):
        for ax, task in zip(axes[0], tasks, strict=True):
            res = raw["tasks"][task][0]
            labels, data = ["floor"], [torch.as_tensor(res["floor"]["vpt"]).double() * res["l1"]]
            for label, r in res["models"].items():
                if "failed" not in r:
                    labels.append(label)
                    data.append(torch.as_tensor(r["vpt"]).double() * res["l1"])
            ax.boxplot([d.numpy() for d in data], orientation="horizontal")
            ax.set_yticks(range(1, len(labels) + 1), labels)
            ax.set_xscale("symlog", linthresh=0.1)
            ax.set_xlabel("valid prediction time (Lyapunov times)")
            ax.set_title(f"{task} (l1 = {res['l1']:.3g})")
    return path


def write_page(cfg: ReproduceConfig, raw: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """Write ``chaos.md``, ``.csv``, ``.json`` and ``chaos/prediction_time.png`` to ``cfg.results``."""
    sizes = raw["settings"]
    table = rows(raw)
    figure_path = plot(raw, cfg.results / "chaos" / "prediction_time.png")
    notes = [
        f"Budget {cfg.budget!r} with settings as listed; {elapsed:.0f} s wall, "
        f"{raw.get('cpu_seconds', math.nan):.0f} s CPU.",
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
        sections=[("Every row", COLUMNS, table)], notes=notes,
        config={"budget": cfg.budget, "seeds": list(cfg.seeds), **sizes},
    )
    return {"markdown": md, "csv": csv_path, "json": json_path, "rows": table, "plot": figure_path}
