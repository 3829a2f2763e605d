"""Open systems, the results page: per task, test input family and model, the median and the min-max over seeds of
every measure, findings computed from the numbers, phlearn's published setup beside hnnlab's, and the plot of the
learned against the true force and damping.

Its input is what :func:`hnnlab.reproduce.open_systems.run` measured (``raw["rows"]``, ``raw["forces"]``, kept in
``open_systems.json``): a page is rendered again from that file alone.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from hnnlab.reproduce.common import Column, Notes, ReproduceConfig, command_line, figure, save_raw, write_results

NAME = "open_systems"  # the files benchmarks/results/open_systems.*
COMMAND = "open-systems"  # hnnlab reproduce open-systems
TITLE = "Open systems: port-Hamiltonian network vs NODE(x, t, u) vs DissipativeHNN on driven, damped systems"
MEASURES = ("balance_residual", "damping", "train_seconds")
NOTES = Notes("open_systems")


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of ``values`` (NaN for none; a NaN value makes all three NaN: a failed seed is shown)."""
    if not values or any(math.isnan(v) for v in values):
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": len(values)}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarise(rows: list[dict[str, Any]], error_times: tuple[float, ...]) -> list[dict[str, Any]]:
    """One row per (task, test inputs, model), in the order first seen: every measure's :func:`spread` over seeds."""
    keys = [f"rmse_t{t:g}" for t in error_times] + list(MEASURES)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["test_inputs"], row["model"]), []).append(row)
    out = []
    for (task, inputs, model), members in groups.items():
        entry: dict[str, Any] = {"task": task, "test_inputs": inputs, "model": model,
                                 "seeds": [r["seed"] for r in members], "damping_true": members[0]["damping_true"]}
        for key in keys:
            entry[key] = spread([float(r[key]) for r in members])
        out.append(entry)
    return out


def cell(s: dict[str, float], fmt: str = ".3g") -> str:
    """``median [min, max]`` (the value alone for one seed, ``–`` for NaN)."""
    if math.isnan(s["median"]):
        return "–"
    if s["n"] == 1 or s["min"] == s["max"]:
        return format(s["median"], fmt)
    return f"{s['median']:{fmt}} [{s['min']:{fmt}}, {s['max']:{fmt}}]"


