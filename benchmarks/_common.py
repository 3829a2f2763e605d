"""Helpers shared by ``run_all.py`` and ``gpu.py``: loading a sibling benchmark script, timing on any
device, and writing a result table as Markdown and CSV.

The benchmark scripts are files, not a package; :func:`load_script` imports one by path (without
touching ``sys.path``) so that its functions can be called instead of parsing its output.
"""

from __future__ import annotations

import csv
import importlib.util
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def load_script(name: str) -> ModuleType:
    """The benchmark script ``benchmarks/<name>.py`` as a module (imported once per process)."""
    key = f"hnnlab_benchmarks.{name}"
    if key in sys.modules:
        return sys.modules[key]
    path = HERE / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark script {path}")
    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module  # before exec: dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[key]
        raise
    return module


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (a no-op on the CPU), so that a timer measures the work, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_per_second(
    step: Callable[[], object], device: torch.device, min_seconds: float, warmup: int = 3, max_steps: int = 100_000
) -> float:
    """Steady-state calls of ``step`` per second: ``warmup`` untimed calls, then runs of growing length
    until one run lasts ``min_seconds`` (or reaches ``max_steps`` calls); the rate of that run."""
    for _ in range(warmup):
        step()
    synchronize(device)
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            step()
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or n >= max_steps:
            return n / elapsed
        # aim a little past min_seconds from the rate just seen; at least double
        n = min(max_steps, max(2 * n, int(1.2 * n * min_seconds / max(elapsed, 1e-6))))


def describe_device(device: torch.device) -> str:
    """``cuda (NVIDIA H100 ...)`` or ``cpu (x86_64)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; ``|`` inside a cell is escaped."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def write_results(stem: Path, markdown: str, records: Sequence[dict]) -> tuple[Path, Path]:
    """Write ``stem.md`` (the text) and ``stem.csv`` (one line per record, the union of their keys in
    first-seen order); returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    md, csv_path = stem.with_suffix(".md"), stem.with_suffix(".csv")
    md.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    fields: dict[str, None] = {}
    for record in records:
        fields.update(dict.fromkeys(record))
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(records)
    return md, csv_path
