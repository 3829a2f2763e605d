"""The audit report: typed results, thresholds, failures, JSON and a table.

Every figure is worst-case over trajectories unless its name says otherwise (``mse`` and ``gmre`` are
aggregates by definition; ``vpt_mean`` / ``vpt_median`` are reported, ``vpt_min`` is gated).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hnnlab.errors import InvalidArgumentError

if TYPE_CHECKING:
    from hnnlab.audit.balance import BalanceAudit
    from hnnlab.audit.constraints import ConstraintAudit
    from hnnlab.audit.lyapunov import LyapunovAudit

Verdict = Literal["bounded", "drifting", "undetermined"]


@dataclass
class EnergyAudit:
    """Relative energy error ``|E(t) - E(0)| / |E(0)|`` of one energy function along the trajectories.

    ``source`` is ``"system"`` (the true energy) or ``"model"`` (the learned one). ``drift`` is the
    signed relative energy change that a least-squares line accumulates over the horizon, for the
    trajectory where it is largest in size; ``oscillation`` the largest deviation from that line;
    ``verdict`` is ``"drifting"`` when any trajectory's ``|drift|`` exceeds ``drift_ratio`` times its
    oscillation (and the round-off floor), see :func:`hnnlab.audit.metrics.secular_drift`.

    ``expected_conserved`` is what the fields declare (``conservative``): ``False`` when the system loses
    (or gains) energy or when the model whose rollout is audited is not conservative (for the true
    energy), or when the model itself is not (for its own energy); ``note`` then says which. The verdict
    is still the measurement (``"drifting"`` for a dissipative flow measures its energy loss, not an
    integrator's error), and thresholds are still checked as given: a gate asks what it asks.
    """

    source: str
    max_error: float
    rms_error: float
    final_error: float
    drift: float
    drift_rate: float
    oscillation: float
    verdict: Verdict
    n_drifting: int
    drift_ratio: float
    drift_floor: float
    expected_conserved: bool = True
    note: str | None = None
    per_trajectory_max_error: list[float] = field(default_factory=list)
    per_trajectory_drift: list[float] = field(default_factory=list)


@dataclass
class InvariantAudit:
    """Absolute change ``max_t |I(t) - I(0)|`` of a conserved quantity other than the energy."""

    name: str
    max_error: float
    per_trajectory_max_error: list[float] = field(default_factory=list)


@dataclass
class StructureAudit:
    """Symplecticity, volume and reversibility of the one-step map ``x -> step(field, x, dt)``.

    ``None`` values were not measured; ``notes`` say why (or qualify what was measured).
    """

    field: str
    integrator: str
    dt: float
    n_samples: int
    symplecticity_error: float | None
    volume_error: float | None
    reversibility_error: float | None
    reversibility_steps: int
    notes: list[str] = field(default_factory=list)


@dataclass
class AccuracyAudit:
    """Accuracy against the reference trajectories."""

    mse: float
    gmre: float
    vpt_threshold: float
    vpt_min: float
    vpt_mean: float
    vpt_median: float
    n_censored: int
    horizon: float
    per_trajectory_vpt: list[float] = field(default_factory=list)
    per_trajectory_gmre: list[float] = field(default_factory=list)


@dataclass
class NonFiniteAudit:
    """Where trajectories turned NaN or inf. Steps are integrator steps (``-1``: stayed finite)."""

    n_nonfinite: int
    first_step: int
    first_trajectory: int
    first_time: float | None
    per_trajectory_step: list[int] = field(default_factory=list)


@dataclass
class Thresholds:
    """Limits a run must meet; ``None`` (the default) leaves a metric ungated.

    A threshold whose metric could not be measured (no reference, no vector field, ...) fails.
    A rollout with non-finite states fails unless ``allow_nonfinite``.
    """

    max_energy_error: float | None = None
    max_energy_rms: float | None = None
    max_energy_drift: float | None = None
    bounded_energy: bool = False
    max_model_energy_error: float | None = None
    max_invariant_error: float | None = None
    max_symplecticity_error: float | None = None
    max_volume_error: float | None = None
    max_reversibility_error: float | None = None
    max_mse: float | None = None
    max_gmre: float | None = None
    min_valid_prediction_time: float | None = None
    allow_nonfinite: bool = False
    balanced_energy: bool = False
    max_constraint_violation: float | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("bounded_energy", "allow_nonfinite", "balanced_energy"):
                if not isinstance(value, bool):
                    raise InvalidArgumentError(f"threshold {f.name} must be True or False, got {value!r}")
                continue
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise InvalidArgumentError(f"threshold {f.name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Failure:
    """One violated threshold."""

    name: str
    value: float | str | None
    limit: float | str
    message: str


@dataclass
class AuditReport:
    """Everything the audit measured on one set of trajectories (see ``docs/audit.md``)."""

    source: str
    kind: str
    n_traj: int
    n_times: int
    dof: int
    t0: float
    t_end: float
    dtype: str
    system: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    integrator: dict[str, Any] | None = None
    dt: float | None = None
    save_every: int | None = None
    energy: EnergyAudit | None = None
    model_energy: EnergyAudit | None = None
    invariants: list[InvariantAudit] = field(default_factory=list)
    structure: StructureAudit | None = None
    accuracy: AccuracyAudit | None = None
    nonfinite: NonFiniteAudit | None = None
    lyapunov: LyapunovAudit | None = None
    balance: BalanceAudit | None = None
    reference_balance: BalanceAudit | None = None  # the same check on the reference trajectories
    constraints: ConstraintAudit | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    plots: dict[str, str] = field(default_factory=dict)
    thresholds: Thresholds = field(default_factory=Thresholds)

    # -- verdict ---------------------------------------------------------------------------------

    def failures(self) -> list[Failure]:
        """Each violated threshold, with its value and limit."""
        th = self.thresholds
        out: list[Failure] = []

        def upper(name: str, value: float | None, missing: str) -> None:
            limit = getattr(th, name)
            if limit is None:
                return
            if value is None:
                out.append(Failure(name, None, limit, f"{name}: not measured ({self.skipped.get(missing, missing)})"))
            elif not (value <= limit):  # NaN fails
                out.append(Failure(name, value, limit, f"{name}: {_fmt(value)} exceeds the limit {_fmt(limit)}"))

        e, me, s, a = self.energy, self.model_energy, self.structure, self.accuracy
        upper("max_energy_error", e and e.max_error, "energy")
        upper("max_energy_rms", e and e.rms_error, "energy")
        upper("max_energy_drift", None if e is None else abs(e.drift), "energy")
        if th.bounded_energy:
            if e is None:
                out.append(Failure("bounded_energy", None, "bounded",
                                   f"bounded_energy: not measured ({self.skipped.get('energy', 'energy')})"))
            elif e.verdict != "bounded":
                why = "" if e.note is None else f"; the energy is {e.note}"
                out.append(Failure("bounded_energy", e.verdict, "bounded",
                                   f"bounded_energy: the energy error is {e.verdict} (relative drift "
                                   f"{_fmt(e.drift)} over the horizon, oscillation {_fmt(e.oscillation)}){why}"))
        upper("max_model_energy_error", me and me.max_error, "model_energy")
        inv = max((i.max_error for i in self.invariants), default=None) if self.invariants else None
        upper("max_invariant_error", inv, "invariants")
        upper("max_symplecticity_error", s and s.symplecticity_error, "symplecticity")
        upper("max_volume_error", s and s.volume_error, "symplecticity")
        upper("max_reversibility_error", s and s.reversibility_error, "reversibility")
        upper("max_mse", a and a.mse, "accuracy")
        upper("max_gmre", a and a.gmre, "accuracy")
        upper("max_constraint_violation", self.constraints and self.constraints.max_violation, "constraints")
        if th.min_valid_prediction_time is not None:
            limit = th.min_valid_prediction_time
            if a is None:
                reason = self.skipped.get("accuracy", "accuracy")
                out.append(Failure("min_valid_prediction_time", None, limit,
                                   f"min_valid_prediction_time: not measured ({reason})"))
            elif not (a.vpt_min >= limit):
                out.append(Failure("min_valid_prediction_time", a.vpt_min, limit,
                                   f"min_valid_prediction_time: {_fmt(a.vpt_min)} is below the limit {_fmt(limit)}"))
        if th.balanced_energy:
            b = self.balance
            if b is None:
                out.append(Failure("balanced_energy", None, "balanced",
                                   f"balanced_energy: not measured ({self.skipped.get('balance', 'balance')})"))
            elif b.verdict != "balanced":
                out.append(Failure("balanced_energy", b.verdict, "balanced",
                                   f"balanced_energy: the energy balance H(t) - H(0) = int P dt fails on "
                                   f"{len(b.unbalanced)} trajectories (relative residual "
                                   f"{_fmt(b.max_relative_residual)}, tolerance {_fmt(b.tolerance)})"))
        nf = self.nonfinite
        if not th.allow_nonfinite and nf is not None and nf.n_nonfinite:
            out.append(Failure("allow_nonfinite", nf.n_nonfinite, 0,
                               f"allow_nonfinite: {nf.n_nonfinite} trajectories became non-finite, the first at step "
                               f"{nf.first_step} (trajectory {nf.first_trajectory})"))
        return out

    @property
    def passed(self) -> bool:
        return not self.failures()

    # -- output ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN and inf become ``None``), with ``passed`` and ``failures``."""
        d = dataclasses.asdict(self)
        d["passed"] = self.passed
        d["failures"] = [dataclasses.asdict(f) for f in self.failures()]
        return _json_safe(d)

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as indented JSON."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2, allow_nan=False)
            fh.write("\n")

    def rows(self) -> list[tuple[str, str, str, str]]:
        """``(check, value, limit, status)`` rows for a table; status is ``ok``, ``FAIL``, ``-`` or ``skipped``."""
        th = self.thresholds
        failed = {f.name for f in self.failures()}
        rows: list[tuple[str, str, str, str]] = []

        def row(label: str, value: Any, name: str | None = None, skip_key: str | None = None) -> None:
            limit = getattr(th, name) if name else None
            if value is None:
                reason = self.skipped.get(skip_key or "", "not measured")
                rows.append((label, f"skipped: {reason}", _fmt(limit) if limit is not None else "", "skipped"
                             if name not in failed else "FAIL"))
                return
            status = "FAIL" if name in failed else ("ok" if limit is not None and limit is not False else "-")
            shown = "bounded" if limit is True else ("" if limit is None or limit is False else _fmt(limit))
            rows.append((label, value if isinstance(value, str) else _fmt(value), shown, status))

        energies = (("energy", self.energy, "energy"), ("model energy", self.model_energy, "model_energy"))
        for label, audit, key in energies:
            if audit is None:
                row(f"{label} error (max)", None, "max_energy_error" if key == "energy" else "max_model_energy_error",
                    key)
                continue
            row(f"{label} error (max)", audit.max_error,
                "max_energy_error" if key == "energy" else "max_model_energy_error")
            row(f"{label} error (RMS)", audit.rms_error, "max_energy_rms" if key == "energy" else None)
            row(f"{label} drift over horizon", audit.drift, "max_energy_drift" if key == "energy" else None)
            verdict = f"{audit.verdict} ({audit.n_drifting}/{self.n_traj} drifting)"
            row(f"{label} verdict", verdict if audit.note is None else f"{verdict}; {audit.note}",
                "bounded_energy" if key == "energy" else None)
        for inv in self.invariants:
            row(f"invariant {inv.name} (max abs change)", inv.max_error, "max_invariant_error")
        s = self.structure
        row("symplecticity ||J^T Omega J - Omega||", s and s.symplecticity_error, "max_symplecticity_error",
            "symplecticity")
        row("volume |det J - 1|", s and s.volume_error, "max_volume_error", "symplecticity")
        row(f"reversibility ({s.reversibility_steps} steps)" if s else "reversibility", s and s.reversibility_error,
            "max_reversibility_error", "reversibility")
        a = self.accuracy
        row("MSE vs reference", a and a.mse, "max_mse", "accuracy")
        row("geometric-mean relative error", a and a.gmre, "max_gmre", "accuracy")
        row(f"valid prediction time (min, threshold {a.vpt_threshold:g})" if a else "valid prediction time (min)",
            a and a.vpt_min, "min_valid_prediction_time", "accuracy")
        if a is not None:
            row("valid prediction time (mean / median)", f"{_fmt(a.vpt_mean)} / {_fmt(a.vpt_median)}"
                + (f" ({a.n_censored} never crossed)" if a.n_censored else ""))
        b = self.balance
        if b is not None:
            row("energy balance H(t) - H(0) = int P dt (relative residual)", b.max_relative_residual)
            row("energy balance verdict", f"{b.verdict} (dissipated {_fmt(b.dissipated)}, injected {_fmt(b.injected)})",
                "balanced_energy")
        elif th.balanced_energy:
            row("energy balance verdict", None, "balanced_energy", "balance")
        r = self.reference_balance
        if r is not None:
            row("reference energy balance (relative residual)", r.max_relative_residual)
            row("reference energy balance verdict", r.verdict)
        c = self.constraints
        if c is not None:
            relative = " (from each first state: lengths not given)" if c.relative_to_first_state else ""
            row(f"constraint drift max |Phi(x)| ({c.n_constraints} constraints, {c.source}'s){relative}",
                c.max_violation, "max_constraint_violation")
            row("constraints max |Phi(x)| at the first state", c.initial_violation)
            row("velocity constraint max |G(x) v|", c.max_velocity_violation)
        elif th.max_constraint_violation is not None:
            row("constraint drift max |Phi(x)|", None, "max_constraint_violation", "constraints")
        ly = self.lyapunov
        if ly is not None:
            row("Lyapunov l1 of the reference (median)", ly.reference_l1)
            row("Lyapunov time 1 / l1", "not chaotic" if ly.lyapunov_time is None else _fmt(ly.lyapunov_time))
            if ly.model_l1 is not None:
                row("Lyapunov l1 of the model (median)", ly.model_l1)
            if ly.vpt_lyapunov is not None:
                row("valid prediction time in Lyapunov times (median)", ly.vpt_lyapunov)
            if ly.floor_vpt_lyapunov is not None:
                row(f"perturbed-state floor (eps {ly.perturbation:g}) in Lyapunov times", ly.floor_vpt_lyapunov)
            elif ly.floor_vpt is not None:
                row(f"perturbed-state floor (eps {ly.perturbation:g}), time", ly.floor_vpt)
            rows.append(("Lyapunov verdict", ly.note, "", "-"))
        nf = self.nonfinite
        if nf is not None:
            value = "none" if not nf.n_nonfinite else (
                f"{nf.n_nonfinite} trajectories; first at step {nf.first_step} (trajectory {nf.first_trajectory})")
            rows.append(("non-finite states", value, "" if th.allow_nonfinite else "none",
                         "FAIL" if "allow_nonfinite" in failed else ("ok" if not th.allow_nonfinite else "-")))
        return rows

    def format_text(self) -> str:
        """A plain-text table of :meth:`rows` followed by the verdict."""
        header = ("check", "value", "limit", "status")
        rows = [header, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [f"audit of {self.source} ({self.kind}: {self.n_traj} trajectories x {self.n_times} times, "
                 f"t in [{_fmt(self.t0)}, {_fmt(self.t_end)}])"]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.append(self.verdict_line())
        return "\n".join(lines)

    def verdict_line(self) -> str:
        failures = self.failures()
        if not failures:
            return "PASSED: all thresholds hold"
        return f"FAILED: {len(failures)} threshold(s) violated"

    def render(self, console: Any = None, *, show_failures: bool = True) -> None:
        """Print the report as a rich table (to ``console``, default a new stdout console)."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        table = Table(title=f"audit of {self.source} ({self.kind}: {self.n_traj} x {self.n_times}, "
                            f"t in [{_fmt(self.t0)}, {_fmt(self.t_end)}])")
        for name in ("check", "value", "limit", "status"):
            table.add_column(name)
        styles = {"ok": "green", "FAIL": "bold red", "skipped": "yellow"}
        for check, value, limit, status in self.rows():
            table.add_row(check, value, limit, f"[{styles[status]}]{status}[/]" if status in styles else status)
        console.print(table)
        failures = self.failures()
        for f in failures if show_failures else ():
            console.print(f"[bold red]FAILED[/] {f.message}", highlight=False)
        console.print("[green]PASSED[/]: all thresholds hold" if not failures
                      else f"[bold red]FAILED[/]: {len(failures)} threshold(s) violated")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj
