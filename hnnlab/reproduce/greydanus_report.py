"""Greydanus et al. 2019, the results page: the paper's table with hnnlab's rows, published against corrected
energy protocol, the long rollouts, notes from ``templates/greydanus.md`` and a bar plot. Input: the raw numbers
``raw[task][seed][model]`` of :func:`hnnlab.reproduce.greydanus.run`, saved as ``greydanus.json``; writing the
page from that file again needs no training."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hnnlab.reproduce.common import Column, Estimate, Notes, ReproduceConfig, figure, pooled, publish, summed_seconds

SOURCE = "Greydanus, Dzamba, Yosinski 2019, Hamiltonian Neural Networks, Table (github.com/greydanus/hamiltonian-nn)"
TITLE = "Greydanus et al. 2019: Hamiltonian Neural Networks, reproduced"

# (mean, standard error) from the paper's table: test loss and energy MSE, baseline and HNN.
PUBLISHED: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "spring": {"baseline": {"test_loss": (3.6656e-02, 1.87e-03), "energy_mse": (1.7077e-01, 2.06e-02)},
               "HNN": {"test_loss": (3.5928e-02, 1.83e-03), "energy_mse": (3.8416e-04, 6.53e-05)}},
    "pendulum": {"baseline": {"test_loss": (3.5273e-02, 1.80e-03), "energy_mse": (4.1519e-02, 9.62e-03)},
                 "HNN": {"test_loss": (3.5586e-02, 1.82e-03), "energy_mse": (2.4852e-02, 5.42e-03)}},
    "2body": {"baseline": {"test_loss": (2.9575e-05, 8.89e-07), "energy_mse": (6.3276e-02, 3.36e-02)},
              "HNN": {"test_loss": (2.8218e-06, 4.20e-08), "energy_mse": (3.8751e-05, 5.04e-06)}},
    "3body": {"baseline": {"test_loss": (3.8000e-01, 4.16e-01), "energy_mse": (1.0906e02, 7.74e01)},
              "HNN": {"test_loss": (4.8809e-01, 4.77e-01), "energy_mse": (4.1926e-02, 3.39e-02)}},
}
PUBLISHED_MODELS = ("baseline", "HNN")

TABLE_COLUMNS = [
    Column("task", "task"), Column("model", "model"), Column("source", "source"),
    Column("test_loss", "test loss"), Column("energy_mse", "energy MSE"),
]
PROTOCOL_COLUMNS = [
    Column("task", "task"), Column("model", "model"), Column("energy_published", "published protocol"),
    Column("energy_corrected", "corrected protocol"), Column("ratio", "published / corrected", ".2f"),
]
LONG_COLUMNS = [
    Column("task", "task"), Column("model", "model"), Column("integrator", "evaluation"),
    Column("horizon", "horizon", ".0f"), Column("energy_corrected", "energy MSE (corrected)"),
    Column("max_energy_error", "max |dE|/E0"), Column("verdict", "energy"), Column("vpt", "VPT (mean)", ".2f"),
]
SEED_COLUMNS = [
    Column("task", "task"), Column("model", "model"), Column("published", "published mean"),
    Column("per_seed", "hnnlab mean per seed"), Column("seed_median", "median over seeds"),
    Column("traj_median", "median over all trajectories"), Column("traj_interval", "95 % interval of that median"),
    Column("top_share", "largest trajectory's share of its seed's mean (median)", ".0%"),
    Column("test_loss", "test loss, median over seeds"),
]
NOTES = Notes("greydanus")


def write_page(raw: dict[str, dict[int, Any]], cfg: ReproduceConfig, budget: dict[str, Any], seconds: float
               ) -> dict[str, Any]:
    """Write ``greydanus.md``, ``.csv``, ``.json`` and ``greydanus/energy_mse.png`` to ``cfg.results`` from the
    raw numbers ``raw[task][seed][model]`` of a run of ``seconds``."""
    table, protocol_rows, long_rows = rows(raw)
    md, csv_path, _ = publish(
        "greydanus",
        cfg,
        title=TITLE,
        config={"budget": cfg.budget, "seeds": list(cfg.seeds), "tasks": list(raw), **budget},
        sections=[
            ("Published table beside hnnlab (published protocol, quirks included)", TABLE_COLUMNS, table),
            *([("Energy MSE over seeds: median and robust interval (published protocol)", SEED_COLUMNS,
                seed_rows(raw))] if len(cfg.seeds) > 1 else []),
            ("Energy MSE: published protocol against the corrected one (same trained models)", PROTOCOL_COLUMNS,
             protocol_rows),
            ("Beyond the paper: long float64 rollouts, symplectic integrators, separable models", LONG_COLUMNS,
             long_rows),
        ],
        notes=notes(cfg, budget, seconds, summed_seconds(raw, ("train_seconds",))),
        raw={"source": SOURCE, "config": {"budget": cfg.budget, "seeds": cfg.seeds}, "results": raw},
    )
    plot = plot_table(table, cfg.results / "greydanus" / "energy_mse.png")
    return {"markdown": md, "csv": csv_path, "plot": plot, "rows": table + protocol_rows + long_rows}


def rows(raw: dict[str, dict[int, Any]]) -> tuple[list, list, list]:
    """The rows of the three tables (published beside hnnlab; the two protocols; the long rollouts)."""
    table, protocol_rows, long_rows = [], [], []
    for task_name, by_seed in raw.items():
        seeds = list(by_seed)
        models = list(by_seed[seeds[0]])
        for name in models:
            entries = [by_seed[s][name] for s in seeds]
            tl = pooled([e["test_loss"]["estimate"] for e in entries])
            ep = pooled([e["energy_published"]["estimate"] for e in entries])
            ec = pooled([e["energy_corrected"]["estimate"] for e in entries])
            if name in PUBLISHED_MODELS:
                pub = PUBLISHED[task_name][name]
                table.append({"task": task_name, "model": name, "source": "published",
                              "test_loss": Estimate(*pub["test_loss"]), "energy_mse": Estimate(*pub["energy_mse"])})
            table.append({"task": task_name, "model": name, "source": "hnnlab", "test_loss": tl, "energy_mse": ep})
            ratio = ep.mean / ec.mean if ec.mean > 0 and math.isfinite(ep.mean) else math.nan
            protocol_rows.append({"task": task_name, "model": name, "energy_published": ep, "energy_corrected": ec,
                                  "ratio": ratio})
            n_runs = len(entries[0]["long"]["runs"])
            for i in range(n_runs):
                runs = [e["long"]["runs"][i] for e in entries]
                long_rows.append({
                    "task": task_name, "model": name, "integrator": runs[0]["integrator"],
                    "horizon": runs[0]["horizon"], "energy_corrected": ec,
                    "max_energy_error": pooled([Estimate(r["max_energy_error"]) for r in runs]),
                    "verdict": "/".join(sorted({r["verdict"] for r in runs})),
                    "vpt": pooled([Estimate(r["vpt"]) for r in runs]),
                })
    return table, protocol_rows, long_rows


def seed_rows(raw: dict[str, dict[int, Any]], *, n_boot: int = 2000) -> list[dict[str, Any]]:
    """Per task and model over the seeds: each seed's energy MSE (a mean over its trajectories), their median, the
    median over every trajectory of every seed with its percentile-bootstrap 95 % interval, and how much of a seed's
    mean its largest trajectory carries (a mean carried by one trajectory moves by orders of magnitude between
    seeds; the median does not)."""
    import torch

    from hnnlab.reproduce.common import median_interval

    out = []
    for task_name, by_seed in raw.items():
        seeds = list(by_seed)
        for name in by_seed[seeds[0]]:
            per_traj = [torch.as_tensor(by_seed[s][name]["energy_published"]["per_traj"], dtype=torch.float64)
                        for s in seeds]
            means = torch.stack([v.mean() for v in per_traj])
            med, lo, hi = median_interval(torch.cat(per_traj), n_boot=n_boot,
                                          generator=torch.Generator().manual_seed(0))
            losses = torch.tensor([by_seed[s][name]["test_loss"]["estimate"].mean for s in seeds], dtype=torch.float64)
            pub = PUBLISHED.get(task_name, {}).get(name)
            out.append({
                "task": task_name, "model": name, "published": None if pub is None else pub["energy_mse"][0],
                "per_seed": ", ".join(f"{float(m):.3g}" for m in means),
                "seed_median": float(means.quantile(0.5)),
                "traj_median": med, "traj_interval": f"{lo:.3g} - {hi:.3g}",
                "top_share": float(torch.stack([v.max() / v.sum() for v in per_traj]).median()),
                "test_loss": float(losses.quantile(0.5)),
            })
    return out


def notes(cfg: ReproduceConfig, budget: dict[str, Any], seconds: float, train_seconds: float = 0.0) -> list[str]:
    """The page's notes (``templates/greydanus.md``) for these settings and run time."""
    lines = [NOTES("source", source=SOURCE)]
    lines += [NOTES(key) for key in ("data", "published_protocol", "corrected_protocol", "long_rollouts",
                                     "second_order")]
    if cfg.budget == "cpu":
        lines.append(NOTES("cpu_budget", steps_scale=budget["steps_scale"], n_traj_3body=budget["3body_n_traj"],
                           rollout_steps_scale=budget["rollout_steps_scale"], n_long=budget["n_long"]))
    lines.append(NOTES("wall_time", minutes=seconds / 60, train_minutes=train_seconds / 60))
    return lines