def table_rows(summary: list[dict[str, Any]], error_times: tuple[float, ...],
               forces: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The page's table: strings per column."""
    out = []
    for s in summary:
        row = {"task": s["task"], "test_inputs": s["test_inputs"], "model": s["model"]}
        for t in error_times:
            row[f"rmse_t{t:g}"] = cell(s[f"rmse_t{t:g}"])
        row["balance_residual"] = cell(s["balance_residual"])
        row["damping"] = f"{cell(s['damping'], '.4f')} ({s['damping_true']:.4f})"
        force = forces.get(s["task"])
        row["force_error"] = cell(spread([f["relative_rms_error"] for f in force.values()]), ".1%") \
            if force and s["model"] == "phnn" else "–"
        row["train_seconds"] = cell(s["train_seconds"], ".0f")
        out.append(row)
    return out


def columns(error_times: tuple[float, ...]) -> list[Column]:
    return [Column("task", "system"), Column("test_inputs", "test inputs"), Column("model", "model"),
            *(Column(f"rmse_t{t:g}", f"RMS state error, t = {t:g}") for t in error_times),
            Column("balance_residual", "energy-balance residual (median over trajectories)"),
            Column("damping", "recovered damping (true)"), Column("force_error", "PHNN force error (RMS, relative)"),
            Column("train_seconds", "train s")]


def seed_columns(error_times: tuple[float, ...]) -> list[Column]:
    return [Column("task", "system"), Column("test_inputs", "test inputs"), Column("model", "model"),
            Column("seed", "seed"), *(Column(f"rmse_t{t:g}", f"RMS, t = {t:g}", ".3g") for t in error_times),
            Column("balance_residual", "balance residual", ".3g"), Column("damping", "damping", ".4f"),
            Column("damping_true", "true", ".4f"), Column("train_seconds", "train s", ".0f")]


# -- findings ----------------------------------------------------------------------------------------


def _median(summary: list[dict[str, Any]], task: str, inputs: str, model: str, key: str) -> float:
    for s in summary:
        if (s["task"], s["test_inputs"], s["model"]) == (task, inputs, model):
            return s[key]["median"]
    return math.nan


def findings(summary: list[dict[str, Any]], sizes: dict[str, Any]) -> list[str]:
    """What the numbers show, computed from them (so that the text cannot contradict the table)."""
    last = f"rmse_t{sizes['error_times'][-1]:g}"
    cases = list(dict.fromkeys((s["task"], s["test_inputs"]) for s in summary))
    lines = []
    models = sizes["models"]
    if "phnn" in models and "node" in models:
        phnn_wins, node_wins = [], []
        for task, inputs in cases:
            p, n = (_median(summary, task, inputs, m, last) for m in ("phnn", "node"))
            label = f"{task} [{inputs}] {p:.3g} vs {n:.3g}"
            (phnn_wins if p < n else node_wins).append(label)
        lines.append(NOTES("finding_phnn_vs_node", time=sizes["error_times"][-1],
                           phnn=", ".join(phnn_wins) or "none", node=", ".join(node_wins) or "none"))
        balance = [f"{task} [{inputs}] {_median(summary, task, inputs, 'phnn', 'balance_residual'):.3g} vs "
                   f"{_median(summary, task, inputs, 'node', 'balance_residual'):.3g}" for task, inputs in cases]
        lines.append(NOTES("finding_balance", per_case="; ".join(balance)))
    if "dhnn" in models:
        parts, worse = [], 0
        for task, inputs in cases:
            damping = _median(summary, task, inputs, "dhnn", "damping")
            truth = next(s["damping_true"] for s in summary if s["task"] == task)
            rms = _median(summary, task, inputs, "dhnn", last)
            worse += bool(rms > _median(summary, task, inputs, "phnn", last)) if "phnn" in models else 0
            parts.append(f"{task} [{inputs}] RMS {rms:.3g}, damping {damping:.3g} (true {truth:.3g})")
        lines.append(NOTES("finding_dhnn", per_case="; ".join(parts), worse=worse, total=len(cases)))
    unseen = [(t, i) for t, i in cases if "unseen" in i]
    for task, inputs in unseen:
        seen = next(i for t, i in cases if t == task and i != inputs)
        parts = [f"{m} {_median(summary, task, seen, m, last):.3g} -> {_median(summary, task, inputs, m, last):.3g}"
                 for m in models]
        lines.append(NOTES("finding_unseen", task=task, seen=seen, unseen=inputs, time=sizes["error_times"][-1],
                           per_model=", ".join(parts)))
    if "phnn" in models:
        parts = []
        for task in dict.fromkeys(s["task"] for s in summary):
            inputs = next(i for t, i in cases if t == task)
            s = next(x for x in summary if (x["task"], x["test_inputs"], x["model"]) == (task, inputs, "phnn"))
            rel = [abs(v - s["damping_true"]) / s["damping_true"] for v in (s["damping"]["min"], s["damping"]["max"])]
            parts.append(f"{task} {s['damping']['median']:.4f} (true {s['damping_true']:.4f}, worst seed "
                         f"{max(rel):.1%} off)")
        lines.append(NOTES("finding_damping", per_task="; ".join(parts)))
    return lines


# -- the plot ----------------------------------------------------------------------------------------


def plot(summary: list[dict[str, Any]], rows: list[dict[str, Any]], forces: dict[str, dict[str, Any]],
         path: Path) -> Path:
    """One panel per forced task: the PHNN's learned force (first seed, minus the constant a potential absorbs)
    against the true one; a last panel: every model's recovered damping over the true one, per task and seed."""
    tasks = list(forces)
    with figure(path, 1, len(tasks) + 1, figsize=(4.6 * (len(tasks) + 1), 3.6), squeeze=False, dpi=110) as (_, axes):
        for ax, task in zip(axes[0], tasks, strict=False):
            seed = sorted(forces[task], key=int)[0]
            c = forces[task][seed]
            ax.plot(c["t"], c["true"], color="black", lw=2, label="true F(t)")
            ax.plot(c["t"], c["learned"], color="tab:red", ls="--", lw=1.5, label="PHNN f(t) - offset")
            ax.set_title(f"{task} (seed {seed}): force error {c['relative_rms_error']:.1%}", fontsize=9)
            ax.set_xlabel("t (the system's time unit)")
            ax.set_ylabel("force on p")
            ax.legend(loc="lower left", fontsize=7)
        ax = axes[0][-1]
        names = list(dict.fromkeys(r["task"] for r in rows))
        models = [m for m in dict.fromkeys(r["model"] for r in rows) if m != "true system"]
        colours = {"phnn": "tab:red", "node": "tab:blue", "dhnn": "tab:green"}
        for j, model in enumerate(models):
            for i, task in enumerate(names):
                first = next(r["test_inputs"] for r in rows if r["task"] == task)
                values = [r["damping"] / r["damping_true"] for r in rows
                          if (r["task"], r["test_inputs"], r["model"]) == (task, first, model)]
                ax.scatter([i + 0.2 * (j - 1)] * len(values), values, color=colours.get(model, "gray"), s=18,
                           label=model if i == 0 else None)
        ax.axhline(1.0, color="black", lw=1, label="true")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.replace("_", "\n") for n in names], fontsize=7)
        ax.set_ylabel("recovered damping / true (one point per seed)")
        ax.set_title("damping recovered by each model", fontsize=9)
        ax.legend(fontsize=7)
    return path


