"""What every reproduction shares: its settings, datasets, training, statistics and result tables.

A reproduction regenerates a paper's data with hnnlab's recipes, trains with hnnlab's Lightning
module, evaluates with the paper's protocol (and a corrected one), and writes a Markdown table and a
CSV file with the published figure beside hnnlab's to ``benchmarks/results/``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import re
import string
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from hnnlab.errors import InvalidArgumentError

RESULTS_DIR = Path("benchmarks/results")


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error (``stderr`` is ``nan`` for a single value)."""

    mean: float
    stderr: float = math.nan
    n: int = 1

    def __format__(self, spec: str) -> str:
        spec = spec or ".3e"
        if math.isnan(self.stderr):
            return format(self.mean, spec)
        return f"{self.mean:{spec}} ± {self.stderr:.2e}"

    @classmethod
    def of(cls, values: Sequence[float] | torch.Tensor) -> Estimate:
        """Mean and standard error ``std / sqrt(n)`` (sample std, ``n - 1``) of finite ``values``."""
        x = torch.as_tensor(values, dtype=torch.float64).detach().reshape(-1)
        if x.numel() == 0:
            raise InvalidArgumentError("an estimate needs at least one value, got none")
        if x.numel() == 1:
            return cls(float(x[0]), math.nan, 1)
        return cls(float(x.mean()), float(x.std(unbiased=True) / math.sqrt(x.numel())), int(x.numel()))

    @classmethod
    def geometric(cls, values: Sequence[float] | torch.Tensor) -> Estimate:
        """Geometric mean; the standard error is that of the mean of the logs, mapped back
        (``gmean * (exp(se_log) - 1)``, the half-width of the upper one-sigma band)."""
        logs = torch.as_tensor(values, dtype=torch.float64).detach().reshape(-1).log()
        est = cls.of(logs)
        gmean = math.exp(est.mean)
        stderr = math.nan if math.isnan(est.stderr) else gmean * math.expm1(est.stderr)
        return cls(gmean, stderr, est.n)


def pooled(estimates: Sequence[Estimate]) -> Estimate:
    """Across seeds: the mean of the per-seed means, with the standard error over seeds
    (a single seed keeps its own within-seed standard error)."""
    if len(estimates) == 1:
        return estimates[0]
    return Estimate.of([e.mean for e in estimates])


@dataclass
class ReproduceConfig:
    """Settings shared by every reproduction.

    Attributes:
        out: working directory for datasets, checkpoints and W&B runs (``runs/reproduce/<name>``).
        results: where the Markdown and CSV tables go.
        seeds: data-and-initialisation seeds; error bars are over seeds when there are several.
        budget: ``"cpu"`` (sizes that fit 2 CPU cores in under an hour) or ``"published"`` (the
            paper's training budget; meant for a GPU).
        tasks: which of the reproduction's tasks to run (``None``: all).
        wandb: track each training run in W&B (offline unless a key is configured).
        threads: torch intra-op threads (``None``: leave as is).
        accelerator: Lightning accelerator for training.
    """

    out: Path = Path("runs/reproduce")
    results: Path = RESULTS_DIR
    seeds: tuple[int, ...] = (0,)
    budget: str = "cpu"
    tasks: tuple[str, ...] | None = None
    wandb: bool = True
    threads: int | None = 1
    accelerator: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.budget not in ("cpu", "published"):
            raise InvalidArgumentError(f"budget must be 'cpu' or 'published', got {self.budget!r}")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise InvalidArgumentError(f"seeds must be integers >= 0, got {self.seeds!r}")
        self.out, self.results = Path(self.out), Path(self.results)

    def select(self, available: Sequence[str]) -> list[str]:
        """The requested tasks in ``available``'s order (all when none were requested)."""
        if self.tasks is None:
            return list(available)
        unknown = [t for t in self.tasks if t not in available]
        if unknown:
            raise InvalidArgumentError(f"unknown task {unknown[0]!r}; available: {', '.join(available)}")
        return [t for t in available if t in self.tasks]


def merged_settings(name: str, budgets: dict[str, dict[str, Any]], cfg: ReproduceConfig) -> dict[str, Any]:
    """The sizes of ``cfg.budget`` in ``budgets`` with ``cfg.extra`` applied; an unknown key is refused."""
    merged = dict(budgets[cfg.budget])
    unknown = [k for k in cfg.extra if k not in merged]
    if unknown:
        raise InvalidArgumentError(f"{name}: unknown setting {unknown[0]!r}; settings: {', '.join(merged)}")
    merged.update(cfg.extra)
    return merged


