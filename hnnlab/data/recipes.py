"""Named recipes that regenerate the datasets of the literature.

A :class:`Recipe` knows its system and parameters, sizes, time grid, ground-truth integrator, noise
and splits, and the published recipe's known quirks. Each recipe is correct by default; built with
``published_quirks=True`` it reproduces the quirks instead (``differences`` says what changes).
``get_recipe("greydanus-spring", n_traj=8).build(seed=0)`` returns a
:class:`~hnnlab.data.simulate.SimulationResult`. The table in ``docs/recipes.md`` lists them all.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from hnnlab._registry import Registry
from hnnlab.data.input_families import AbstractInputFamily, get_input_family
from hnnlab.data.simulate import DEFAULT_INTEGRATOR, DEFAULT_INTEGRATOR_OPTIONS, SimulationResult, simulate
from hnnlab.errors import InvalidArgumentError
from hnnlab.systems import SYSTEMS, AbstractSystem, get_system


@dataclass(frozen=True)
class TestSet:
    """A test split simulated separately from train/val (its own initial-state ranges and time grid)."""

    n_traj: int
    t_end: float
    n_times: int
    system_params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A dataset recipe: what :func:`~hnnlab.data.simulate.simulate` needs, plus provenance.

    Trajectories are saved at ``n_times`` evenly spaced times in ``[0, t_end]``
    (``dt = t_end / (n_times - 1)``; a single time means random states with their derivatives).

    Attributes:
        name: registry name.
        source: the publication.
        system: registered system name; ``system_params`` its parameters.
        random_parameters: build the system with ``cls.with_random_parameters(generator=..., **system_params)``
            (parameters drawn once per dataset from the seed, e.g. the chain pendulum).
        n_traj, t_end, n_times: sizes and time grid (of train + val + test, or train + val with ``test_set``).
        integrator, integrator_options, substeps: hnnlab's ground truth.
        noise_std: observation noise added to the stored states.
        splits: fractions ``(train, val, test)``.
        test_set: a separately drawn test split (then ``splits[2]`` must be 0).
        published_integrator, published_integrator_options: the published ground truth, used with
            ``published_quirks``.
        published_wraps_angles: the published code wraps the first ``wrap_dims`` coordinates into
            ``[-pi, pi)``; reproduced with ``published_quirks``.
        published_quirks: reproduce the published quirks instead of fixing them.
        batch_size: trajectories integrated per batch (memory and adaptive-step sharing).
        inputs: for a system with inputs, the input family and its parameters, ``{"name": "sinusoids", ...}``
            (:mod:`hnnlab.data.input_families`); ``None`` for none.
        differences: how hnnlab's default differs from the published recipe (and why).
    """

    name: str
    source: str
    system: str
    n_traj: int
    t_end: float
    n_times: int
    splits: tuple[float, float, float]
    system_params: Mapping[str, Any] = field(default_factory=dict)
    random_parameters: bool = False
    integrator: str = DEFAULT_INTEGRATOR
    integrator_options: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_INTEGRATOR_OPTIONS))
    substeps: int = 1
    noise_std: float = 0.0
    test_set: TestSet | None = None
    published_integrator: str | None = None
    published_integrator_options: Mapping[str, Any] = field(default_factory=dict)
    published_wraps_angles: int = 0
    published_quirks: bool = False
    batch_size: int | None = None
    differences: str = ""
    inputs: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for key in ("n_traj", "n_times", "substeps"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"recipe {self.name!r}: {key} must be an integer >= 1, got {value!r}")
        if not math.isfinite(self.t_end) or self.t_end < 0 or (self.n_times > 1 and self.t_end == 0):
            raise InvalidArgumentError(f"recipe {self.name!r}: t_end must be finite and > 0, got {self.t_end!r}")
        if self.test_set is not None and self.splits[2] != 0:
            raise InvalidArgumentError(
                f"recipe {self.name!r}: with a separate test_set the test fraction must be 0, got splits={self.splits}"
            )

    @property
    def dt(self) -> float:
        """Time between saved states (``t_end`` for a single time, so that it stays > 0)."""
        return self.t_end / (self.n_times - 1) if self.n_times > 1 else max(self.t_end, 1.0)

    def with_overrides(self, **overrides: Any) -> Recipe:
        """A copy with some fields changed (``n_traj=8``, ``noise_std=0``, ``system_params={...}`` merges)."""
        allowed = [f.name for f in dataclasses.fields(self) if f.name not in ("name", "source", "differences")]
        unknown = [k for k in overrides if k not in allowed]
        if unknown:
            raise InvalidArgumentError(
                f"recipe {self.name!r} has no field {unknown[0]!r}; fields that can be overridden: {', '.join(allowed)}"
            )
        if "system_params" in overrides:
            overrides["system_params"] = {**self.system_params, **overrides["system_params"]}
        if "splits" in overrides:
            overrides["splits"] = tuple(float(f) for f in overrides["splits"])
        return dataclasses.replace(self, **overrides)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description stored in the dataset's ``recipe`` attribute."""
        return _jsonable(dataclasses.asdict(self))

    def ground_truth(self) -> tuple[str, dict[str, Any]]:
        """The integrator and options used: hnnlab's, or the published one with ``published_quirks``."""
        if self.published_quirks and self.published_integrator is not None:
            return self.published_integrator, dict(self.published_integrator_options)
        return self.integrator, dict(self.integrator_options)

    def input_family(self) -> AbstractInputFamily | None:
        """The family the inputs are drawn from (``None`` without inputs)."""
        if self.inputs is None:
            return None
        spec = dict(self.inputs)
        return get_input_family(spec.pop("name", None), **spec)

    def make_system(self, generator: torch.Generator, **params: Any) -> AbstractSystem:
        merged = {**self.system_params, **params}
        if self.random_parameters:
            cls = SYSTEMS.get(self.system)
            return cls.with_random_parameters(generator=generator, **merged)
        return get_system(self.system, **merged)

    def build(
        self,
        seed: int = 0,
        *,
        dtype: torch.dtype | str = torch.float64,
        device: torch.device | str = "cpu",
        progress: bool = False,
        command: str | None = None,
    ) -> SimulationResult:
        """Simulate the dataset. One generator seeded with ``seed`` draws, in order: the system's
        random parameters (if any), the initial states, the noise, then the separate test set."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidArgumentError(f"seed must be an integer >= 0, got {seed!r}")
        generator = torch.Generator().manual_seed(seed)
        system = self.make_system(generator)
        integrator, options = self.ground_truth()
        common = dict(
            integrator=integrator, integrator_options=options, substeps=self.substeps, noise_std=self.noise_std,
            seed=seed, dtype=dtype, device=device, batch_size=self.batch_size, progress=progress,
            recipe=self.describe(), command=command or f"hnnlab simulate --recipe {self.name} --seed {seed}",
            generator=generator, inputs=self.input_family(),
        )
        splits = self.splits
        if self.test_set is not None:
            total = splits[0] + splits[1]
            splits = (splits[0] / total, splits[1] / total, 0.0)
        result = simulate(system, self.n_traj, dt=self.dt, n_steps=self.n_times - 1, splits=splits, **common)
        if self.test_set is not None:
            spec = self.test_set
            test_system = self.make_system(generator, **spec.system_params) if not self.random_parameters else system
            dt = spec.t_end / (spec.n_times - 1)
            test = simulate(test_system, spec.n_traj, dt=dt, n_steps=spec.n_times - 1, splits=(0.0, 0.0, 1.0), **common)
            result = SimulationResult(metadata=result.metadata, splits={**result.splits, "test": test.splits["test"]})
            if self.n_times == 1:  # the trajectories' spacing is the dataset's dt
                result.metadata["dt"] = dt
        if self.published_quirks and self.published_wraps_angles:
            result = _wrap_angles(result, self.published_wraps_angles)
        return result


def _wrap_angles(result: SimulationResult, dims: int) -> SimulationResult:
    def wrap(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        q = torch.remainder(x[..., :dims] + math.pi, 2 * math.pi) - math.pi
        return torch.cat([q, x[..., dims:]], dim=-1)

    splits = {
        k: dataclasses.replace(v, state=wrap(v.state), clean_state=wrap(v.clean_state))
        for k, v in result.splits.items()
    }
    return SimulationResult(metadata=result.metadata, splits=splits)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


RECIPES: Registry[Recipe] = Registry("recipe")


def register_recipe(recipe: Recipe) -> Recipe:
    return RECIPES.register(recipe.name)(recipe)


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """A registered recipe (or ``package.module:OBJECT``), with ``overrides`` applied."""
    recipe = RECIPES.get(name)
    if not isinstance(recipe, Recipe):
        raise InvalidArgumentError(f"{name!r} is not a hnnlab.data.recipes.Recipe, got {type(recipe).__name__}")
    return recipe.with_overrides(**overrides) if overrides else recipe


_SCIPY_DEFAULT_ATOL = (
    "The published ground truth is scipy's RK45 with rtol={rtol:g} and scipy's default atol=1e-6, so states with "
    "|x| < 1e-6 / {rtol:g} are only accurate to about 1e-6 absolute; hnnlab integrates with dopri8 at "
    "rtol = atol = 1e-12 in float64 (published_quirks=True uses dopri5 at rtol={rtol:g}, atol=1e-6). "
)
_SAME_DISTRIBUTION = (
    "Random numbers come from torch.Generator(seed) rather than a global numpy seed: the same distributions, not "
    "the same draws."
)

register_recipe(Recipe(
    name="greydanus-spring",
    source="Greydanus, Dzamba, Yosinski 2019, Hamiltonian Neural Networks (experiment-spring)",
    system="mass_spring",
    system_params={"k": 2.0, "m": 0.5, "radius": (0.1, 1.0)},
    n_traj=50, t_end=3.0, n_times=30, noise_std=0.1, splits=(0.5, 0.0, 0.5),
    published_integrator="dopri5", published_integrator_options={"rtol": 1e-10, "atol": 1e-6},
    differences=_SCIPY_DEFAULT_ATOL.format(rtol=1e-10) + _SAME_DISTRIBUTION,
))
register_recipe(Recipe(
    name="greydanus-pendulum",
    source="Greydanus, Dzamba, Yosinski 2019, Hamiltonian Neural Networks (experiment-pend)",
    system="pendulum",
    system_params={"m": 0.5, "l": 1.0, "g": 6.0, "radius": (1.3, 2.3)},
    n_traj=50, t_end=3.0, n_times=45, noise_std=0.1, splits=(0.5, 0.0, 0.5),
    published_integrator="dopri5", published_integrator_options={"rtol": 1e-10, "atol": 1e-6},
    differences=_SCIPY_DEFAULT_ATOL.format(rtol=1e-10) + _SAME_DISTRIBUTION,
))
register_recipe(Recipe(
    name="greydanus-2body",
    source="Greydanus, Dzamba, Yosinski 2019, Hamiltonian Neural Networks (experiment-2body)",
    system="two_body",
    system_params={"masses": (1.0, 1.0), "G": 1.0, "position_range": (0.5, 1.5), "orbit_noise": 0.05},
    n_traj=1000, t_end=20.0, n_times=50, noise_std=0.0, splits=(0.8, 0.0, 0.2),
    published_integrator="dopri5", published_integrator_options={"rtol": 1e-9, "atol": 1e-6},
    differences=_SCIPY_DEFAULT_ATOL.format(rtol=1e-9) + _SAME_DISTRIBUTION,
))
register_recipe(Recipe(
    name="greydanus-3body",
    source="Greydanus, Dzamba, Yosinski 2019, Hamiltonian Neural Networks (experiment-3body)",
    system="three_body",
    system_params={"masses": (1.0, 1.0, 1.0), "G": 1.0, "radius": (0.9, 1.2), "velocity_noise": 0.2},
    n_traj=5000, t_end=5.0, n_times=20, noise_std=0.0, splits=(0.8, 0.0, 0.2), batch_size=25,
    published_integrator="dopri5", published_integrator_options={"rtol": 1e-9, "atol": 1e-6},
    differences=_SCIPY_DEFAULT_ATOL.format(rtol=1e-9) + _SAME_DISTRIBUTION
    + " Trajectories are integrated in batches of 25: the adaptive step is shared within a batch, and close "
    "encounters in any member of a large batch would shrink it for all.",
))
register_recipe(Recipe(
    name="lnn-double-pendulum",
    source="Cranmer et al. 2020, Lagrangian Neural Networks (double pendulum)",
    system="double_pendulum",
    system_params={"m1": 1.0, "m2": 1.0, "l1": 1.0, "l2": 1.0, "g": 9.8,
                   "angle_range": (0.0, 2 * math.pi), "velocity_range": (-10.0, 10.0)},
    n_traj=100_000, t_end=0.0, n_times=1, splits=(0.9, 0.1, 0.0),
    test_set=TestSet(n_traj=40, t_end=100.0, n_times=1001, system_params={"velocity_range": (0.0, 0.1)}),
    published_integrator="dopri5", published_integrator_options={"rtol": 1e-10, "atol": 1e-10},
    published_wraps_angles=2,
    differences=(
        "Train/val are random states (one time each) with analytic accelerations; the test split is the "
        "evaluation set (40 trajectories, theta ~ U(0, 2 pi)^2, omega ~ U(0, 0.1)^2, t in [0, 100] at 10 points per "
        "unit time). The numbers of random states (90,000 train / 10,000 val) are hnnlab's choice. The published code "
        "wraps angles into [-pi, pi) (normalize_dp), which makes stored trajectories jump by 2 pi; hnnlab keeps "
        "continuous angles (published_quirks=True wraps them). Truth: dopri8 at 1e-12 instead of 1e-10. "
        + _SAME_DISTRIBUTION
    ),
))
register_recipe(Recipe(
    name="chnn-chain-pendulum",
    source="Finzi, Wang, Wilson 2020, Simplifying Hamiltonian and Lagrangian Neural Networks via Explicit Constraints",
    system="chain_pendulum",
    system_params={"n": 3},
    random_parameters=True,
    n_traj=1000, t_end=3.0, n_times=101, splits=(0.8, 0.1, 0.1),
    published_integrator="dopri5", published_integrator_options={"rtol": 1e-7, "atol": 1e-9},
    differences=(
        "n links via system_params={'n': n} (1, 2, 3 or 5 in the paper); masses and lengths ~ U(0.6, 1.4) drawn once "
        "from the seed. Stored in angle coordinates (q, q_dot), not the paper's Cartesian embedding. Training uses "
        "windows of 5 steps (mode='windows', window=5) over all 800 train trajectories, rather than one random chunk "
        "per trajectory. The 100 val trajectories are hnnlab's choice. Truth: dopri8 at 1e-12 instead of dopri5 at "
        "rtol 1e-7. " + _SAME_DISTRIBUTION
    ),
))
register_recipe(Recipe(
    name="chnn-chain-pendulum-cartesian",
    source="Finzi, Wang, Wilson 2020, Simplifying Hamiltonian and Lagrangian Neural Networks via Explicit Constraints",
    system="chain_pendulum_cartesian",
    system_params={"n": 3},
    random_parameters=True,
    n_traj=1000, t_end=3.0, n_times=101, splits=(0.8, 0.1, 0.1),
    published_integrator="dopri5", published_integrator_options={"rtol": 1e-7, "atol": 1e-9},
    differences=(
        "chnn-chain-pendulum in the paper's Cartesian coordinates: the same chain (same seed, same masses, lengths and "
        "initial states) as point masses in the plane with rigid links, canonical states (x, p), p = m v "
        "(system chain_pendulum_cartesian; the CHNN and CLNN models). Truth: dopri8 at 1e-12 on the constrained "
        "field. " + _SAME_DISTRIBUTION
    ),
))
register_recipe(Recipe(
    name="dm-spring",
    source="Botev et al. 2021, DeepMind Hamiltonian dynamics suite (toy_physics/mass_spring), states only",
    system="mass_spring",
    system_params={"k": 2.0, "m": 0.5, "radius": (0.1, 1.0)},
    n_traj=70_000, t_end=12.75, n_times=256, splits=(5 / 7, 0.0, 2 / 7), batch_size=10_000,
    differences=(
        "States and derivatives only (no images); 50,000 train and 20,000 test trajectories of 255 steps of dt = 0.05. "
        "Radii ~ U(0.1, 1.0) with a uniform direction (the suite's own annulus sampling is not reproduced draw for "
        "draw). " + _SAME_DISTRIBUTION
    ),
))
register_recipe(Recipe(
    name="dm-pendulum",
    source="Botev et al. 2021, DeepMind Hamiltonian dynamics suite (toy_physics/pendulum), states only",
    system="pendulum",
    system_params={"m": 0.5, "l": 1.0, "g": 3.0, "radius": (1.3, 2.3)},
    n_traj=70_000, t_end=12.75, n_times=256, splits=(5 / 7, 0.0, 2 / 7), batch_size=10_000,
    differences=(
        "States and derivatives only (no images); 50,000 train and 20,000 test trajectories of 255 steps of dt = 0.05. "
        "Radii ~ U(1.3, 2.3) with a uniform direction (the suite's own annulus sampling is not reproduced draw for "
        "draw). " + _SAME_DISTRIBUTION
    ),
))
