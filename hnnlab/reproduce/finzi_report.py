"""Finzi et al. 2020, the results page: the paper's GMREs beside hnnlab's, every row, findings and notes from
``templates/finzi.md``, and rel(t) per task.

Its input is what :func:`hnnlab.reproduce.finzi.run` measured (``raw["tasks"]``, kept in ``finzi.json``): a
page is rendered again from that file alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hnnlab.reproduce.common import Column, Estimate, Notes, ReproduceConfig, figure, pooled, publish

TITLE = "Finzi et al. 2020: chain pendulum, geometric-mean relative error of 100-step rollouts"
SOURCE = "Finzi, Wang, Wilson 2020 (NeurIPS), chain pendulum rollout GMRE, as listed in REFERENCE.md"
# Published geometric-mean relative errors (dimensionless), per task and model. CHNN is the paper's
# constrained (Cartesian) model, not reproduced here; "floor" is their perturbed-initial-state floor.
PUBLISHED: dict[str, dict[str, float]] = {
    "1-link": {"NODE": 3.8e-4, "HNN": 1.2e-4, "CHNN": 6.1e-5, "floor": 3.6e-5},
    "2-link": {"NODE": 6.5e-2, "HNN": 1.9e-3, "CHNN": 1.2e-4, "floor": 5.9e-5},
    "3-link": {"NODE": 2.7e-1, "HNN": 4.7e-2, "CHNN": 3.4e-4, "floor": 1.1e-4},
    "5-link": {"NODE": 4.4e-1, "HNN": 3.4e-1, "CHNN": 1.1e-3, "floor": 1.5e-4},
}

NOTES = Notes("finzi")


def write_page(cfg: ReproduceConfig, raw: dict[str, Any], elapsed: float, specs: Mapping[str, Any]
               ) -> dict[str, Any]:
    """Write ``finzi.md``, ``.csv``, ``.json`` and ``finzi/rel_error.png`` to ``cfg.results`` from the raw
    numbers of a run (``raw["settings"]``, ``raw["tasks"][task]["floor" | "models"]``) of ``elapsed`` seconds;
    ``specs`` are the models' :class:`~hnnlab.reproduce.finzi.ModelSpec` by label."""
    sizes = raw["settings"]
    rows, summary, curves = tables(raw, specs)
    cartesian = any(r.get("gmre_cartesian") is not None for r in rows)  # runs before CHNN had none
    plot = plot_curves(curves, cfg.results / "finzi" / "rel_error.png")
    md, csv_path, _ = publish(
        "finzi",
        cfg,
        title=TITLE,
        sections=[
            ("Published table beside hnnlab's (GMRE on Cartesian (x, v), the paper's coordinates; lower is better)"
             if cartesian else "Published table beside hnnlab's (GMRE on (q, q_dot), lower is better)",
             _summary_columns(sizes["models"], cartesian), summary),
            ("Every row", _row_columns(cartesian), rows),
        ],
        notes=findings(summary, rows, sizes["models"], cartesian)
        + notes(sizes, elapsed, raw.get("cpu_seconds"), plot, cartesian)
        + ([NOTES("cartesian")] if cartesian else []),
        config={"budget": cfg.budget, "seeds": list(cfg.seeds), **sizes},
        raw={**raw, "rows": rows, "summary": summary, "seconds": elapsed},
    )
    return {"markdown": md, "csv": csv_path, "rows": rows, "summary": summary, "plot": plot}


def _pool(per_seed: list[dict[str, Any]], key: str) -> Any:
    values = [r[key] for r in per_seed if r.get(key) is not None]
    if not values:
        return None
    if isinstance(values[0], Estimate):
        return pooled(values)
    return sum(values) / len(values)


