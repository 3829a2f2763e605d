"""Port-Hamiltonian neural network: a learned energy, dissipation, external force and input map."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from hnnlab.dynamics import input_gradient, symplectic_gradient
from hnnlab.errors import InvalidArgumentError
from hnnlab.models.base import AbstractModel
from hnnlab.models.mlp import MLP, scalar_output
from hnnlab.models.registry import register_model

DISSIPATIONS: tuple[str, ...] = ("none", "constant", "state")
FORCES: tuple[str, ...] = ("none", "time", "state_time")
INPUT_MAPS: tuple[str, ...] = ("constant", "state")
Known = Sequence[float] | Sequence[Sequence[float]]


@register_model("phnn")
class PortHamiltonianNN(AbstractModel):
    """Port-Hamiltonian neural network (after the pseudo-Hamiltonian networks of Eidnes et al. 2023):

        ``dx/dt = (J - R(x)) grad H(x) + F(t, x) + G(x) u(t)``,   ``x = (q, p)``,  ``J = [[0, I], [-I, 0]]``,

    with a learned ``H`` (a general network, or ``T(p) + V(q)`` with ``separable=True``), a dissipation that acts
    on the momenta as mechanical damping does, ``R = diag(0, R_p)`` with ``R_p = L L^T`` (positive semi-definite by
    construction, ``L`` lower triangular: a constant matrix or a network of the state), an external force on the
    momenta ``F = (0, f)`` (a network of ``t`` or of ``(x, t)``), and an input map on the momenta ``G = (0, g)``
    (``dof x n_inputs``, constant or a network of the state). Every part can instead be fixed to a known value:
    ``dissipation`` and ``input_map`` accept numbers, ``net`` and ``force_net`` accept modules (a module without
    parameters, e.g. the true ``H``, is not trained).

    Energy balance: ``dH/dt = -grad_p H^T R_p grad_p H + grad_p H^T (f + g u)``; the dissipated part is ``<= 0``
    whatever the weights. Not separable (the damping makes ``dp/dt`` depend on ``p``), not conservative.

    A model with ``n_inputs > 0`` needs its inputs: evaluate it with :meth:`field_with_inputs` or wrap it,
    ``hnnlab.inputs.DrivenField(model, inputs)``; ``model(t, x)`` alone is refused. Training by derivative matching
    uses the time ``t`` and inputs ``u`` of each data pair.

    Args:
        dof: degrees of freedom; states are ``(..., 2 * dof)``.
        hidden, activation, orthogonal_init: the default networks (MLPs).
        separable: learn ``H = T(p) + V(q)`` with two networks instead of one network of ``(q, p)``.
        dissipation: ``"none"``, ``"constant"`` (learned ``L``), ``"state"`` (``L(x)``, a network), or a known
            ``R_p``: ``dof`` numbers (a diagonal) or ``dof * dof`` (a symmetric positive semi-definite matrix).
        force: ``"none"``, ``"time"`` (``f(t)``) or ``"state_time"`` (``f(x, t)``).
        n_inputs: number of inputs ``u`` (0: none).
        input_map: ``"constant"`` (learned ``g``), ``"state"`` (``g(x)``), or a known ``g``, ``dof * n_inputs``
            numbers (row by row).
        dissipation_l1, force_l1: weights of L1 penalties on ``R_p`` and ``f`` (:meth:`penalty`), >= 0.
        net: module used as ``H`` ``(..., 2 * dof) -> (...,)`` (general ``H`` only).
        force_net: module used as ``f``, ``(..., 1) -> (..., dof)`` for ``"time"``, ``(..., 2 * dof + 1) ->
            (..., dof)`` for ``"state_time"`` (the state, then ``t``).
    """

    name: ClassVar[str] = "phnn"
    coordinates: ClassVar[str] = "canonical"
    is_separable: ClassVar[bool] = False
    conservative: ClassVar[bool] = False

    def __init__(
        self,
        dof: int,
        hidden: Sequence[int] = (100, 100),
        activation: str = "tanh",
        orthogonal_init: bool = True,
        separable: bool = False,
        dissipation: str | Known = "constant",
        force: str = "none",
        n_inputs: int = 0,
        input_map: str | Known = "constant",
        dissipation_l1: float = 0.0,
        force_l1: float = 0.0,
        net: nn.Module | None = None,
        force_net: nn.Module | None = None,
    ) -> None:
        super().__init__(dof)
        arch = {"hidden": hidden, "activation": activation, "orthogonal_init": orthogonal_init}
        d = self.dof
        if not isinstance(separable, bool):
            raise InvalidArgumentError(f"separable must be true or false, got {separable!r}")
        if separable and net is not None:
            raise InvalidArgumentError("net (a general H) cannot be given with separable=True (H = T(p) + V(q))")
        if force not in FORCES:
            raise InvalidArgumentError(f"force must be one of {', '.join(map(repr, FORCES))}, got {force!r}")
        if force == "none" and force_net is not None:
            raise InvalidArgumentError("force_net needs force='time' or force='state_time', got force='none'")
        if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) or n_inputs < 0:
            raise InvalidArgumentError(f"n_inputs must be an integer >= 0, got {n_inputs!r}")
        for key, value in (("dissipation_l1", dissipation_l1), ("force_l1", force_l1)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or value == float("inf"):
                raise InvalidArgumentError(f"{key} must be a finite number >= 0, got {value!r}")
        self.separable, self.force_kind, self.n_inputs = separable, force, n_inputs
        self.time_dependent = force != "none"
        self.dissipation_l1, self.force_l1 = float(dissipation_l1), float(force_l1)
        if separable:
            self.kinetic_net = self.network(None, d, 1, arch)
            self.potential_net = self.network(None, d, 1, arch)
        else:
            self.net = self.network(net, 2 * d, 1, arch)
        # R_p = L L^T: a known matrix (buffer), a learned constant L, or L(x)
        self.dissipation_kind = _dissipation_kind(dissipation, d)
        self.damping_factor: nn.Parameter | None = None
        self.damping_net: nn.Module | None = None
        self.register_buffer("known_damping", _known_damping(dissipation, d))  # (dof, dof) or None
        if self.dissipation_kind == "constant":
            self.damping_factor = nn.Parameter(0.1 * torch.eye(d))  # L; 0 would be a stationary point of L L^T
        elif self.dissipation_kind == "state":
            self.damping_net = MLP(2 * d, hidden, d * (d + 1) // 2, activation, True, orthogonal_init)
        self.force_net = None
        if force != "none":
            self.force_net = force_net if force_net is not None else MLP(
                1 if force == "time" else 2 * d + 1, hidden, d, activation, True, orthogonal_init)
        self.input_kind = "none"
        self.input_matrix: nn.Parameter | None = None
        self.input_net: nn.Module | None = None
        self.register_buffer("known_input_map", None)
        if n_inputs:
            if isinstance(input_map, str):
                if input_map not in INPUT_MAPS:
                    raise InvalidArgumentError(
                        f"input_map must be one of {', '.join(map(repr, INPUT_MAPS))} or dof * n_inputs = "
                        f"{d * n_inputs} numbers, got {input_map!r}"
                    )
                self.input_kind = input_map
                if input_map == "constant":
                    self.input_matrix = nn.Parameter(0.1 * torch.ones(d, n_inputs))
                else:
                    self.input_net = MLP(2 * d, hidden, d * n_inputs, activation, True, orthogonal_init)
            else:
                self.input_kind = "known"
                self.known_input_map = _numbers("input_map", input_map, d * n_inputs).reshape(d, n_inputs)

    # -- the parts ----------------------------------------------------------------------------------

    def hamiltonian(self, x: Tensor) -> Tensor:
        """``H`` of states ``(..., 2 * dof)``, ``(...,)``."""
        if self.separable:
            q, p = x[..., : self.dof], x[..., self.dof :]
            return (scalar_output(self.kinetic_net(p), p, what="the kinetic network")
                    + scalar_output(self.potential_net(q), q, what="the potential network"))
        return scalar_output(self.net(x), x, what="the Hamiltonian network")

    def energy(self, x: Tensor) -> Tensor:
        return self.hamiltonian(self.check_state(x, differentiate=False))

    def damping(self, x: Tensor) -> Tensor:
        """``R_p(x)``, the momentum block of the dissipation, ``(..., dof, dof)``, positive semi-definite."""
        d = self.dof
        if self.dissipation_kind == "none":
            return x.new_zeros(*x.shape[:-1], d, d)
        if self.dissipation_kind == "known":
            return self.known_damping.to(x.dtype).expand(*x.shape[:-1], d, d)
        if self.dissipation_kind == "constant":
            factor = torch.tril(self.damping_factor).expand(*x.shape[:-1], d, d)
        else:
            rows, cols = torch.tril_indices(d, d, device=x.device)
            factor = x.new_zeros(*x.shape[:-1], d, d)
            factor[..., rows, cols] = self.damping_net(x)
        return factor @ factor.transpose(-1, -2)

    def dissipation(self, x: Tensor) -> Tensor:
        """The full ``R(x) = diag(0, R_p(x))``, ``(..., 2 * dof, 2 * dof)``."""
        d = self.dof
        out = x.new_zeros(*x.shape[:-1], 2 * d, 2 * d)
        out[..., d:, d:] = self.damping(x)
        return out

    def force(self, t: Tensor | float, x: Tensor) -> Tensor:
        """The external force ``F(t, x) = (0, f)``, ``(..., 2 * dof)``."""
        if self.force_net is None:
            return torch.zeros_like(x)
        tt = _time_column(t, x)  # (..., 1)
        features = tt if self.force_kind == "time" else torch.cat([x, tt], dim=-1)
        f = self.force_net(features)
        return torch.cat([torch.zeros_like(x[..., : self.dof]), f.expand(*x.shape[:-1], self.dof)], dim=-1)

    def input_map(self, x: Tensor) -> Tensor:
        """``G(x) = (0, g(x))``, ``(..., 2 * dof, n_inputs)``."""
        d, k = self.dof, self.n_inputs
        if self.input_kind == "known":
            g = self.known_input_map.to(x.dtype).expand(*x.shape[:-1], d, k)
        elif self.input_kind == "constant":
            g = self.input_matrix.expand(*x.shape[:-1], d, k)
        elif self.input_kind == "state":
            g = self.input_net(x).reshape(*x.shape[:-1], d, k)
        else:
            g = x.new_zeros(*x.shape[:-1], d, k)
        return torch.cat([x.new_zeros(*x.shape[:-1], d, k), g], dim=-2)

    # -- the field ----------------------------------------------------------------------------------

    def field_with_inputs(self, t: Tensor | float, x: Tensor, u: Tensor | None) -> Tensor:
        """``dx/dt`` at states ``(..., 2 * dof)``, time ``t`` (one, or one per state) and inputs ``u``
        ``(..., n_inputs)`` (``None`` only for a model without inputs)."""
        x = self.check_state(x)
        if self.n_inputs and (u is None or u.shape != (*x.shape[:-1], self.n_inputs)):
            got = "none" if u is None else f"shape {tuple(u.shape)}"
            raise InvalidArgumentError(
                f"PortHamiltonianNN(n_inputs={self.n_inputs}) needs inputs u of shape "
                f"{(*x.shape[:-1], self.n_inputs)} for states of shape {tuple(x.shape)}, got {got}; roll it out as "
                "hnnlab.inputs.DrivenField(model, inputs)"
            )
        if not self.n_inputs and u is not None and u.shape[-1]:
            raise InvalidArgumentError(
                f"PortHamiltonianNN(n_inputs=0) takes no inputs, got u of shape {tuple(u.shape)}"
            )
        grad = input_gradient(self.hamiltonian, x)  # (..., 2 * dof)
        d = self.dof
        damping = (self.damping(x) @ grad[..., d:, None])[..., 0]  # R_p grad_p H, (..., dof)
        out = symplectic_gradient(grad) - torch.cat([torch.zeros_like(damping), damping], dim=-1)
        out = out + self.force(t, x)
        if self.n_inputs:
            out = out + (self.input_map(x) @ u.to(x.dtype)[..., None])[..., 0]
        return out

    def vector_field(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self.field_with_inputs(t, x, None)

    def penalty(self, t: Tensor | float, x: Tensor) -> Tensor | None:
        """``dissipation_l1 mean |R_p(x)| + force_l1 mean |f(t, x)|`` over the batch (entries summed), ``()``;
        ``None`` when both weights are 0 (phlearn's sparsity penalties on the dissipation and the force)."""
        if not (self.dissipation_l1 or self.force_l1):
            return None
        total = x.new_zeros(())
        if self.dissipation_l1:
            total = total + self.dissipation_l1 * self.damping(x).abs().sum((-1, -2)).mean()
        if self.force_l1:
            total = total + self.force_l1 * self.force(t, x)[..., self.dof :].abs().sum(-1).mean()
        return total

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_inputs": self.n_inputs}


def decomposition(model: PortHamiltonianNN, system: Any, t: Tensor, x: Tensor) -> dict[str, float]:
    """The learned dissipation and force against a port-Hamiltonian system's own, at states ``x`` ``(n, 2 * dof)``
    and times ``t`` ``(n,)``: the mean momentum damping matrices (``R_p``, learned and true, as nested lists), the
    relative error of the learned one (Frobenius norm), and the RMS of the true and learned forces and of their
    difference. The coefficient of a one-degree-of-freedom damping (the Duffing ``delta``) is ``R_p[0][0]``.

    A constant force is not identifiable from a field: ``f + c`` with the potential ``V + c q`` gives the same
    ``dp/dt``. So the force error is measured after removing the mean difference (``force_offset``, per momentum)."""
    d = model.dof
    with torch.no_grad():
        learned = model.damping(x).mean(0)  # (dof, dof)
        true = system.dissipation(x)[..., d:, d:].mean(0)
        f_learned = model.force(t, x)[..., d:]
        f_true = system.force(t, x)[..., d:]
    rms = lambda v: float(v.pow(2).mean().sqrt())  # noqa: E731
    return {
        "damping_learned": learned.tolist(),
        "damping_true": true.tolist(),
        "damping_relative_error": float(torch.linalg.norm(learned - true) / torch.linalg.norm(true).clamp_min(1e-300)),
        "force_rms_true": rms(f_true),
        "force_rms_learned": rms(f_learned),
        "force_offset": (f_learned - f_true).mean(0).tolist(),
        "force_rms_error": rms(f_learned - f_true - (f_learned - f_true).mean(0)),
    }


def _time_column(t: Tensor | float, x: Tensor) -> Tensor:
    """``t`` as ``(..., 1)`` in ``x``'s dtype and batch shape (one time for all states, or one per state)."""
    tt = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return tt.reshape(*tt.shape, 1).expand(*x.shape[:-1], 1) if tt.ndim else tt.expand(*x.shape[:-1], 1)


def _dissipation_kind(value: object, dof: int) -> str:
    """``"none"``, ``"constant"``, ``"state"`` or ``"known"`` (numbers, checked by :func:`_known_damping`)."""
    if isinstance(value, str):
        if value not in DISSIPATIONS:
            raise InvalidArgumentError(
                f"dissipation must be one of {', '.join(map(repr, DISSIPATIONS))} or a known damping matrix (dof = "
                f"{dof} numbers for a diagonal, dof * dof = {dof * dof} for a full one), got {value!r}"
            )
        return value
    return "known"


def _known_damping(value: object, dof: int) -> Tensor | None:
    """A known ``R_p`` ``(dof, dof)`` in float64, checked symmetric positive semi-definite."""
    if isinstance(value, str):
        return None
    flat = _numbers("dissipation", value, None)
    if flat.numel() == dof:
        matrix = torch.diag(flat)
    elif flat.numel() == dof * dof:
        matrix = flat.reshape(dof, dof)
    else:
        raise InvalidArgumentError(
            f"dissipation must hold dof = {dof} numbers (a diagonal) or dof * dof = {dof * dof} (a full matrix), "
            f"got {value!r}"
        )
    if not torch.equal(matrix, matrix.T) or float(torch.linalg.eigvalsh(matrix).min()) < -1e-12:
        raise InvalidArgumentError(f"a known dissipation must be symmetric positive semi-definite, got {value!r}")
    return matrix


def _numbers(key: str, value: object, count: int | None) -> Tensor:
    try:
        flat = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        flat = None
    if flat is None or not bool(torch.isfinite(flat).all()) or (count is not None and flat.numel() != count):
        what = f"{count} finite numbers" if count is not None else "finite numbers"
        raise InvalidArgumentError(f"{key} must be {what}, got {value!r}")
    return flat
