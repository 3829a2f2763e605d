"""The building block of every model: a multilayer perceptron with smooth activations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from hnnlab.errors import InvalidArgumentError

# Smooth activations only: HNNs differentiate the network once in the vector field and once more in
# training, LNNs twice in the vector field; ReLU-like kinks make those derivatives zero or undefined.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
}


def make_activation(name: str) -> nn.Module:
    """The activation module called ``name`` (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise InvalidArgumentError(
            f"activation must be one of {', '.join(ACTIVATIONS)} (smooth, so that the network can be "
            f"differentiated twice), got {name!r}"
        )
    return ACTIVATIONS[name]()


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an ``int`` if it is an integer >= 1, else a clear error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def check_hidden(hidden: object) -> tuple[int, ...]:
    """``hidden`` as a tuple of layer widths, each an integer >= 1."""
    if isinstance(hidden, int | str) or not isinstance(hidden, Sequence):
        raise InvalidArgumentError(
            f"hidden must be a sequence of layer widths such as (200, 200), got {hidden!r}"
        )
    for width in hidden:
        check_positive_int("every width in hidden", width)
    return tuple(hidden)


class MLP(nn.Module):
    """``y = W_n s(... s(W_1 x + b_1) ...) (+ b_n)`` with a smooth activation ``s``.

    Acts on the last axis only, ``(..., in_dim) -> (..., out_dim)``, so samples never interact (no
    normalisation or other batch-coupling layers): the gradient of ``y.sum()`` with respect to a batch
    of inputs is the batch of per-sample gradients.

    Args:
        in_dim: input width.
        hidden: widths of the hidden layers; ``()`` gives an affine map.
        out_dim: output width (1 for a scalar energy).
        activation: one of ``tanh``, ``softplus``, ``silu``, ``gelu``, ``sigmoid``.
        bias_last: whether the output layer has a bias. Off by default: a constant added to an energy
            changes no derivative, so its bias would never receive a gradient (which also makes
            Lightning's DDP fail with unused parameters).
        orthogonal_init: initialise the weights orthogonally (Greydanus et al. 2019) instead of
            PyTorch's default; biases are then zero.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int] = (200, 200),
        out_dim: int = 1,
        activation: str = "tanh",
        bias_last: bool = False,
        orthogonal_init: bool = False,
    ) -> None:
        super().__init__()
        self.in_dim = check_positive_int("in_dim", in_dim)
        self.out_dim = check_positive_int("out_dim", out_dim)
        self.hidden = check_hidden(hidden)
        self.activation = activation
        self.bias_last = bool(bias_last)
        self.orthogonal_init = bool(orthogonal_init)
        make_activation(activation)  # validate the name before building anything
        widths = (self.in_dim, *self.hidden, self.out_dim)
        layers: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            last = i == len(widths) - 2
            layers.append(nn.Linear(w_in, w_out, bias=bias_last if last else True))
            if not last:
                layers.append(make_activation(activation))
        self.layers = nn.Sequential(*layers)
        if orthogonal_init:
            for layer in self.layers:
                if isinstance(layer, nn.Linear):
                    nn.init.orthogonal_(layer.weight)
                    if layer.bias is not None:
                        nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # (..., in_dim) -> (..., out_dim)

    def init_args(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable: ``MLP(**mlp.init_args())`` builds the same
        architecture (checkpoints rebuild an injected MLP from them, then load its weights)."""
        return {
            "in_dim": self.in_dim,
            "hidden": list(self.hidden),
            "out_dim": self.out_dim,
            "activation": self.activation,
            "bias_last": self.bias_last,
            "orthogonal_init": self.orthogonal_init,
        }


def scalar_output(value: Tensor, x: Tensor, *, what: str = "net") -> Tensor:
    """Accept a scalar network's output of shape ``(...,)`` or ``(..., 1)`` for input ``(..., n)``
    and return ``(...,)``; anything else is a clear error."""
    batch = x.shape[:-1]
    if value.shape == batch:
        return value
    if value.shape == (*batch, 1):
        return value.squeeze(-1)
    raise InvalidArgumentError(
        f"{what} must map inputs of shape (..., {x.shape[-1]}) to a scalar per sample, shape (...,) or "
        f"(..., 1); for input shape {tuple(x.shape)} it returned shape {tuple(value.shape)}"
    )


def module_path(module: nn.Module) -> str:
    """``package.module:ClassName`` of a module, for metadata."""
    cls = type(module)
    return f"{cls.__module__}:{cls.__qualname__}"