def tables(raw: dict[str, Any], specs: Mapping[str, Any]) -> tuple[list, list, dict]:
    """Every row, the summary (one row per task) and the rel(t) curves of the first seed, from the raw numbers."""
    sizes = raw["settings"]
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    curves: dict[str, dict[str, list[float]]] = {}
    for task, measured in raw["tasks"].items():
        floors, per_model = measured["floor"], measured["models"]
        published = PUBLISHED[task]
        task_curves: dict[str, list[float]] = {}
        for model in ("NODE", "HNN", "CHNN"):
            rows.append(_published_row(task, model, published[model], reproduced="CHNN" in sizes["models"]))
        rows.append(_published_row(task, "floor", published["floor"]))
        floor = _pool(floors, "gmre")
        rows.append({
            "task": task, "model": "true system, perturbed x0", "source": "hnnlab",
            "training": "–", "evaluation": f"dopri8 1e-12 from x0 + {sizes['perturbation']:g} N(0, I) on (q, q_dot)",
            "gmre": floor, "published": published["floor"],
        })
        floor_cartesian = _pool(floors, "gmre_cartesian")
        if floor_cartesian is not None:
            rows[-1]["gmre_cartesian"] = floor_cartesian
        task_curves["floor"] = floors[0]["curve"]
        compact: dict[str, Any] = {"task": task, "node_pub": published["NODE"], "hnn_pub": published["HNN"],
                                   "floor_pub": published["floor"], "chnn_pub": published["CHNN"], "floor": floor}
        for label in sizes["models"]:
            spec = specs[label]
            results = [r for r in per_model[label] if "failed" not in r]
            row = {
                "task": task, "model": label, "source": "hnnlab",
                "training": f"{spec.train_integrator} rollouts, "
                            f"{sizes.get('model_steps', {}).get(label, sizes['steps'])} steps, float32",
                "evaluation": f"{spec.eval_integrator} at dt, float64",
                "published": published.get(spec.published_as) if spec.published_as else None,
            }
            if not results:
                row["gmre"] = None
                row["evaluation"] = "training failed: " + per_model[label][0]["failed"][:80]
            else:
                row.update({
                    "gmre": _pool(results, "gmre"), "gmre32": _pool(results, "gmre32"),
                    "gmre_own": _pool(results, "gmre_own"), "vpt": _pool(results, "vpt"),
                    "censored": _pool(results, "censored"), "train_s": _pool(results, "seconds"),
                })
                task_curves[label] = results[0]["curve"]
            cartesian = _pool(results, "gmre_cartesian") if results else None
            if cartesian is not None:  # absent from runs made before the Cartesian coordinates were measured
                row["gmre_cartesian"] = cartesian
                compact[f"{label} (x, v)"] = cartesian
            rows.append(row)
            compact[label] = row.get("gmre")
        if floor_cartesian is not None:
            compact["floor (x, v)"] = floor_cartesian
        summary.append(compact)
        curves[task] = task_curves
    return rows, summary, curves