# -- the page ----------------------------------------------------------------------------------------


def write_page(cfg: ReproduceConfig, raw: dict[str, Any]) -> dict[str, Any]:
    """Write ``open_systems.md``, ``.csv``, ``.json`` and ``open_systems/force_damping.png`` to ``cfg.results`` from
    the raw numbers of a run."""
    sizes = raw["settings"]
    error_times = tuple(sizes["error_times"])
    summary = summarise(raw["rows"], error_times)
    figure_path = plot(summary, raw["rows"], raw["forces"], cfg.results / NAME / "force_damping.png")
    notes = findings(summary, sizes)
    notes.append(NOTES("phlearn", n_traj=sizes["n_traj"]))
    notes.append(NOTES("setup", n_traj=sizes["n_traj"], n_test=sizes["n_test"], steps=sizes["steps"],
                       hidden=list(sizes["hidden"]), lr=sizes["lr"], substeps=sizes["substeps"],
                       training="derivative matching" if sizes.get("loss", "derivative") == "derivative"
                       else f"rk4 rollout windows of {sizes['window']} saved steps, driven by their own inputs",
                       seeds=", ".join(map(str, raw["seeds"])), minutes=raw["seconds"] / 60,
                       cpu_minutes=raw.get("cpu_seconds", math.nan) / 60, plot=f"{NAME}/{figure_path.name}"))
    md, csv_path = write_results(
        cfg.results / NAME, title=TITLE, command=command_line(COMMAND, cfg),
        sections=[("Median [min, max] over seeds, per system, test input family and model",
                   columns(error_times), table_rows(summary, error_times, raw["forces"])),
                  ("Every seed", seed_columns(error_times), raw["rows"])],
        notes=notes,
        config={"budget": cfg.budget, "seeds": list(raw["seeds"]), **sizes},
    )
    save_raw(cfg.results / f"{NAME}.json", {**raw, "summary": summary})
    return {"markdown": md, "csv": csv_path, "summary": summary, "plot": figure_path}