def plot_table(table: list[dict[str, Any]], path: Path) -> Path:
    """Bars of the test loss and the energy MSE, published beside hnnlab, with their error bars (log scale)."""
    rows_ = [r for r in table if r["model"] in PUBLISHED_MODELS]
    labels = list(dict.fromkeys((r["task"], r["model"]) for r in rows_))  # the table's order: task, then model
    with figure(path, 1, 2, figsize=(11, 3.8), dpi=90) as (fig, axes):
        for ax, key, title, unit in (
            (axes[0], "test_loss", "test loss", "MSE of dx/dt, (state / time)^2"),
            (axes[1], "energy_mse", "energy MSE (published protocol)", "mean (E_pred - E_true)^2, energy^2"),
        ):
            for offset, source, color in ((-0.2, "published", "tab:gray"), (0.2, "hnnlab", "tab:blue")):
                values = [next(r[key] for r in rows_ if (r["task"], r["model"]) == lab and r["source"] == source)
                          for lab in labels]
                means = [v.mean for v in values]
                errs = [0.0 if math.isnan(v.stderr) else min(v.stderr, 0.999 * v.mean) for v in values]
                ax.bar([i + offset for i in range(len(labels))], means, width=0.4, yerr=errs, color=color,
                       label=source, capsize=2)
            ax.set_yscale("log")
            ax.set_xticks(range(len(labels)), [f"{t}\n{m}" for t, m in labels], fontsize=6.5)
            ax.set_ylabel(unit, fontsize=8)
            ax.set_title(title, fontsize=9)
            ax.legend(fontsize=7)
        fig.suptitle("Greydanus et al. 2019: published against hnnlab (published protocol); bars: mean, "
                     "whiskers: standard error", fontsize=9)
    return path