def findings(summary: list[dict[str, Any]], rows: list[dict[str, Any]], models: tuple[str, ...],
             cartesian: bool = False) -> list[str]:
    """What the numbers show, written from the numbers (so that the text cannot contradict the table). With
    ``cartesian`` every comparison uses the GMRE on Cartesian ``(x, v)``, the paper's coordinates."""
    lines = []

    def head(s: dict[str, Any], label: str) -> float:
        return _value(s.get(f"{label} (x, v)") if cartesian else s.get(label))

    for label, key in (("NODE", "node_pub"), ("HNN", "hnn_pub"), ("CHNN", "chnn_pub")):
        if label not in models:
            continue
        parts = [f"{s['task']} {head(s, label):.2g} vs {s[key]:.2g} ({_ratio_word(head(s, label) / s[key])})"
                 for s in summary]
        lower = any(head(s, label) < s[key] for s in summary)
        caveat = NOTES("caveat_lower_cartesian" if cartesian else "caveat_lower")
        lines.append(NOTES("finding_published", model=label, per_task="; ".join(parts),
                           caveat=" " + caveat if lower else ""))
    if "CHNN" in models:
        parts = []
        for s in summary:
            others = ", ".join(f"{m} / CHNN {head(s, m) / head(s, 'CHNN'):.3g}x" for m in ("HNN", "NODE", "CLNN")
                               if m in models)
            floor = head(s, "floor")
            parts.append(f"{s['task']}: CHNN / published CHNN {head(s, 'CHNN') / s['chnn_pub']:.2f}x, {others}, "
                         f"CHNN / floor {head(s, 'CHNN') / floor:.2f}x")
        lines.append(NOTES("finding_chnn", per_task="; ".join(parts)))
    if "NODE" in models and "HNN" in models:
        wins = [s["task"] for s in summary if head(s, "HNN") < head(s, "NODE")]
        losses = [s["task"] for s in summary if not head(s, "HNN") < head(s, "NODE")]
        lines.append(NOTES("finding_hnn_vs_node", wins=", ".join(wins) or "no task",
                           losses=", ".join(losses) or "no task"))
    for label, base in (("SecondOrderNODE", "NODE"), ("HNN-midpoint", "HNN")):
        if label in models and base in models:
            parts = [f"{s['task']} x{head(s, label) / head(s, base):.2f}" for s in summary]
            lines.append(NOTES("finding_addition", model=label, base=base, per_task="; ".join(parts)))
    best = []
    for s in summary:
        scored = [(m, head(s, m)) for m in models if not math.isnan(head(s, m))]
        if scored:
            m, v = min(scored, key=lambda mv: mv[1])
            published = min(s["node_pub"], s["hnn_pub"], s["chnn_pub"])
            best.append(f"{s['task']} {m} ({v:.2g}; the paper's best model: {published:.2g})")
    if best:
        lines.append(NOTES("finding_best", per_task="; ".join(best)))
    gaps = [abs(_value(r["gmre32"]) / _value(r["gmre"]) - 1) for r in rows
            if r["source"] == "hnnlab" and r.get("gmre32") is not None and r.get("gmre") is not None]
    if gaps:
        lines.append(NOTES("finding_float32", percent=100 * max(gaps)))
    floors = [f"{s['task']} {head(s, 'floor'):.2g} vs {s['floor_pub']:.2g}" for s in summary]
    lines.append(NOTES("finding_floor", per_task="; ".join(floors)))
    return lines


def _value(x: Any) -> float:
    if isinstance(x, Estimate):
        return x.mean
    return math.nan if x is None else float(x)


def _ratio_word(ratio: float) -> str:
    if math.isnan(ratio):
        return "not measured"
    return f"{ratio:.2g}x the published, {'lower' if ratio < 1 else 'higher'}"


def _published_row(task: str, model: str, value: float, reproduced: bool = False) -> dict[str, Any]:
    what = {"CHNN": "CHNN (constrained, Cartesian)" if reproduced else "CHNN (constrained, Cartesian; not reproduced)",
            "floor": "true system, perturbed x0 (paper's floor)"}.get(model, model)
    return {"task": task, "model": what, "source": "published", "training": "paper",
            "evaluation": "paper (Cartesian coordinates)", "gmre": value, "published": value}


def _summary_columns(models: tuple[str, ...], cartesian: bool = False) -> list[Column]:
    # With ``cartesian`` the hnnlab columns are the GMRE on the bodies' (x, v), the paper's coordinates (every
    # model's rollout mapped there); the (q, q_dot) values are in the table of every row.
    def key(label: str) -> str:
        return f"{label} (x, v)" if cartesian else label

    cols = [Column("task", "task"), Column("node_pub", "NODE, published", ".1e")]
    if "NODE" in models:
        cols.append(Column(key("NODE"), "NODE, hnnlab"))
    cols.append(Column("hnn_pub", "HNN, published", ".1e"))
    if "HNN" in models:
        cols.append(Column(key("HNN"), "HNN, hnnlab"))
    if "CHNN" in models:
        cols += [Column("chnn_pub", "CHNN, published", ".1e"), Column(key("CHNN"), "CHNN, hnnlab")]
    else:
        cols.append(Column("chnn_pub", "CHNN, published (not reproduced)", ".1e"))
    cols += [Column(key(m), f"{m}, hnnlab (addition)") for m in models if m not in ("NODE", "HNN", "CHNN")]
    cols += [Column("floor_pub", "floor, published", ".1e"), Column(key("floor"), "floor, hnnlab")]
    return cols


