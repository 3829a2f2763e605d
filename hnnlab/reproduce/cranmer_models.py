"""The networks of the Cranmer et al. 2020 comparison: the LNN with the paper's initialisation, the MLP
baseline and hnnlab's Structured LNN, each behind the same input map of the angles and velocities."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hnnlab.errors import InvalidArgumentError

MODELS: tuple[str, ...] = ("LNN", "MLP baseline", "Structured LNN")


def cranmer_init(mlp: nn.Module, generator: torch.Generator | None = None) -> None:
    """The paper's LNN initialisation (``custom_init`` in its ``lnn.py``): zero biases and normal weights
    of std ``s / sqrt(n)``, ``n`` the larger side of the layer, with ``s = 2.2`` for the first layer,
    ``0.58 i`` for hidden layer ``i = 1, 2, ...`` and ``s = n`` for the output layer."""
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for i, layer in enumerate(linears):
            n = max(layer.weight.shape)
            scale = 2.2 if i == 0 else (float(n) if i == len(linears) - 1 else 0.58 * i)
            layer.weight.normal_(0.0, scale / math.sqrt(n), generator=generator)
            if layer.bias is not None:
                layer.bias.zero_()


class NetworkInput(nn.Module):
    """``(q, q_dot) -> (a(q), q_dot / s)`` in front of a network; given ``q`` alone (``(..., dof)``), only
    ``a(q)`` (the Structured LNN's ``M(q)`` and ``V(q)`` see the angles only).

    ``angles`` chooses ``a``:

    - ``"features"``: ``(cos q, sin q)``, exactly periodic and smooth in the angles;
    - ``"wrap"``: ``q mod 2 pi``, the paper's (its ``lagrangian_eom``): a network trained on angles in
      ``[0, 2 pi)`` is never asked about angles outside, and ``d(q mod 2 pi)/dq = 1``, so every derivative
      the Euler-Lagrange equations need is unchanged away from the wrap. But the learned field jumps at
      ``q = 0``, the pendulum's rest position, which every swing crosses, and an adaptive solver stalls
      on the jump (the results page's notes);
    - ``"raw"``: ``q`` itself.

    ``s`` (``velocity_scale``) rescales the velocities (1: the paper's raw ones).
    """

    def __init__(self, dof: int, angles: str, velocity_scale: float = 1.0) -> None:
        super().__init__()
        self.dof, self.angles, self.velocity_scale = dof, angles, velocity_scale

    def forward(self, x: Tensor) -> Tensor:
        q, rest = x[..., : self.dof], x[..., self.dof :]
        if self.angles == "features":
            mapped = [torch.cos(q), torch.sin(q)]
        elif self.angles == "wrap":
            mapped = [torch.remainder(q, 2 * math.pi)]
        else:
            mapped = [q]
        return torch.cat([*mapped, rest / self.velocity_scale], dim=-1)  # (..., width)


ANGLE_INPUTS = ("features", "wrap", "raw")


def _angle_input(angles: str, dof: int, velocity_scale: float = 1.0) -> tuple[nn.Module | None, int]:
    """The input module for ``angles`` and ``velocity_scale``, and the network's input width."""
    if isinstance(velocity_scale, bool) or not isinstance(velocity_scale, int | float) or not (
        math.isfinite(velocity_scale) and velocity_scale > 0
    ):
        raise InvalidArgumentError(f"cranmer: velocity_scale must be a finite number > 0, got {velocity_scale!r}")
    if angles not in ANGLE_INPUTS:
        raise InvalidArgumentError(f"cranmer: angles must be one of {', '.join(ANGLE_INPUTS)}, got {angles!r}")
    width = (3 if angles == "features" else 2) * dof
    if angles == "raw" and velocity_scale == 1:
        return None, width  # the network sees the state itself
    return NetworkInput(dof, angles, velocity_scale), width


def make_model(name: str, hidden: Sequence[int], *, init: str = "cranmer", angles: str = "features",
               velocity_scale: float = 1.0) -> nn.Module:
    """``"LNN"``: :class:`~hnnlab.models.LNN` (mass matrix solved in float64); ``"MLP baseline"``:
    :class:`~hnnlab.models.SecondOrderNeuralODE`; both softplus MLPs of widths ``hidden``.
    ``"Structured LNN"`` (hnnlab's addition): :class:`~hnnlab.models.StructuredLNN`,
    ``L = q_dot^T M(q) q_dot / 2 - V(q)``, with two softplus MLPs of widths ``hidden`` for ``M`` and ``V``.

    ``init="cranmer"`` initialises the LNN's network as the paper did. ``angles`` is what the networks
    see of the angles: ``"features"`` (cos q, sin q), ``"wrap"`` (q mod 2 pi, the paper's) or ``"raw"``;
    they see the velocities divided by ``velocity_scale``."""
    from hnnlab.models import LNN, MLP, SecondOrderNeuralODE, StructuredLNN

    if init not in ("cranmer", "default"):
        raise InvalidArgumentError(f"cranmer: init must be 'cranmer' or 'default', got {init!r}")
    front, width = _angle_input(angles, 2, velocity_scale)
    if name == "Structured LNN":
        # M and V are functions of q alone: the same angle map, applied to q (width: the q part only).
        q_width = width - 2

        def net(out: int, bias_last: bool) -> nn.Module:
            mlp = MLP(q_width, tuple(hidden), out, "softplus", bias_last=bias_last)
            return mlp if front is None else nn.Sequential(front, mlp)  # front: no parameters, shared

        return StructuredLNN(2, mass_net=net(3, True), potential_net=net(1, False), solve_dtype="float64")
    if name == "LNN":
        mlp = MLP(width, tuple(hidden), 1, "softplus")
        if init == "cranmer":
            cranmer_init(mlp)
        return LNN(2, tuple(hidden), "softplus", solve_dtype="float64",
                   net=mlp if front is None else nn.Sequential(front, mlp))
    if name == "MLP baseline":
        # The baseline's default network, built and dropped: its draws of the global RNG come first, as
        # they always have, so that a seed gives the published numbers.
        MLP(4, tuple(hidden), 2, "softplus", bias_last=True)
        mlp = MLP(width, tuple(hidden), 2, "softplus", bias_last=True)
        net = mlp if front is None else nn.Sequential(front, mlp)
        return SecondOrderNeuralODE(2, tuple(hidden), "softplus", net=net)
    raise InvalidArgumentError(f"cranmer: unknown model {name!r}; models: {', '.join(MODELS)}")
