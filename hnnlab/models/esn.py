"""An echo state network (reservoir computing): the discrete-time baseline of the chaos benchmarks.

A leaky tanh reservoir of ``n_reservoir`` units driven by the (standardised) state ``u_k`` of a trajectory,

    r_{k+1} = (1 - alpha) r_k + alpha tanh(W r_k + W_in u_k + b),

with a random sparse ``W`` scaled to spectral radius ``rho`` and a random dense ``W_in`` scaled by
``input_scale``; a linear readout predicts the next state's increment,

    u_{k+1} = u_k + W_out [1, u_k, r_{k+1}],

fitted in closed form by ridge regression on teacher-forced trajectories (the true ``u_k`` drives the
reservoir; the first ``washout`` steps of each are left out of the fit). A forecast warms the reservoir up on
the first ``warmup`` true states of a trajectory (teacher forcing), then runs autonomously, feeding its own
output back. Everything is batched over trajectories: one reservoir state per trajectory, the same weights.

It is a discrete-time forecaster (Jaeger 2001; Pathak et al. 2018 for chaotic systems; Gilpin 2023's
benchmark of 135 chaotic systems, where such models are strong when data are scarce), not a vector field:
it predicts on the step it was fitted on (the dataset's own step) and has no energy. hnnlab implements it in
torch rather than using reservoirpy so that it batches over trajectories, runs on the GPU and in float64 like
every other model, and saves through ``state_dict`` (a fitted network with what it was fitted on:
:mod:`hnnlab.esn_io`). With the same reservoir matrices, reservoirpy 0.4.2 gives the same forecast to round-off
(docs/training.md, "Echo state network").
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from hnnlab.errors import InvalidArgumentError
from hnnlab.models.mlp import check_positive_int


def _check_fraction(name: str, value: float, *, low: float, high: float, closed_low: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low <= value if closed_low else low < value) and value <= high
    if not ok:
        bracket = "[" if closed_low else "("
        raise InvalidArgumentError(f"EchoStateNetwork: {name} must be a number in {bracket}{low:g}, {high:g}], got "
                                   f"{value!r}")
    return float(value)


class EchoStateNetwork(nn.Module):
    """A leaky echo state network on states of size ``dim`` (``2 * dof``).

    Args:
        dim: state size.
        n_reservoir: reservoir units.
        spectral_radius: ``rho``, the largest modulus of ``W``'s eigenvalues after scaling, in ``(0, 2]``.
        leak: ``alpha`` in ``(0, 1]``.
        input_scale: scale of ``W_in`` (uniform in ``[-input_scale, input_scale]``), ``> 0``.
        density: fraction of non-zero entries of ``W``, in ``(0, 1]``.
        ridge: the ridge regularisation ``beta >= 0`` of the readout.
        seed: the seed of the random weights (the reservoir is fixed, only the readout is fitted).
    """

    def __init__(
        self,
        dim: int,
        n_reservoir: int = 500,
        *,
        spectral_radius: float = 0.9,
        leak: float = 1.0,
        input_scale: float = 0.5,
        density: float = 0.05,
        ridge: float = 1e-6,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.n_reservoir = check_positive_int("n_reservoir", n_reservoir)
        self.spectral_radius = _check_fraction("spectral_radius", spectral_radius, low=0.0, high=2.0)
        self.leak = _check_fraction("leak", leak, low=0.0, high=1.0)
        self.input_scale = _check_fraction("input_scale", input_scale, low=0.0, high=math.inf)
        self.density = _check_fraction("density", density, low=0.0, high=1.0)
        self.ridge = _check_fraction("ridge", ridge, low=0.0, high=math.inf, closed_low=True)
        self.seed = int(seed)
        g = torch.Generator().manual_seed(self.seed)
        n = self.n_reservoir
        w = torch.rand(n, n, generator=g, dtype=torch.float64) * 2 - 1
        w = w * (torch.rand(n, n, generator=g, dtype=torch.float64) < self.density)
        radius = torch.linalg.eigvals(w).abs().max().item()
        if radius == 0.0:
            raise InvalidArgumentError(f"EchoStateNetwork: the reservoir matrix is zero (density {self.density} "
                                       f"with {n} units); raise density or n_reservoir")
        self.register_buffer("w", (w * (self.spectral_radius / radius)).to(dtype))
        w_in = (torch.rand(n, self.dim, generator=g, dtype=torch.float64) * 2 - 1) * self.input_scale
        self.register_buffer("w_in", w_in.to(dtype))
        self.register_buffer("bias", ((torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 0.1).to(dtype))
        self.register_buffer("w_out", torch.zeros(1 + self.dim + n, self.dim, dtype=dtype))
        self.register_buffer("mean", torch.zeros(self.dim, dtype=dtype))
        self.register_buffer("scale", torch.ones(self.dim, dtype=dtype))
        self.register_buffer("fitted", torch.tensor(False))

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this reservoir (with the fitted buffers, the whole model)."""
        return {"dim": self.dim, "n_reservoir": self.n_reservoir, "spectral_radius": self.spectral_radius,
                "leak": self.leak, "input_scale": self.input_scale, "density": self.density, "ridge": self.ridge,
                "seed": self.seed}

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable self-description for rollout metadata.

        ``discrete_time: True`` says what the audit needs to know: the model is a map on the step it was fitted
        on, with no vector field (so no symplecticity or reversibility of a one-step map to check) and no energy.
        """
        cls = type(self)
        return {"name": "esn", "class_path": f"{cls.__module__}:{cls.__qualname__}",
                "init_args": self.hyperparameters(), "discrete_time": True, "has_energy": False}

    # -- the reservoir ---------------------------------------------------------------------------------------

    def _check(self, states: Tensor, name: str, min_times: int) -> None:
        if not isinstance(states, Tensor) or states.ndim != 3 or states.shape[-1] != self.dim:
            shape = tuple(states.shape) if isinstance(states, Tensor) else type(states).__name__
            raise InvalidArgumentError(f"{name} must have shape (n_traj, n_times, {self.dim}), got {shape}")
        if states.shape[1] < min_times:
            raise InvalidArgumentError(f"{name} must have at least {min_times} times, got {states.shape[1]}")
        if not bool(torch.isfinite(states).all()):
            raise InvalidArgumentError(f"{name} holds NaN or infinite values")

    def _drive(self, r: Tensor, u: Tensor) -> Tensor:
        """One reservoir update from ``r`` ``(n, N)`` driven by standardised ``u`` ``(n, dim)``."""
        pre = r @ self.w.T + u @ self.w_in.T + self.bias
        return (1 - self.leak) * r + self.leak * torch.tanh(pre)

    def _features(self, r: Tensor, u: Tensor) -> Tensor:
        return torch.cat([torch.ones_like(u[:, :1]), u, r], dim=-1)

    def _teacher_forced(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Reservoir states after each input ``(n, T, N)`` and readout features ``(n, T, 1 + dim + N)`` for the
        standardised trajectories ``z`` ``(n, T, dim)``."""
        n, times, _ = z.shape
        r = torch.zeros(n, self.n_reservoir, dtype=z.dtype, device=z.device)
        feats = []
        for k in range(times):
            r = self._drive(r, z[:, k])
            feats.append(self._features(r, z[:, k]))
        return r, torch.stack(feats, dim=1)

    # -- fitting and forecasting -----------------------------------------------------------------------------

    @torch.no_grad()
    def fit(self, trajectories: Tensor, *, washout: int = 50) -> dict[str, float]:
        """Fit the readout on teacher-forced trajectories ``(n_traj, n_times, dim)`` sampled on one step.

        Returns ``{"train_mse": ..., "n_samples": ...}`` (one-step MSE of the standardised states).
        """
        if isinstance(washout, bool) or not isinstance(washout, int) or washout < 0:
            raise InvalidArgumentError(f"EchoStateNetwork.fit: washout must be an integer >= 0, got {washout!r}")
        self._check(trajectories, "trajectories", washout + 2)
        x = trajectories.to(self.w.dtype)
        self.mean.copy_(x.flatten(0, 1).mean(0))
        self.scale.copy_(x.flatten(0, 1).std(0).clamp_min(torch.finfo(x.dtype).eps))
        z = (x - self.mean) / self.scale
        _, feats = self._teacher_forced(z[:, :-1])
        f = feats[:, washout:].flatten(0, 1)  # (samples, 1 + dim + N)
        y = (z[:, washout + 1:] - z[:, washout:-1]).flatten(0, 1)  # increments (samples, dim)
        gram = f.T @ f
        gram.diagonal().add_(self.ridge * f.shape[0])
        gram[0, 0] -= self.ridge * f.shape[0]  # the bias is not regularised
        self.w_out.copy_(torch.linalg.solve(gram, f.T @ y))
        self.fitted.fill_(True)
        mse = float(((f @ self.w_out - y) ** 2).mean())
        return {"train_mse": mse, "n_samples": float(f.shape[0])}

    def forecast(self, warmup: Tensor, n_steps: int) -> Tensor:
        """Teacher-force the reservoir on ``warmup`` ``(n_traj, n_warmup, dim)`` (the true first states), then
        predict ``n_steps`` steps autonomously from the last warm-up state.

        Returns ``(n_traj, n_steps + 1, dim)``: the last warm-up state followed by the forecast, in the dtype
        of ``warmup``.
        """
        return torch.cat(list(self.iter_forecast(warmup, n_steps)), dim=1)

    def iter_forecast(self, warmup: Tensor, n_steps: int, *, chunk_size: int = 256) -> Iterator[Tensor]:
        """:meth:`forecast` in chunks of at most ``chunk_size`` saved states ``(n_traj, chunk_len, dim)``, in
        time order (the first chunk starts with the last warm-up state): memory does not grow with ``n_steps``.
        The arguments are checked and the reservoir warmed up when this is called, before the first chunk."""
        if not bool(self.fitted):
            raise InvalidArgumentError("EchoStateNetwork.forecast: the readout is not fitted; call fit() first")
        check_positive_int("n_steps", n_steps)
        check_positive_int("chunk_size", chunk_size)
        self._check(warmup, "warmup", 1)
        with torch.no_grad():
            z = (warmup.to(self.w.dtype) - self.mean) / self.scale
            r = torch.zeros(z.shape[0], self.n_reservoir, dtype=z.dtype, device=z.device)
            for k in range(z.shape[1] - 1):  # teacher forcing: the true states drive the reservoir
                r = self._drive(r, z[:, k])
        return self._autonomous(r, warmup[:, -1], n_steps, chunk_size)

    @torch.no_grad()
    def _autonomous(self, r: Tensor, x_last: Tensor, n_steps: int, chunk_size: int) -> Iterator[Tensor]:
        """The autonomous forecast from reservoir ``r`` ``(n, N)`` and the last warm-up state ``x_last``
        ``(n, dim)`` (returned first, exactly): each prediction is fed back as the next input."""
        u = (x_last.to(self.w.dtype) - self.mean) / self.scale
        pending = [x_last]  # states in the caller's dtype, (n, dim) each
        for _ in range(n_steps):
            if len(pending) >= chunk_size:
                yield torch.stack(pending, dim=1)  # (n, chunk_len, dim)
                pending = []
            r = self._drive(r, u)
            u = u + self._features(r, u) @ self.w_out
            pending.append((u * self.scale + self.mean).to(x_last.dtype))
        yield torch.stack(pending, dim=1)