def _row_columns(cartesian: bool = False) -> list[Column]:
    return [
        Column("task", "task"), Column("model", "model"), Column("source", "source"),
        Column("training", "training"), Column("evaluation", "evaluation"),
        Column("gmre", "GMRE (q, q_dot)"), Column("published", "published GMRE", ".1e"),
        *([Column("gmre_cartesian", "GMRE on Cartesian (x, v) (the paper's coordinates)")] if cartesian else []),
        Column("gmre32", "GMRE, float32 evaluation"), Column("gmre_own", "GMRE (q, p), own coordinates"),
        Column("vpt", "VPT (time units)", ".3f"), Column("censored", "VPT censored at T = 3", ".2f"),
        Column("train_s", "train s", ".0f"),
    ]


STYLES = {"floor": ("black", ":"), "NODE": ("tab:orange", "-"), "SecondOrderNODE": ("tab:red", "--"),
          "HNN": ("tab:green", "-"), "HNN-midpoint": ("tab:purple", "--"), "LNN": ("tab:brown", "-."),
          "CHNN": ("tab:blue", "-"), "CLNN": ("tab:cyan", "--")}
LABELS = {"floor": "true system, perturbed x0 (floor)"}


def plot_curves(curves: dict[str, dict[str, list[float]]], path: Path, dt: float = 0.03) -> Path | None:
    """rel(t) of every model and the floor on angle coordinates (q, q_dot), geometric mean over the test
    trajectories, one panel per task (log scale; t = 0, where every rollout starts on the truth, is left out)."""
    if not curves:
        return None
    with figure(path, 1, len(curves), figsize=(4.2 * len(curves), 3.4), dpi=100, squeeze=False) as (fig, axes):
        for ax, (task, series) in zip(axes[0], curves.items(), strict=True):
            for label, curve in series.items():
                t = [dt * k for k in range(1, len(curve))]
                color, style = STYLES.get(label, (None, "-"))
                ax.semilogy(t, curve[1:], label=LABELS.get(label, label), lw=1.3, ls=style, color=color)
            ax.set_title(task, fontsize=9)
            ax.set_xlabel(f"t (time units; {len(curve) - 1} steps of dt = {dt:g})", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, which="major", alpha=0.3)
        axes[0][0].set_ylabel("rel(t) on (q, q_dot), geometric mean over test", fontsize=8)
        axes[0][0].legend(fontsize=7)
        fig.suptitle("Finzi et al. 2020 chain pendulum: relative error of the rollouts (lower is better)", fontsize=9)
    return path


def notes(sizes: dict[str, Any], elapsed: float, cpu_seconds: float | None, plot: Path | None,
          cartesian: bool = False) -> list[str]:
    """The page's notes (``templates/finzi.md``) for these settings and run time."""
    hidden = sizes["hidden"]
    return [
        NOTES("source", source=SOURCE) + ("" if "CHNN" in sizes["models"] else " " + NOTES("chnn_not_reproduced")),
        NOTES("metric"),
        NOTES("coordinates_cartesian" if cartesian else "coordinates"),
        NOTES("training", window=sizes["window"], lr=sizes["lr"], weight_decay=sizes["weight_decay"],
              steps=sizes["steps"], batch_size=sizes["batch_size"], depth=len(hidden), width=hidden[0],
              activation=sizes["activation"]),
        NOTES("budget", steps=sizes["steps"], exceptions="".join(
            f", {label} {n}" for label, n in sizes.get("model_steps", {}).items())),
        NOTES("evaluation", midpoint_tol=sizes["midpoint_tol"]),
        NOTES("truth"),
        NOTES("floor", perturbation=sizes["perturbation"]),
        NOTES("additions", vpt_threshold=sizes["vpt_threshold"]),
        NOTES("run_time", minutes=elapsed / 60,
              cpu="" if cpu_seconds is None else NOTES("cpu_time", minutes=cpu_seconds / 60),
              plot="" if plot is None else " " + NOTES("plot", path=plot.as_posix())),
    ]
