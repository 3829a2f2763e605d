"""The system registry: ``get_system("pendulum", g=3.0)`` or ``get_system("pkg.mod:MySystem")``."""

from __future__ import annotations

import json
import reprlib
from collections.abc import Mapping
from typing import Any

from hnnlab._registry import Registry
from hnnlab.errors import FileFormatError, HnnlabError, InvalidArgumentError
from hnnlab.systems.base import AbstractSystem

SYSTEMS: Registry[type[AbstractSystem]] = Registry("system", AbstractSystem)
register_system = SYSTEMS.register


def get_system(name_or_class_path: str, **params: Any) -> AbstractSystem:
    """Build a system from a registered name or ``package.module:ClassName`` and its parameters.

    Raises:
        UnknownNameError: the name is not registered (the message lists the valid names).
        InvalidArgumentError: a parameter the system does not have, or a value it does not allow.
    """
    return SYSTEMS.build(name_or_class_path, "parameter", **params)  # type: ignore[return-value]


def system_from_description(description: Mapping[str, Any]) -> AbstractSystem:
    """Rebuild a system from its ``describe()`` dict, as stored in dataset and rollout files.

    Uses the registered name when there is one, else the class path; JSON lists become tuples again
    (systems take e.g. ``radius=(0.1, 1.0)``).

    Raises:
        InvalidArgumentError: the description has no ``"class"`` entry, or the system refuses its parameters.
        UnknownNameError: the class cannot be found.
    """
    if not isinstance(description, Mapping) or "class" not in description:
        raise InvalidArgumentError(f"a system description needs a 'class' entry, got {description!r}")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in (description.get("params") or {}).items()}
    name = description.get("name")
    return get_system(name if name in SYSTEMS else description["class"], **params)


def rebuild_system(
    description: Mapping[str, Any] | str | None,
    *,
    source: str = "metadata",
    error: type[HnnlabError] = FileFormatError,
) -> AbstractSystem | None:
    """The system that a file records, rebuilt (:func:`system_from_description`); ``None`` for no description.

    Args:
        description: ``system.describe()`` as a dict or a JSON string, or the metadata of a file that holds
            it under ``"system"`` (``LoadedDataset.metadata``).
        source: what the description came from (a file's name), which starts the error message.
        error: the exception to raise (``DatasetError``, ``RolloutFileError``).

    Raises:
        error: the description has no ``"class"`` entry, names an unknown class, or parameters the
            system refuses; the message gives the class, the parameters and the reason.
    """
    if isinstance(description, Mapping) and "system" in description:
        description = description["system"]
    if description is None:
        return None
    if isinstance(description, str):
        try:
            description = json.loads(description)
        except json.JSONDecodeError as exc:
            raise error(f"{source}: the system description is not valid JSON ({exc.msg})") from None
    if not isinstance(description, Mapping) or "class" not in description:
        raise error(f"{source}: the system description {reprlib.repr(description)} is incomplete (no 'class' entry)")
    try:
        return system_from_description(description)
    except HnnlabError as exc:
        params = dict(description.get("params") or {})
        raise error(
            f"{source}: system {description['class']!r} with parameters {params} cannot be rebuilt: {exc}"
        ) from None
