"""Training losses as pure functions of a model and a batch.

Batches come from :mod:`hnnlab.data`: pairs ``{"x": (B, 2 * dof), "dxdt": (B, 2 * dof)}`` or windows
``{"states": (B, k + 1, 2 * dof), "t": (B, k + 1)}`` (with ``"u"``, ``(B, k + 1, n_inputs)``, in files with inputs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from hnnlab.dynamics import input_gradient
from hnnlab.inputs import DrivenField, InputSignal
from hnnlab.integrators.base import AbstractIntegrator
from hnnlab.rollout import solve

Metric = Literal["mse", "l1"]


def distance(pred: Tensor, target: Tensor, metric: Metric = "mse") -> Tensor:
    """Mean squared (``"mse"``) or mean absolute (``"l1"``) error over all entries."""
    if metric == "mse":
        return torch.mean((pred - target) ** 2)
    return torch.mean(torch.abs(pred - target))


def derivative_loss(
    model: Callable, x: Tensor, dxdt: Tensor, metric: Metric = "mse", t: Tensor | float = 0.0,
    u: Tensor | None = None,
) -> Tensor:
    """The published HNN/LNN loss: match the model's ``dx/dt`` to the true one at the same states (at their times
    ``t`` ``(B,)``, which only time-dependent models read; with the inputs ``u`` ``(B, n_inputs)`` for a model that
    takes inputs, through its ``field_with_inputs``)."""
    pred = model(t, x) if u is None else model.field_with_inputs(t, x, u)
    return distance(pred, dxdt, metric)


def rollout_states(
    model: Callable, integrator: AbstractIntegrator, x0: Tensor, dt: float, n_steps: int, substeps: int = 1,
    *, t0: Tensor | None = None, inputs: InputSignal | None = None,
) -> Tensor:
    """Predicted states after ``1..n_steps`` steps of ``dt`` (each split in ``substeps``), ``(B, n_steps, 2 * dof)``.

    One :func:`~hnnlab.rollout.solve` (a window that turns non-finite is NaN from its first bad step, so the
    loss says so). Differentiable: gradients flow through every integrator step into the model's parameters.

    A model that takes inputs or depends on time is integrated as a :class:`~hnnlab.inputs.DrivenField`: every row
    from local time 0, with its own start time ``t0`` ``(B,)`` (the field sees ``t0_b + t``) and its own ``inputs``
    (an :class:`~hnnlab.inputs.InputSignal` of ``B`` rows sampled on the local times ``0, dt, ..., n_steps dt``).
    """
    field = model
    if inputs is not None or t0 is not None:
        field = DrivenField(model, inputs, t_start=None if t0 is None else t0.detach().to(torch.float64))
    return solve(field, integrator, x0, dt / substeps, n_steps * substeps, save_every=substeps).ys[:, 1:]


def rollout_loss(
    model: Callable,
    integrator: AbstractIntegrator,
    states: Tensor,
    dt: float,
    metric: Metric = "mse",
    substeps: int = 1,
    *,
    t: Tensor | None = None,
    u: Tensor | None = None,
    interpolation: str = "zoh",
) -> tuple[Tensor, Tensor]:
    """Multi-step loss over windows ``(B, k + 1, 2 * dof)``: roll out ``k`` steps from the first state.

    For a model that depends on time or takes inputs, ``t`` ``(B, k + 1)`` are the windows' saved times and ``u``
    ``(B, k + 1, n_inputs)`` their inputs, interpolated by ``interpolation`` (``"zoh"`` or ``"linear"``, the
    dataset's): each window is integrated from its own start time, driven by its own inputs
    (:func:`rollout_states`).

    Returns the loss and the predicted states ``(B, k, 2 * dof)``.
    """
    k = states.shape[1] - 1
    t0 = inputs = None
    if u is not None:
        local = torch.arange(k + 1, dtype=torch.float64) * dt  # (k + 1,): every window from 0
        inputs = InputSignal(local, u, interpolation)
    if t is not None:
        t0 = t[:, 0]
    pred = rollout_states(model, integrator, states[:, 0], dt, k, substeps, t0=t0, inputs=inputs)
    return distance(pred, states[:, 1:], metric), pred


def energy_flow_penalty(energy: Callable[[Tensor], Tensor], x: Tensor, dxdt: Tensor) -> Tensor:
    """``mean((grad E(x) . dx/dt_true)^2)``: the learned energy should be constant along the true flow."""
    grad = input_gradient(energy, x, create_graph=True)
    return torch.mean((grad * dxdt).sum(-1) ** 2)


def energy_drift_penalty(energy: Callable[[Tensor], Tensor], predicted: Tensor, x0: Tensor) -> Tensor:
    """``mean((E(x_t) - E(x_0))^2)`` over predicted window states ``(B, k, 2 * dof)``."""
    e0 = energy(x0)  # (B,)
    return torch.mean((energy(predicted) - e0[:, None]) ** 2)