def set_threads(threads: int | None) -> None:
    """Small networks run faster on one intra-op thread, much faster on a busy machine."""
    if threads is not None and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(threads)


def build_dataset(path: Path, recipe: Any, *, seed: int, overrides: dict[str, Any] | None = None) -> Path:
    """Simulate ``recipe`` (a registered name or a :class:`~hnnlab.data.recipes.Recipe`, with ``overrides``) into
    ``path`` unless a file built the same way is there.

    The recipe description and seed stored in the file are compared with the requested ones, so a
    stale file from other settings is rebuilt rather than silently reused."""
    from hnnlab.data.io import read_metadata
    from hnnlab.data.recipes import get_recipe
    from hnnlab.data.writer import write_dataset

    if isinstance(recipe, str):
        spec = get_recipe(recipe, **(overrides or {}))
    else:
        spec = recipe.with_overrides(**overrides) if overrides else recipe
        recipe = spec.name
    if path.exists():
        try:
            meta = read_metadata(path)
            same = meta.get("recipe") == spec.describe() and int(meta.get("seed", -1)) == seed
        except Exception:  # an unreadable file is rebuilt
            same = False
        if same:
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"  simulating {recipe} (seed {seed}) -> {path}", flush=True)
    result = spec.build(seed, command=f"hnnlab reproduce ({recipe}, seed {seed})")
    write_dataset(path, result, overwrite=True)
    print(f"  simulated in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def fit(
    model: torch.nn.Module | Callable[[], torch.nn.Module],
    data_path: Path,
    cfg: ReproduceConfig,
    *,
    name: str,
    steps: int,
    batch_size: int | None,
    optimizer: Callable[[Any], torch.optim.Optimizer],
    seed: int,
    loss: str = "derivative",
    metric: str = "mse",
    integrator: str = "leapfrog",
    mode: str = "pairs",
    window: int = 1,
    scheduler: Callable[[Any], Any] | None = None,
    substeps: int = 1,
    group: str = "reproduce",
) -> tuple[Any, float]:
    """Train ``model`` on the dataset at ``data_path`` for ``steps`` optimizer steps, a reproduction's way:
    :class:`~hnnlab.training.module.DynamicsModule` and :func:`hnnlab.training.fit`, no validation, four
    progress lines, ``last.ckpt`` in ``cfg.out / "checkpoints" / name`` and, with ``cfg.wandb``, a W&B run
    ``name`` in ``group``. Returns ``(module, seconds)``.

    ``model`` may be a factory (a callable returning the network): it is then built after seeding with
    ``seed``, so that the initialisation is the seed's too (a network passed in is initialised already)."""
    import lightning.pytorch as pl

    from hnnlab.data.datamodule import HDF5DataModule
    from hnnlab.training import fit as train
    from hnnlab.training.callbacks import PlainProgressLog
    from hnnlab.training.module import DynamicsModule

    pl.seed_everything(seed, verbose=False)
    if not isinstance(model, torch.nn.Module):
        model = model()
    module = DynamicsModule(model, loss=loss, metric=metric, integrator=integrator, substeps=substeps,
                            optimizer=optimizer, scheduler=scheduler)
    datamodule = HDF5DataModule(str(data_path), mode=mode, window=window, batch_size=batch_size, seed=seed)
    logger: Any = False
    if cfg.wandb:
        from hnnlab.training.logging import HnnlabWandbLogger

        os.environ.setdefault("WANDB_SILENT", "true")
        logger = HnnlabWandbLogger(project="hnnlab-reproduce", name=name, group=group,
                                   save_dir=str(cfg.out), log_model=False)
    every = max(steps // 4, 1)
    progress = PlainProgressLog(every_n_epochs=max(every // _steps_per_epoch(datamodule), 1))
    print(f"  training {name}: {steps} steps", flush=True)
    result = train(module, datamodule, max_steps=steps, max_epochs=-1, accelerator=cfg.accelerator, logger=logger,
                   checkpoint=cfg.out / "checkpoints" / name, progress=progress, limit_val_batches=0)
    if logger:
        logger.experiment.finish()
    return module, result.seconds


def _steps_per_epoch(datamodule: Any) -> int:
    datamodule.prepare_data()
    datamodule.setup("fit")
    return max(len(datamodule.train_dataloader()), 1)


@dataclass(frozen=True)
class Column:
    """A result-table column: the row key, its header, and a format for numbers."""

    key: str
    header: str
    fmt: str = ".3e"


def format_cell(value: Any, fmt: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, Estimate):
        return "–" if math.isnan(value.mean) else format(value, fmt)
    if isinstance(value, float):
        return "–" if math.isnan(value) else format(value, fmt)
    return str(value)


def markdown_table(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(c.header for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(r.get(c.key), c.fmt) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(
    stem: Path,
    *,
    title: str,
    command: str,
    sections: Sequence[tuple[str, Sequence[Column], Sequence[dict[str, Any]]]],
    notes: Sequence[str] = (),
    config: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``stem.md`` (title, command, one table per section, notes) and ``stem.csv`` (every row of
    every section, estimates as ``<key>`` and ``<key>_stderr`` columns). Returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", "", f"Regenerate with: `{command}`", ""]
    # The intra-op thread count changes the summation order of matrix products, and over thousands of training steps
    # that changes the trained model: a page records it (the 3-body HNN's energy MSE was 0.10 with one thread and 2.5
    # with two, same code, data and seed).
    parts.append(f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                 f"{torch.get_num_threads()} intra-op thread(s), {time.strftime('%Y-%m-%d')}.")
    if config:
        parts.append(f"Settings: `{json.dumps(config, default=str)}`")
    parts.append("")
    for heading, columns, rows in sections:
        parts += [f"## {heading}", "", markdown_table(columns, rows), ""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    md_path, csv_path = stem.with_suffix(".md"), stem.with_suffix(".csv")
    md_path.write_text("\n".join(parts))

    flat: list[dict[str, Any]] = []
    for heading, _, rows in sections:
        for row in rows:
            out: dict[str, Any] = {"section": heading}
            for key, value in row.items():
                if isinstance(value, Estimate):
                    out[key], out[f"{key}_stderr"] = value.mean, value.stderr
                else:
                    out[key] = value
            flat.append(out)
    keys: list[str] = []
    for row in flat:
        keys += [k for k in row if k not in keys]
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(flat)
    return md_path, csv_path


def median_interval(values: torch.Tensor, *, n_boot: int, generator: torch.Generator, level: float = 0.95
                    ) -> tuple[float, float, float]:
    """The median of ``values`` and its percentile-bootstrap ``level`` interval over ``n_boot`` resamples."""
    x = values.detach().to(torch.float64).reshape(-1)
    if x.numel() == 0:
        return math.nan, math.nan, math.nan
    idx = torch.randint(0, x.numel(), (n_boot, x.numel()), generator=generator)
    medians = x[idx].nanquantile(0.5, dim=1)
    lo, hi = torch.quantile(medians, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return float(x.nanquantile(0.5)), float(lo), float(hi)


def summed_seconds(value: Any, keys: Sequence[str]) -> float:
    """Every number under one of ``keys`` anywhere in ``value`` (nested dicts and lists: per-seed, per-model results),
    summed: a run's cost from its saved results, whether each part was computed now or by an earlier process."""
    if isinstance(value, dict):
        return sum(float(v) if k in keys and isinstance(v, int | float) else summed_seconds(v, keys)
                   for k, v in value.items())
    return sum(summed_seconds(v, keys) for v in value) if isinstance(value, list) else 0.0


def cached(path: Path, key: dict[str, Any], compute: Callable[[], Any], *, label: str) -> Any:
    """``compute()``, saved to ``path`` with ``key`` (the task, seed, budget and settings that produce it) and
    reused by a later call with the same key: a long reproduction can be run task by task or seed by seed, in
    separate processes, and the tables written at the end; a run stopped part-way keeps what it finished. The
    file is written to a temporary name and renamed, so a run killed while saving leaves no half-written cache."""
    text = json.dumps(key, sort_keys=True, default=str)
    if path.exists():
        saved = torch.load(path, weights_only=False)
        if saved.get("key") == text:
            print(f"  {label}: reusing {path}", flush=True)
            return saved["results"]
    results = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"key": text, "results": results}, partial)
    partial.replace(path)
    return results


def save_raw(path: Path, payload: dict[str, Any]) -> None:
    """Every per-seed number, as JSON, beside the tables (``Estimate`` as ``{mean, stderr, n}``, tensors as
    nested lists)."""

    def encode(value: Any) -> Any:
        if isinstance(value, Estimate):
            return asdict(value)
        if isinstance(value, torch.Tensor):
            return value.tolist()
        if isinstance(value, Path):
            return str(value)
        raise TypeError(type(value).__name__)

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=encode))


def load_raw(path: Path) -> Any:
    """The JSON written by :func:`save_raw`, with every ``{mean, stderr, n}`` back as an :class:`Estimate`
    (so that a results page can be rendered again from the numbers of a run)."""

    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"mean", "stderr", "n"}:
                return Estimate(value["mean"], value["stderr"], value["n"])
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    return decode(json.loads(Path(path).read_text()))


def command_line(name: str, cfg: ReproduceConfig) -> str:
    """The ``hnnlab reproduce`` command that regenerates a results page: only the options that differ from
    the defaults."""
    parts = [f"hnnlab reproduce {name}"]
    if cfg.tasks is not None:
        parts.append("--tasks " + " ".join(cfg.tasks))
    if cfg.seeds != (0,):
        parts.append("--seeds " + " ".join(map(str, cfg.seeds)))
    if cfg.budget != "cpu":
        parts.append(f"--budget {cfg.budget}")
    if cfg.results != RESULTS_DIR:
        parts.append(f"--results {cfg.results}")
    for key, value in cfg.extra.items():
        text = json.dumps(value).replace('"', "")
        parts.append(f"--set '{key}={text}'" if any(c in text for c in " [],{}") else f"--set {key}={text}")
    return " ".join(parts)


def publish(name: str, cfg: ReproduceConfig, raw: dict[str, Any], **page: Any) -> tuple[Path, Path, Path]:
    """A reproduction's results: ``cfg.results / name`` ``.md`` and ``.csv`` (:func:`write_results` with
    ``page``'s title, sections, notes and config, and the command that regenerates them) and ``.json``
    (:func:`save_raw` of ``raw``). Returns the three paths."""
    md, csv_path = write_results(cfg.results / name, command=command_line(name, cfg), **page)
    json_path = cfg.results / f"{name}.json"
    save_raw(json_path, raw)
    return md, csv_path, json_path


class Notes:
    """The prose of a results page: named paragraphs of ``hnnlab/reproduce/templates/<name>.md``, each filled
    with ``str.format`` from the run's numbers.

    The file is a list of paragraphs, each under a ``## <key>`` line; the lines of a paragraph are joined with
    single spaces (so the template can be wrapped freely), and lines before the first key are a comment. The
    code decides which paragraphs a page has and computes the numbers; the words live in the template."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = f"hnnlab/reproduce/templates/{name}.md"
        text = resources.files("hnnlab.reproduce").joinpath("templates", f"{name}.md").read_text(encoding="utf-8")
        self.paragraphs: dict[str, str] = {}
        key: str | None = None
        lines: list[str] = []
        for line in [*text.splitlines(), "## "]:
            if line.startswith("## "):
                if key is not None:
                    self.paragraphs[key] = " ".join(part.strip() for part in lines if part.strip())
                key, lines = line[3:].strip(), []
            elif key is not None:
                lines.append(line)

    def __call__(self, key: str, **values: Any) -> str:
        """Paragraph ``key`` with its ``{fields}`` filled from ``values`` (every field must be given)."""
        if key not in self.paragraphs:
            raise InvalidArgumentError(
                f"{self.path} has no paragraph {key!r}; paragraphs: {', '.join(self.paragraphs)}"
            )
        template = self.paragraphs[key]
        fields = {re.split(r"[.\[]", f)[0] for _, f, _, _ in string.Formatter().parse(template) if f}
        missing = sorted(fields - set(values))
        if missing:
            raise InvalidArgumentError(f"{self.path}, paragraph {key!r}: no value for {{{missing[0]}}}")
        return template.format_map(values)


@contextmanager
def figure(path: Path, *args: Any, dpi: int | None = None, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """``(fig, axes)`` of ``matplotlib.pyplot.subplots(*args, **kwargs)`` on the Agg backend, saved to ``path``
    (its folder made) and closed when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*args, **kwargs)
    try:
        yield fig, axes
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, **({} if dpi is None else {"dpi": dpi}))
    finally:
        plt.close(fig)
