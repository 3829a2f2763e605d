"""The audit: run every check that the available information allows and collect a typed report.

:func:`audit_trajectories` audits tensors; :func:`audit_file` reads a rollout file or a dataset file
(see :mod:`hnnlab.audit.sources`) and audits it. A check that cannot run is recorded in
``report.skipped`` with its reason, never dropped silently.

The system and the model are vector fields of the protocol in :mod:`hnnlab.fields`; the audit reads
what they declare (``dof``, ``coordinates``, ``is_separable``, ``conservative``, ``has_energy``) and never
probes for it. A field that is not ``conservative`` (the damped oscillator, a dissipative HNN) is audited
like any other, and the report says that its energy is not expected to be conserved
(:attr:`EnergyAudit.expected_conserved`) and that its flow is neither symplectic nor reversible.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from hnnlab.audit import metrics, structure
from hnnlab.audit.report import (
    AccuracyAudit,
    AuditReport,
    EnergyAudit,
    InvariantAudit,
    NonFiniteAudit,
    StructureAudit,
    Thresholds,
)
from hnnlab.errors import HnnlabError, InvalidArgumentError
from hnnlab.fields import AbstractVectorField
from hnnlab.integrators.base import AbstractIntegrator
from hnnlab.models.base import AbstractModel
from hnnlab.systems.base import AbstractSystem

DEFAULT_STRUCTURE_SAMPLES = 16
DEFAULT_REVERSIBILITY_STEPS = 100


def audit_trajectories(
    states: Tensor,
    t: Tensor,
    *,
    system: AbstractSystem | None = None,
    reference: Tensor | None = None,
    model: AbstractVectorField | None = None,
    integrator: AbstractIntegrator | str | None = None,
    dt: float | None = None,
    save_every: int | None = None,
    energy_model: Tensor | None = None,
    model_conservative: bool | None = None,
    first_nonfinite_step: Tensor | None = None,
    thresholds: Thresholds | None = None,
    vpt_threshold: float = metrics.DEFAULT_VPT_THRESHOLD,
    drift_ratio: float = metrics.DEFAULT_DRIFT_RATIO,
    drift_floor: float | None = None,
    structure_samples: int = DEFAULT_STRUCTURE_SAMPLES,
    reversibility_steps: int = DEFAULT_REVERSIBILITY_STEPS,
    check_structure: bool = True,
    lyapunov: bool = False,
    lyapunov_steps: int | None = None,
    lyapunov_perturbation: float | None = None,
    plots: str | os.PathLike[str] | None = None,
    source: str = "<tensors>",
    kind: str = "trajectories",
    skipped: dict[str, str] | None = None,
    inputs: Any = None,
) -> AuditReport:
    """Audit trajectories ``states`` ``(n_traj, n_times, 2 * dof)`` saved at times ``t`` ``(n_times,)``.

    Args:
        system: the true system (an :class:`~hnnlab.systems.AbstractSystem`): true energy and invariants;
            the vector field of the structural checks when no ``model`` is given.
        reference: reference states of the same shape (MSE, geometric-mean relative error, VPT).
        model: the learned model that produced ``states`` (an :class:`~hnnlab.models.AbstractModel`, or
            any :class:`~hnnlab.fields.AbstractVectorField`): its energy (``model.energy``) and its vector
            field for the structural checks.
        integrator, dt: the method and step that produced ``states`` (structural checks).
        save_every: steps between saved states (turns saved indices into integrator steps).
        energy_model: the model's energy along ``states`` ``(n_traj, n_times)``, when already computed.
        model_conservative: whether the model that produced ``states`` is conservative, when the model
            itself is not given (a rollout file's model description says); ``None``: ``model.conservative``
            if a model is given, else ``True``.
        first_nonfinite_step: per-trajectory integrator step of the first non-finite state, when known
            exactly (rollout files); otherwise it is derived from the saved states.
        thresholds: limits to check (:meth:`AuditReport.failures`).
        vpt_threshold: threshold of the normalised error for the valid prediction time.
        drift_ratio, drift_floor: the drift verdict's rule (:func:`hnnlab.audit.metrics.secular_drift`);
            ``drift_floor=None`` uses ``1000 * eps`` of the states' dtype.
        structure_samples: number of initial states (of the first trajectories) for the structural checks.
        reversibility_steps: ``N`` of the reversibility check.
        check_structure: ``False`` skips the structural checks (recorded).
        lyapunov: add the Lyapunov section (:func:`hnnlab.audit.lyapunov.lyapunov_audit`): the reference
            system's ``l1`` and Lyapunov time from the initial states, the model's own ``l1``, the valid
            prediction time in Lyapunov times and the perturbed-initial-state floor (needs ``system``).
        lyapunov_steps, lyapunov_perturbation: its averaging steps and the floor's perturbation.
        plots: a directory to write PNG plots into (paths in ``report.plots``).

    For an open system (:class:`~hnnlab.systems.AbstractPortHamiltonianSystem`) the report also has the energy
    balance (:func:`hnnlab.audit.balance.energy_balance`), the check that replaces conservation; ``inputs`` (an
    :class:`hnnlab.inputs.InputSignal` over the same trajectories and times) are the per-trajectory inputs they were
    driven by, used by the balance instead of the system's own ``u(t)``.
    """
    thresholds = thresholds or Thresholds()
    _check_inputs(states, t, reference, energy_model)
    _check_options(vpt_threshold, drift_ratio, drift_floor, structure_samples, reversibility_steps, save_every)
    n_traj, n_times, width = states.shape
    dof = width // 2
    _check_field("system", system, AbstractSystem, "an hnnlab system (hnnlab.systems.AbstractSystem)")
    _check_field("model", model, AbstractVectorField, "an hnnlab model (hnnlab.models.AbstractModel)")
    for name, obj in (("system", system), ("model", model)):
        if obj is not None and obj.dof != dof:
            raise InvalidArgumentError(
                f"the {name} has dof = {obj.dof} but the states have 2 * dof = {width} components"
            )
    if model is not None:
        model_conservative = model.conservative
    elif model_conservative is None:
        model_conservative = True
    if integrator is not None and not isinstance(integrator, AbstractIntegrator):
        from hnnlab.integrators import get_integrator

        integrator = get_integrator(integrator, allow_nonseparable=True)
    if dt is not None:
        from hnnlab.integrators.base import check_dt

        check_dt(dt)
        dt = float(dt)
    skipped = dict(skipped or {})
    t64 = t.detach().to(device="cpu", dtype=torch.float64)
    report = AuditReport(
        source=source,
        kind=kind,
        n_traj=n_traj,
        n_times=n_times,
        dof=dof,
        t0=float(t64[0]),
        t_end=float(t64[-1]),
        dtype=str(states.dtype).removeprefix("torch."),
        system=_describe(system),
        model=_describe(model),
        integrator=integrator.describe() if integrator is not None else None,
        dt=dt,
        save_every=save_every,
        thresholds=thresholds,
        skipped=skipped,
    )
    mask = metrics.finite_prefix_mask(states)  # (n_traj, n_times)
    report.nonfinite = _nonfinite(states, t64, dt, save_every, first_nonfinite_step)
    floor = metrics.default_drift_floor(states.dtype) if drift_floor is None else float(drift_floor)
    energy_errors: dict[str, Tensor] = {}

    with torch.no_grad():
        # -- true energy and invariants --
        if system is None:
            skipped.setdefault("energy", "no system given: the true energy is unknown")
            skipped.setdefault("invariants", "no system given")
        else:
            invariants = _invariants(system, states)
            energy = invariants.pop("energy")
            report.energy, energy_errors["system"] = _energy_audit(
                "system", energy, t64, mask, drift_ratio, floor, _true_energy_note(system, model, model_conservative)
            )
            report.invariants = [
                InvariantAudit(name, *_max_abs_change(series, mask)) for name, series in invariants.items()
            ]
            if not invariants:
                skipped.setdefault("invariants", f"{type(system).__name__} has no invariant besides the energy")

        # -- the model's own energy --
        if energy_model is None and model is not None:
            energy_model = _model_energy(model, states)
        if energy_model is not None:
            note = None if model_conservative else _not_conserved("the model", model)
            report.model_energy, energy_errors["model"] = _energy_audit(
                "model", energy_model, t64, mask, drift_ratio, floor, note
            )
        else:
            skipped.setdefault(
                "model_energy",
                "no model given" if model is None else f"{type(model).__name__} has no energy function",
            )

        # -- accuracy against the reference --
        if reference is None:
            skipped.setdefault("accuracy", "no reference trajectories")
        else:
            report.accuracy = _accuracy(states, reference, t64, mask, vpt_threshold)

    report.balance = _balance(states, t64, mask, system, skipped, inputs)
    if reference is not None and report.balance is not None:  # the reference, driven by the same inputs
        report.reference_balance = _balance(reference, t64, torch.isfinite(reference).all(-1), system, skipped,
                                            inputs)
    report.constraints = _constraints(states, mask, system, model, skipped)

    if lyapunov:
        report.lyapunov = _lyapunov(states, t64, mask, system, model, integrator, dt, save_every, reference,
                                    report.accuracy, vpt_threshold, lyapunov_steps, lyapunov_perturbation, skipped)

    # -- structure of the one-step map (needs gradients) --
    if check_structure:
        report.structure = _structure(
            states, system, model, integrator, dt, structure_samples, reversibility_steps, skipped
        )
    else:
        skipped.setdefault("symplecticity", "structural checks disabled")
        skipped.setdefault("reversibility", "structural checks disabled")

    if plots is not None:
        from hnnlab.audit.plots import write_plots

        names = system.state_names() if system is not None else None
        report.plots = {
            k: str(v)
            for k, v in write_plots(
                plots, t64, states, reference=reference, energy_errors=energy_errors, state_names=names,
                system=system,
            ).items()
        }
    return report


def audit_file(
    path: str | os.PathLike[str],
    *,
    split: str = "test",
    model: AbstractVectorField | None = None,
    thresholds: Thresholds | None = None,
    plots: str | os.PathLike[str] | None = None,
    trajectories: slice | None = None,
    **options: Any,
) -> AuditReport:
    """Audit a rollout file (``schema = "hnnlab.rollout"``) or the clean states of one split of a
    dataset file (``schema = "hnnlab.dataset"``).

    ``model`` is the learned model a rollout came from (for its structural checks and energy; without
    it a model rollout's structural checks are skipped with the reason). ``options`` go to
    :func:`audit_trajectories`.

    Raises:
        RolloutFileError: a missing, non-HDF5, truncated or non-hnnlab file, or one that breaks its spec.
    """
    from hnnlab.audit.sources import load_source

    src = load_source(path, split=split, trajectories=trajectories)
    skipped = dict(src.skipped)
    description = src.model_description
    if description is not None and model is None:
        shown = description.get("class_path") or description.get("class") or description.get("name") or "model"
        reason = (
            "the rollout is of a learned model that was not loaded "
            f"({shown}); "
            "pass model= to audit_file (--ckpt CKPT on the command line) to check its one-step map"
        )
        if description.get("discrete_time"):  # an echo state network: a map on the data's step, no vector field
            reason = (f"a discrete-time forecaster ({description.get('name') or shown}) has no vector field: no "
                      "integrator step to check")
            skipped.setdefault("model_energy", f"{description.get('name') or shown} has no energy function")
            if options.get("lyapunov"):
                skipped.setdefault("lyapunov_model", f"{shown} is a discrete-time forecaster: its own l1 is not "
                                                     "measured (no vector field to propagate tangent vectors with)")
        skipped.setdefault("symplecticity", reason)
        skipped.setdefault("reversibility", reason)
        options.setdefault("check_structure", False)
    report = audit_trajectories(
        src.states,
        src.t,
        system=src.system,
        reference=src.reference,
        model=model,
        integrator=src.integrator,
        dt=src.dt,
        save_every=src.save_every,
        energy_model=src.energy_model,
        inputs=src.inputs,
        # what the file's model description declares (files written before models declared it: True)
        model_conservative=None if description is None else bool(description.get("conservative", True)),
        first_nonfinite_step=src.first_nonfinite_step,
        thresholds=thresholds,
        plots=plots,
        source=str(path),
        kind=src.kind,
        skipped=skipped,
        **options,
    )
    if src.model_description is not None:
        report.model = src.model_description
    report.integrator = src.integrator_description or report.integrator
    return report


# --------------------------------------------------------------------------------------------------


def _balance(
    states: Tensor, t64: Tensor, mask: Tensor, system: Any, skipped: dict[str, str], inputs: Any = None,
) -> Any:
    """The energy balance of an open system over the trajectories finite to the horizon (``None`` with a reason
    when it does not apply)."""
    from hnnlab.systems.port_hamiltonian import AbstractPortHamiltonianSystem

    finite = mask.all(dim=1)
    if system is None:
        reason = "no system given"
    elif not isinstance(system, AbstractPortHamiltonianSystem):
        reason = f"{type(system).__name__} is not an open (port-Hamiltonian) system"
    elif states.shape[1] < 3:
        reason = "fewer than 3 times"
    elif not bool(finite.any()):
        reason = "every trajectory turned non-finite"
    else:
        from hnnlab.audit.balance import energy_balance

        if inputs is None:
            return energy_balance(system, states[finite], t64)
        return energy_balance(system, states[finite], t64, inputs=inputs.values[finite.to(inputs.values.device)],
                              interpolation=inputs.interpolation)
    skipped.setdefault("balance", reason)
    return None


def _constraints(
    states: Tensor, mask: Tensor, system: Any, model: Any, skipped: dict[str, str]
) -> Any:
    """The constraint drift ``max |Phi(x)|`` with the system's constraints (else the model's), ``None`` with a reason
    when neither has any."""
    from hnnlab.models.chnn import AbstractConstrainedModel
    from hnnlab.systems.constrained import AbstractConstrainedSystem

    if isinstance(system, AbstractConstrainedSystem):
        constraints, field, source = system.constraint_set(), system, "system"
    elif isinstance(model, AbstractConstrainedModel) and model.constraints is not None:
        constraints, field, source = model.constraints, model, "model"
    else:
        who = [type(f).__name__ for f in (system, model) if f is not None]
        skipped.setdefault("constraints", f"{' and '.join(who) or 'no system or model'}: no holonomic constraints")
        return None
    from hnnlab.audit.constraints import constraint_audit

    with torch.no_grad():
        xv = field.positions_and_velocities(states.to(torch.float64) if source == "system" else states)
    return constraint_audit(constraints, states, xv[..., states.shape[-1] // 2 :], mask, source)


def _lyapunov(
    states: Tensor, t64: Tensor, mask: Tensor, system: Any, model: Any, integrator: Any, dt: float | None,
    save_every: int | None, reference: Tensor | None, accuracy: AccuracyAudit | None, vpt_threshold: float,
    n_steps: int | None, perturbation: float | None, skipped: dict[str, str],
) -> Any:
    """The Lyapunov section, from the finite trajectories' initial states, with the valid prediction times the
    accuracy audit measured (``None`` with a reason when it cannot be measured)."""
    from hnnlab.audit import lyapunov as ly

    if system is None:
        skipped.setdefault("lyapunov", "no system given: the reference dynamics are unknown")
        return None
    if states.shape[1] < 2 and dt is None:
        skipped.setdefault("lyapunov", "a single saved time and no step size")
        return None
    step = dt if dt is not None else float(t64[1] - t64[0]) / (save_every or 1)
    finite = mask.all(dim=1)  # trajectories finite to the horizon
    vpt = None if accuracy is None else torch.tensor(accuracy.per_trajectory_vpt, dtype=torch.float64)[finite.cpu()]
    return ly.lyapunov_audit(
        system, states[finite, 0].to(torch.float64), dt=step, model=model,
        model_integrator=integrator if model is not None else None, vpt=vpt,
        reference=None if reference is None else reference[finite], t=t64 if reference is not None else None,
        vpt_threshold=vpt_threshold, n_steps=n_steps or ly.DEFAULT_LYAPUNOV_STEPS,
        perturbation=ly.DEFAULT_PERTURBATION if perturbation is None else perturbation,
    )


def _check_inputs(states: Tensor, t: Tensor, reference: Tensor | None, energy_model: Tensor | None) -> None:
    if isinstance(states, Tensor) and not states.is_floating_point():
        raise InvalidArgumentError(
            "states must be a floating tensor (float32 or float64), got dtype "
            f"{str(states.dtype).removeprefix('torch.')} of shape {tuple(states.shape)}; convert with states.double()"
        )
    if not isinstance(states, Tensor) or states.ndim != 3 or states.shape[-1] % 2 or not states.is_floating_point():
        shape = tuple(states.shape) if isinstance(states, Tensor) else type(states).__name__
        raise InvalidArgumentError(
            f"states must be a floating tensor of shape (n_traj, n_times, 2 * dof), got {shape}"
        )
    if states.shape[0] < 1 or states.shape[1] < 1:
        raise InvalidArgumentError(f"states must hold at least one trajectory and one time, got {tuple(states.shape)}")
    if not isinstance(t, Tensor) or t.shape != (states.shape[1],):
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise InvalidArgumentError(f"t must be a tensor of shape (n_times,) = ({states.shape[1]},), got {shape}")
    if states.shape[1] > 1 and not bool((t[1:] > t[:-1]).all()):
        raise InvalidArgumentError("t must be strictly increasing")
    if reference is not None and (not isinstance(reference, Tensor) or reference.shape != states.shape):
        shape = tuple(reference.shape) if isinstance(reference, Tensor) else type(reference).__name__
        raise InvalidArgumentError(f"reference must have the shape of states {tuple(states.shape)}, got {shape}")
    if energy_model is not None and tuple(energy_model.shape) != tuple(states.shape[:2]):
        raise InvalidArgumentError(
            f"energy_model must have shape (n_traj, n_times) = {tuple(states.shape[:2])}, got "
            f"{tuple(energy_model.shape)}"
        )


def _check_options(
    vpt_threshold: Any, drift_ratio: Any, drift_floor: Any, samples: Any, rev_steps: Any, save_every: Any
) -> None:
    for name, value, allow_none in (
        ("vpt_threshold", vpt_threshold, False), ("drift_ratio", drift_ratio, False),
        ("drift_floor", drift_floor, True),
    ):
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0 or (
            name == "vpt_threshold" and value == 0
        ):
            allowed = "> 0" if name == "vpt_threshold" else ">= 0"
            raise InvalidArgumentError(f"{name} must be a finite number {allowed}, got {value!r}")
    for name, value, allow_none in (
        ("structure_samples", samples, False), ("reversibility_steps", rev_steps, False),
        ("save_every", save_every, True),
    ):
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")


def _check_field(name: str, obj: Any, kind: type, what: str) -> None:
    if obj is not None and not isinstance(obj, kind):
        raise InvalidArgumentError(f"{name} must be {what}, got {type(obj).__name__}")


def _describe(obj: AbstractVectorField | None) -> dict[str, Any] | None:
    """A system's or a model's own description; for another field of the protocol, what it declares."""
    if obj is None:
        return None
    if isinstance(obj, AbstractSystem | AbstractModel):
        return obj.describe()
    cls = type(obj)
    return {"class_path": f"{cls.__module__}:{cls.__qualname__}", "dof": obj.dof, "coordinates": obj.coordinates,
            "is_separable": obj.is_separable, "conservative": obj.conservative, "has_energy": obj.has_energy}


def _not_conserved(who: str, field: AbstractVectorField | None) -> str:
    named = f"{who} ({type(field).__name__})" if field is not None else who
    return f"not expected to be conserved: {named} is not conservative"


def _true_energy_note(
    system: AbstractSystem, model: AbstractVectorField | None, model_conservative: bool
) -> str | None:
    """Why the true energy is not expected to be conserved along the states, or ``None`` if it is: the
    system loses (or gains) energy, or the model whose rollout the states are is not conservative."""
    if not system.conservative:
        return _not_conserved("the system", system)
    if not model_conservative:
        return _not_conserved("the model that produced the states", model)
    return None


def _nonfinite(
    states: Tensor, t: Tensor, dt: float | None, save_every: int | None, known: Tensor | None
) -> NonFiniteAudit:
    index = metrics.first_nonfinite_index(states).cpu()  # (n_traj,)
    if known is not None:
        step = known.to(torch.int64).cpu()
        step = torch.where(step < 0, torch.where(index < 0, -1, index * (save_every or 1)), step)
    elif save_every is not None:
        step = torch.where(index < 0, -1, index * save_every)
    elif dt is not None:
        offsets = ((t[index.clamp_min(0)] - t[0]) / dt).round().to(torch.int64)
        step = torch.where(index < 0, -1, offsets)
    else:
        step = index  # saved index: no step size known
    bad = step >= 0
    if not bool(bad.any()):
        return NonFiniteAudit(0, -1, -1, None, step.tolist())
    first_traj = int(torch.where(bad, step, torch.iinfo(torch.int64).max).argmin())
    idx = int(index[first_traj])
    first_time = float(t[idx]) if idx >= 0 else None
    return NonFiniteAudit(int(bad.sum()), int(step[first_traj]), first_traj, first_time, step.tolist())


def _invariants(system: AbstractSystem, states: Tensor) -> dict[str, Tensor]:
    flat = states.reshape(-1, states.shape[-1])
    return {k: v.reshape(states.shape[:2]) for k, v in system.invariants(flat).items()}


def _model_energy(model: AbstractVectorField, states: Tensor) -> Tensor | None:
    if not model.has_energy:
        return None
    model, _ = _as_run(model, states.dtype)  # the energy of the model as it ran
    x = states.reshape(-1, states.shape[-1])
    x = x.to(dtype=_field_dtype(model, states.dtype), device=_field_device(model, states.device))
    finite = torch.isfinite(x).all(dim=-1)
    x = torch.where(finite[:, None], x, torch.zeros_like(x))  # keep NaN out of the network
    e = model.energy(x)
    if e is None:
        return None
    e = torch.where(finite, e.reshape(-1), torch.nan).to(device="cpu", dtype=torch.float64)
    return e.reshape(states.shape[:2])


def _energy_audit(
    source: str, energy: Tensor, t: Tensor, mask: Tensor, ratio: float, floor: float, not_conserved: str | None
) -> tuple[EnergyAudit, Tensor]:
    energy = energy.detach().cpu()
    mask = mask.cpu()
    deviation = metrics.relative_deviation(energy)  # (n_traj, n_times), signed
    err = deviation.abs()
    per_max = metrics.masked_max(err, mask)
    rms_all = torch.where(mask, err, 0.0).pow(2).sum() / mask.sum().clamp_min(1)
    last = mask.sum(dim=1) - 1  # last finite index per trajectory
    final = err[torch.arange(err.shape[0]), last.clamp_min(0)]
    fit = metrics.secular_drift(deviation, t, mask, ratio=ratio, floor=floor)
    determined = fit.determined
    if bool(determined.any()):
        k = int(torch.where(determined, fit.drift.abs(), -1.0).argmax())
        drift, rate = float(fit.drift[k]), float(fit.rate[k])
        oscillation = float(torch.where(determined, fit.oscillation, -1.0).max())
        verdict = "drifting" if bool(fit.drifting.any()) else "bounded"
    else:
        drift = rate = oscillation = math.nan
        verdict = "undetermined"
    audit = EnergyAudit(
        source=source,
        max_error=_nanmax(per_max),
        rms_error=float(rms_all.sqrt()),
        final_error=_nanmax(final),
        drift=drift,
        drift_rate=rate,
        oscillation=oscillation,
        verdict=verdict,
        n_drifting=int(fit.drifting.sum()),
        drift_ratio=float(ratio),
        drift_floor=float(floor),
        expected_conserved=not_conserved is None,
        note=not_conserved,
        per_trajectory_max_error=per_max.tolist(),
        per_trajectory_drift=fit.drift.tolist(),
    )
    return audit, torch.where(mask, err, torch.nan)


def _max_abs_change(series: Tensor, mask: Tensor) -> tuple[float, list[float]]:
    per = metrics.masked_max(metrics.invariant_error(series.detach().cpu()), mask.cpu())
    return _nanmax(per), per.tolist()


def _accuracy(states: Tensor, reference: Tensor, t: Tensor, mask: Tensor, vpt_threshold: float) -> AccuracyAudit:
    states, reference = states.detach().cpu(), reference.detach().cpu()
    vpt, censored = metrics.valid_prediction_time(states, reference, t, threshold=vpt_threshold)
    gm = metrics.geometric_mean_relative_error(states, reference)
    return AccuracyAudit(
        mse=metrics.mse(states, reference, mask.cpu()),
        gmre=metrics.geometric_mean(gm),
        vpt_threshold=float(vpt_threshold),
        vpt_min=float(vpt.min()),
        vpt_mean=float(vpt.mean()),
        vpt_median=float(vpt.median()),
        n_censored=int(censored.sum()),
        horizon=float(t[-1] - t[0]),
        per_trajectory_vpt=vpt.tolist(),
        per_trajectory_gmre=gm.tolist(),
    )


def _structure(
    states: Tensor,
    system: AbstractSystem | None,
    model: AbstractVectorField | None,
    integrator: AbstractIntegrator | None,
    dt: float | None,
    n_samples: int,
    reversibility_steps: int,
    skipped: dict[str, str],
) -> StructureAudit | None:
    field_name, f = ("model", model) if model is not None else ("system", system)
    reason = None
    if f is None:
        reason = "no vector field: pass model= or system="
    elif integrator is None:
        reason = "no integrator given: the one-step map is unknown"
    elif integrator.adaptive:
        reason = f"integrator {integrator.name!r} is adaptive: there is no fixed one-step map to check"
    elif dt is None:
        reason = "no step size dt given: the one-step map is unknown"
    if reason is not None:
        skipped.setdefault("symplecticity", reason)
        skipped.setdefault("reversibility", reason)
        return None
    x0 = states[:, 0]
    x0 = x0[torch.isfinite(x0).all(dim=-1)][:n_samples]
    if x0.shape[0] == 0:
        skipped.setdefault("symplecticity", "no finite initial state to check")
        skipped.setdefault("reversibility", "no finite initial state to check")
        return None
    notes: list[str] = []
    f, cast = _as_run(f, states.dtype)
    if cast is not None:
        notes.append(f"the {field_name} was measured in {cast}, the dtype of the states it produced (as it ran)")
    x0 = x0.to(dtype=_field_dtype(f, states.dtype), device=_field_device(f, states.device))
    if integrator.requires_separable and not f.is_separable:
        notes.append(
            f"integrator {integrator.name!r} is symplectic only for a separable H, but the {field_name} declares "
            "is_separable=False: the pair was measured as run"
        )
    if not f.conservative:
        notes.append(f"the {field_name} is not conservative: its exact flow is neither symplectic nor reversible")
    step = structure.one_step_map(f, integrator, dt)
    sympl = volume = rev = None
    coordinates = f.coordinates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if coordinates != "canonical":
            skipped.setdefault(
                "symplecticity",
                f"the {field_name}'s states are {coordinates} (q, q_dot), not canonical (q, p): the canonical "
                "symplectic form does not apply",
            )
        else:
            try:
                jac = structure.step_jacobian(step, x0)
                sympl = float(structure.symplecticity_error(jac).max())
                volume = float(structure.volume_error(jac).max())
            except HnnlabError as exc:
                skipped.setdefault("symplecticity", f"the one-step map failed: {exc}")
        try:
            rev = float(structure.reversibility_error(step, x0, reversibility_steps).max())
        except HnnlabError as exc:
            skipped.setdefault("reversibility", f"the one-step map failed: {exc}")
    return StructureAudit(
        field=field_name,
        integrator=integrator.name,
        dt=dt,
        n_samples=int(x0.shape[0]),
        symplecticity_error=sympl,
        volume_error=volume,
        reversibility_error=rev,
        reversibility_steps=reversibility_steps,
        notes=notes,
    )


def _as_run(f: AbstractVectorField, dtype: torch.dtype) -> tuple[AbstractVectorField, str | None]:
    """``f`` in the floating ``dtype`` of the states it produced: a model whose parameters are in another
    dtype (a float32 checkpoint rolled out in float64, which casts it) is copied and cast, so that its
    one-step map is measured as it ran. Returns the field and the cast (``"float32 -> float64"``) or ``None``."""
    own = _field_dtype(f, dtype)
    if own == dtype or not isinstance(f, nn.Module) or dtype not in (torch.float32, torch.float64):
        return f, None
    cast = f"{str(own).removeprefix('torch.')} -> {str(dtype).removeprefix('torch.')}"
    return copy.deepcopy(f).to(dtype=dtype), cast


def _field_dtype(f: AbstractVectorField, default: torch.dtype) -> torch.dtype:
    """The dtype of a model's parameters (a system, which has none, takes the states' dtype)."""
    if isinstance(f, nn.Module):
        for p in f.parameters():
            if p.is_floating_point():
                return p.dtype
    return default


def _field_device(f: AbstractVectorField, default: torch.device) -> torch.device:
    if isinstance(f, nn.Module):
        for p in f.parameters():
            return p.device
    return default


def _nanmax(x: Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.max()) if x.numel() else math.nan
