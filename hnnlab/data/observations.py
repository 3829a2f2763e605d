"""Observation models: partial, noisy, sparse views of clean simulated states.

Real measurements give positions, not momenta, with noise, and not at every integration step.
:func:`make_observations` turns clean states ``(n_traj, n_times, 2 * dof)`` into observations

    y_k = H x(t_{k * every}) + eps_k,    eps_k ~ N(0, noise_std^2 I),

where ``H`` selects the positions (``observe="q"``, the first ``dof`` components) or the whole state
(``observe="state"``). The clean states stay where they were (in the dataset's ``state`` field) for evaluation;
the observation model is described by a JSON-serialisable dict stored as the dataset's root attribute
``observation``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from hnnlab.errors import InvalidArgumentError
from hnnlab.systems.base import normal

OBSERVE_CHOICES = ("q", "state")


def observed_indices(observe: str, dof: int) -> list[int]:
    """Indices of the state components that ``observe`` measures: ``0..dof-1`` for ``"q"``, all for ``"state"``."""
    if observe not in OBSERVE_CHOICES:
        raise InvalidArgumentError(f"observe must be one of {', '.join(map(repr, OBSERVE_CHOICES))}, got {observe!r}")
    if isinstance(dof, bool) or not isinstance(dof, int) or dof < 1:
        raise InvalidArgumentError(f"dof must be an integer >= 1, got {dof!r}")
    return list(range(dof)) if observe == "q" else list(range(2 * dof))


def make_observations(
    states: Tensor,
    t: Tensor,
    *,
    observe: str,
    noise_std: float,
    every: int,
    state_names: Sequence[str],
    dof: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Noisy observations of ``states`` at every ``every``-th saved time.

    Args:
        states: clean states ``(n_traj, n_times, 2 * dof)``.
        t: saved times ``(n_times,)``.
        observe: ``"q"`` (positions, the first ``dof`` components) or ``"state"`` (all ``2 * dof``).
        noise_std: standard deviation of the additive Gaussian noise, a finite number ``>= 0``.
        every: keep the saved times ``t[::every]``, an integer ``>= 1``.
        state_names: the ``2 * dof`` names of the state components (``system.state_names()``).
        dof: degrees of freedom.
        generator: draws the noise (float64 on the CPU, one ``randn`` of the observations' shape), so the same
            generator state gives the same observations; nothing is drawn when ``noise_std == 0``.

    Returns:
        ``(obs_t, obs, description)``: times ``(n_obs,)`` equal to ``t[::every]``, observations
        ``(n_traj, n_obs, n_obs_dims)`` in the dtype and on the device of ``states``, and
        ``{"observe", "noise_std", "every", "names", "seed"}`` (``seed`` is ``generator.initial_seed()``).
    """
    index = observed_indices(observe, dof)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise InvalidArgumentError(f"every must be an integer >= 1, got {every!r}")
    if (isinstance(noise_std, bool) or not isinstance(noise_std, int | float) or not math.isfinite(noise_std)
            or noise_std < 0):
        raise InvalidArgumentError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    if not isinstance(generator, torch.Generator):
        raise InvalidArgumentError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if not isinstance(states, Tensor) or states.ndim != 3 or states.shape[-1] != 2 * dof:
        shape = tuple(states.shape) if isinstance(states, Tensor) else type(states).__name__
        raise InvalidArgumentError(f"states must have shape (n_traj, n_times, 2 * dof = {2 * dof}), got {shape}")
    if not isinstance(t, Tensor) or t.shape != (states.shape[1],):
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise InvalidArgumentError(f"t must have shape (n_times,) = ({states.shape[1]},), got {shape}")
    names = list(state_names)
    if len(names) != 2 * dof:
        raise InvalidArgumentError(f"state_names must have 2 * dof = {2 * dof} entries, got {len(names)}: {names!r}")

    obs_t = t[::every].clone()  # (n_obs,)
    clean = states[:, ::every][..., index]  # (n_traj, n_obs, n_obs_dims)
    if noise_std > 0:
        noise = normal(tuple(clean.shape), generator)  # float64, CPU: the same numbers on every device
        obs = (clean.to(torch.float64) + noise_std * noise.to(clean.device)).to(states.dtype)
    else:
        obs = clean.clone()
    description = {
        "observe": observe,
        "noise_std": float(noise_std),
        "every": every,
        "names": [names[i] for i in index],
        "seed": int(generator.initial_seed()),
    }
    return obs_t, obs.contiguous(), description
