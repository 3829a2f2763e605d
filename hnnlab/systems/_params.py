"""Validation of system parameters that are tuples or integers (``require_positive`` covers scalars)."""

from __future__ import annotations

import math
from typing import Any

from hnnlab.errors import InvalidArgumentError


def require_count(owner: object, name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an ``int >= minimum`` (a bool or a float is refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(
            f"{type(owner).__name__}: parameter {name!r} must be an integer >= {minimum}, got {value!r}"
        )
    return value


def float_tuple(owner: object, name: str, value: Any, length: int, *, what: str) -> tuple[float, ...]:
    """``value`` as a tuple of ``length`` finite floats; ``what`` says what one entry is for."""
    try:
        items = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"{type(owner).__name__}: parameter {name!r} must be a sequence of {length} numbers ({what}), got {value!r}"
        ) from None
    if len(items) != length:
        raise InvalidArgumentError(
            f"{type(owner).__name__}: parameter {name!r} must have {length} entries ({what}), "
            f"got {len(items)}: {value!r}"
        )
    if not all(math.isfinite(v) for v in items):
        raise InvalidArgumentError(f"{type(owner).__name__}: parameter {name!r} must be finite, got {value!r}")
    return items


def interval(
    owner: object, name: str, value: Any, *, low: float = -math.inf, high: float = math.inf
) -> tuple[float, float]:
    """``value`` as a ``(lo, hi)`` tuple with ``low <= lo < hi <= high``."""
    lo, hi = float_tuple(owner, name, value, 2, what="low, high")
    if not low <= lo < hi <= high:
        bounds = f" within [{low:g}, {high:g}]" if math.isfinite(low) or math.isfinite(high) else ""
        raise InvalidArgumentError(
            f"{type(owner).__name__}: parameter {name!r} must be an interval (low, high) with low < high"
            f"{bounds}, got {value!r}"
        )
    return lo, hi


def require_nonnegative(owner: object, **values: float) -> None:
    """Raise a clear error for any parameter that is not a finite number ``>= 0``."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise InvalidArgumentError(
                f"{type(owner).__name__}: parameter {key!r} must be finite and >= 0, got {value!r}"
            )
