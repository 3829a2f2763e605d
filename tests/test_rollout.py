"""The rollout loop: saved states, chunking, equality with stepping by hand, non-finite detection,
validation, gradients and graph handling."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from hnnlab.errors import ConvergenceError, IncompatibleIntegratorError, InvalidArgumentError, NonFiniteStateError
from hnnlab.fields import AbstractSeparableField, AbstractVectorField
from hnnlab.integrators import INTEGRATORS, get_integrator
from hnnlab.rollout import SaveEveryWarning, Status, iter_rollout, rollout, solve
from hnnlab.systems import MassSpring, Pendulum

X0 = torch.tensor([[1.0, 0.5], [-0.4, 1.8], [2.0, 0.0]], dtype=torch.float64)
FIXED = [n for n in INTEGRATORS.names() if not INTEGRATORS.get(n).adaptive]


def by_hand(f, name: str, x0: Tensor, dt: float, n_steps: int) -> list[Tensor]:
    """``[x_0, x_1, ..., x_n]`` from calling ``step`` in a Python loop."""
    integrator = get_integrator(name)
    states = [x0]
    for k in range(n_steps):
        states.append(integrator.step(f, k * dt, states[-1], dt))
    return states


class Blowup:
    """``dx/dt = x^2`` componentwise: ``x(t) = x0 / (1 - x0 t)`` blows up at ``t = 1 / x0``."""

    def __call__(self, t, x: Tensor) -> Tensor:
        return x**2


class LinearSpring(nn.Module):
    """``dq/dt = p``, ``dp/dt = -k q`` with a trainable stiffness ``k``."""

    is_separable = True

    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k, dtype=torch.float64))

    def forward(self, t, x: Tensor) -> Tensor:
        return torch.cat([x[..., 1:], -self.k * x[..., :1]], dim=-1)


# ------------------------------------------------------------------------------------------------------
# Shapes and equality with the step-by-step loop.


@pytest.mark.parametrize("n_steps, save_every", [(10, 1), (10, 3), (9, 3), (2, 5), (0, 1)])
def test_saved_states_are_the_steps_taken_by_hand(n_steps: int, save_every: int) -> None:
    out = rollout(Pendulum(), "rk4", X0, 0.1, n_steps, save_every=save_every)
    assert out.shape == (3, n_steps // save_every + 1, 2)
    states = by_hand(Pendulum(), "rk4", X0, 0.1, n_steps)
    expected = torch.stack(states[::save_every], dim=1)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("name", FIXED)
def test_rollout_equals_step_in_a_loop_for_every_method(name: str) -> None:
    # leapfrog's rollout reuses its last force evaluation: it must still give the same states, bit for bit
    out = rollout(Pendulum(), name, X0, 0.05, 40, save_every=4)
    expected = torch.stack(by_hand(Pendulum(), name, X0, 0.05, 40)[::4], dim=1)
    assert torch.equal(out, expected)


def test_unbatched_initial_state() -> None:
    out = rollout(Pendulum(), "leapfrog", X0[1], 0.1, 12, save_every=4)
    assert out.shape == (4, 2)
    assert torch.equal(out, rollout(Pendulum(), "leapfrog", X0[1:2], 0.1, 12, save_every=4)[0])


@pytest.mark.parametrize("save_every", [1, 3])
def test_iter_rollout_chunks_equal_rollout(save_every: int) -> None:
    chunks = list(iter_rollout(Pendulum(), "leapfrog", X0, 0.1, 50, save_every, chunk_size=7))
    full = rollout(Pendulum(), "leapfrog", X0, 0.1, 50, save_every)
    assert [c.shape[1] for c in chunks[:-1]] == [7] * (len(chunks) - 1)
    assert 1 <= chunks[-1].shape[1] <= 7
    assert torch.equal(torch.cat(chunks, dim=1), full)


def test_t0_is_passed_to_time_dependent_fields() -> None:
    def forced(t, x: Tensor) -> Tensor:  # dq/dt = 0, dp/dt = cos t: p(t) = p0 + sin t - sin t0
        t = torch.as_tensor(t, dtype=x.dtype)
        return torch.stack([torch.zeros_like(x[..., 0]), torch.cos(t).expand_as(x[..., 1])], dim=-1)

    out = rollout(forced, "rk4", X0, 0.01, 100, save_every=100, t0=2.0)[:, -1]
    expected_p = X0[:, 1] + torch.sin(torch.tensor(3.0, dtype=torch.float64)) - torch.sin(torch.tensor(2.0))
    torch.testing.assert_close(out[:, 1], expected_p.double(), rtol=1e-7, atol=1e-7)


# ------------------------------------------------------------------------------------------------------
# Non-finite states.


@pytest.mark.parametrize("check_every", [1, 7, 32])
def test_nonfinite_names_first_step_and_trajectory(check_every: int) -> None:
    dt = 0.01
    x0 = torch.tensor([[0.1, 0.1], [0.2, 0.1], [1.0, 0.5], [0.1, 0.3]], dtype=torch.float64)
    # the reference: the first step at which forward Euler's state for trajectory 2 (x0 = 1, blow-up
    # time 1) turns non-finite, found by stepping one scalar at a time
    value, first_bad = 1.0, None
    for k in range(1, 1000):
        value = value + dt * (value * value)
        if value != value or value in (float("inf"), float("-inf")):
            first_bad = k
            break
    assert first_bad is not None and first_bad * dt > 1.0  # after the exact solution's blow-up time
    with pytest.raises(NonFiniteStateError) as info:
        rollout(Blowup(), "euler", x0, dt, 1000, check_every=check_every)
    error = info.value
    assert (error.step, error.trajectory) == (first_bad, 2)
    assert error.time == pytest.approx(first_bad * dt)
    assert f"rollout became non-finite (NaN or inf) at step {first_bad} " in str(error)
    assert "in trajectory 2 of 4" in str(error)


def test_nonfinite_is_raised_from_iter_rollout_before_the_bad_chunk() -> None:
    x0 = torch.tensor([[0.1, 0.1], [1.0, 0.5]], dtype=torch.float64)
    chunks = iter_rollout(Blowup(), "euler", x0, 0.01, 1000, chunk_size=50)
    good = [next(chunks), next(chunks)]  # steps 0..99 are finite
    assert torch.isfinite(torch.cat(good, dim=1)).all()
    with pytest.raises(NonFiniteStateError):
        list(chunks)


# ------------------------------------------------------------------------------------------------------
# Validation.


@pytest.mark.parametrize(
    "x0, message",
    [
        (torch.tensor([[float("nan"), 0.0]]), "x0 contains a non-finite value (NaN or inf) at index (0, 0)"),
        (torch.zeros(2, 3), "x0 must have shape (..., 2 * dof) with coordinates then momenta, got shape (2, 3)"),
        (torch.zeros(2, 4), "x0 must have last dimension 2 * dof = 2 for this vector field, got shape (2, 4)"),
        ([[1.0, 0.0]], "x0 must be a torch.Tensor, got list"),
        (torch.zeros(2, 2, dtype=torch.int64), "x0 must have a floating dtype (float32 or float64), got torch.int64"),
        (torch.zeros(2, 3, 2), "x0 must have shape (batch, 2 * dof), got shape (2, 3, 2)"),
    ],
)
def test_invalid_initial_state(x0, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        rollout(Pendulum(), "leapfrog", x0, 0.1, 10)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dt": 0.0}, "dt must be a finite number > 0, got 0.0"),
        ({"dt": float("nan")}, "dt must be a finite number > 0, got nan"),
        ({"n_steps": -1}, "n_steps must be an integer >= 0, got -1"),
        ({"n_steps": 2.5}, "n_steps must be an integer >= 0, got 2.5"),
        ({"save_every": 0}, "save_every must be an integer >= 1, got 0"),
        ({"check_every": 0}, "check_every must be an integer >= 1, got 0"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    args = {"dt": 0.1, "n_steps": 10, **kwargs}
    with pytest.raises(InvalidArgumentError) as info:
        rollout(Pendulum(), "leapfrog", X0, **args)
    assert message in str(info.value)


def test_incompatible_pair_is_refused_before_any_step() -> None:
    calls = []

    class Counting(nn.Module, AbstractVectorField):  # declares is_separable = False through the protocol
        dof = 1

        def forward(self, t, x):
            calls.append(t)
            return x

    with pytest.raises(IncompatibleIntegratorError):
        rollout(Counting(), "leapfrog", X0, 0.1, 10)
    assert calls == []


# ------------------------------------------------------------------------------------------------------
# Gradients and graphs.


def test_no_graph_is_kept_under_no_grad() -> None:
    x0 = X0.clone().requires_grad_(True)
    with torch.no_grad():
        out = rollout(LinearSpring(2.0), "leapfrog", x0, 0.1, 20)
    assert not out.requires_grad and out.grad_fn is None


def test_graph_free_rollout_with_grad_enabled_matches() -> None:
    # nothing requires grad: the loop drops autograd after the first step; same values as under no_grad
    out = rollout(Pendulum(), "rk4", X0, 0.1, 300)
    assert not out.requires_grad
    with torch.no_grad():
        assert torch.equal(out, rollout(Pendulum(), "rk4", X0, 0.1, 300))


@pytest.mark.parametrize("name", ["leapfrog", "rk4", "implicit_midpoint"])
def test_gradient_through_rollout_matches_finite_differences(name: str) -> None:
    model = LinearSpring(2.0)
    x0 = X0[:2].clone().requires_grad_(True)

    def loss(x0: Tensor) -> Tensor:
        return (rollout(model, name, x0, 0.05, 30, save_every=10) ** 2).sum()

    value = loss(x0)
    grad_x0, grad_k = torch.autograd.grad(value, [x0, model.k])
    eps = 1e-6
    with torch.no_grad():
        fd_x0 = torch.zeros_like(x0)
        for i in range(x0.shape[0]):
            for j in range(x0.shape[1]):
                e = torch.zeros_like(x0)
                e[i, j] = eps
                fd_x0[i, j] = (loss(x0 + e) - loss(x0 - e)) / (2 * eps)
        model.k += eps
        up = loss(x0)
        model.k -= 2 * eps
        down = loss(x0)
        model.k += eps
    torch.testing.assert_close(grad_x0, fd_x0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad_k, (up - down) / (2 * eps), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------------
# Progress bar and dtypes.


def test_progress_bar_does_not_change_results() -> None:
    plain = rollout(MassSpring(), "leapfrog", X0, 0.01, 500, save_every=5, progress=False)
    with_bar = rollout(MassSpring(), "leapfrog", X0, 0.01, 500, save_every=5, progress=True)
    assert torch.equal(plain, with_bar)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype: torch.dtype) -> None:
    out = rollout(MassSpring(), "leapfrog", X0.to(dtype), 0.01, 100)
    exact = MassSpring().exact_solution(X0, 0.01 * torch.arange(101, dtype=torch.float64))
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), exact, rtol=0, atol=1e-3)


# ------------------------------------------------------------------------------------------------------
# solve: per-trajectory status, masking, solver state, adaptive step sizes per trajectory.

BLOWUP_X0 = torch.tensor([[10.0, 0.0], [-1.0, 0.0], [-1.0, -0.5]], dtype=torch.float64)


def test_solve_masks_a_trajectory_that_blows_up_and_finishes_the_others() -> None:
    # dx/dt = x^2 from x0 = 10 blows up at t = 0.1; from -1 it decays as -1 / (1 + t)
    sol = solve(Blowup(), "rk4", BLOWUP_X0, 0.01, 1000)
    assert sol.ys.shape == (3, 1001, 2) and sol.ts.shape == (1001,)
    assert sol.status.tolist() == [Status.NONFINITE, Status.OK, Status.OK]
    first = int(sol.first_bad_step[0])
    assert sol.first_bad_step[1:].tolist() == [-1, -1]
    assert torch.isfinite(sol.ys[0, :first]).all() and torch.isnan(sol.ys[0, first:]).all()
    assert not torch.isfinite(by_hand(Blowup(), "rk4", BLOWUP_X0[:1], 0.01, first)[-1]).all()
    assert torch.isfinite(by_hand(Blowup(), "rk4", BLOWUP_X0[:1], 0.01, first - 1)[-1]).all()
    # the finite rows are those of a solve without the bad row, bit for bit, to the horizon
    alone = rollout(Blowup(), "rk4", BLOWUP_X0[1:], 0.01, 1000)
    assert torch.equal(sol.ys[1:], alone)
    torch.testing.assert_close(sol.ys[1:, -1, 0], -1 / (1 + 10 * torch.ones(2, dtype=torch.float64)), rtol=1e-9, atol=0)
    assert sol.stats["steps"] == 1000 and sol.stats["field_evaluations"] > 4 * 1000 - 1


def test_solve_raise_names_the_first_bad_step_and_trajectory() -> None:
    masked = solve(Blowup(), "rk4", BLOWUP_X0, 0.01, 1000)
    with pytest.raises(NonFiniteStateError) as info:
        solve(Blowup(), "rk4", BLOWUP_X0, 0.01, 1000, on_nonfinite="raise")
    assert info.value.step == int(masked.first_bad_step[0]) and info.value.trajectory == 0
    assert str(info.value).startswith(f"rollout became non-finite (NaN or inf) at step {info.value.step} ")


def test_solve_records_each_bad_trajectory_at_its_own_step() -> None:
    x0 = torch.tensor([[-1.0, 0.0], [4.0, 0.0], [-1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    sol = solve(Blowup(), "rk4", x0, 0.01, 1000, check_every=64)
    assert sol.status.tolist() == [Status.OK, Status.NONFINITE, Status.OK, Status.NONFINITE]
    for row in (1, 3):
        first = int(sol.first_bad_step[row])
        states = by_hand(Blowup(), "rk4", x0[row : row + 1], 0.01, first)
        assert torch.isfinite(states[-2]).all() and not torch.isfinite(states[-1]).all()
    assert 25 < sol.first_bad_step[1] < sol.first_bad_step[3] < 55  # blow-ups at t = 0.25 and 0.5


@pytest.mark.parametrize("name", ["implicit_midpoint", "gauss_legendre4"])
def test_solve_marks_an_implicit_solve_that_fails_as_not_converged(name: str) -> None:
    sol = solve(Blowup(), name, BLOWUP_X0, 0.01, 500)
    assert sol.status.tolist() == [Status.NOT_CONVERGED, Status.OK, Status.OK]
    assert 0 < sol.first_bad_step[0] <= 10  # before the blow-up at t = 0.1
    # the batch shares the iteration count, so the bad row's extra iterations move the others within tol only
    torch.testing.assert_close(sol.ys[1:], rollout(Blowup(), name, BLOWUP_X0[1:], 0.01, 500), rtol=1e-12, atol=1e-13)
    with pytest.raises(ConvergenceError, match=f"^{name}: the fixed-point iteration"):
        solve(Blowup(), name, BLOWUP_X0, 0.01, 500, on_nonfinite="raise")


@pytest.mark.parametrize("name", ["dopri5", "dopri8"])
def test_adaptive_step_sizes_are_per_trajectory(name: str) -> None:
    # A blowing-up trajectory beside a regular one: the regular one's steps, and so its states, are those it
    # takes alone, bit for bit (a shared step size would have shrunk them).
    sol = solve(Blowup(), name, BLOWUP_X0[:2], 0.01, 300)
    alone = solve(Blowup(), name, BLOWUP_X0[1:2], 0.01, 300)
    assert sol.status.tolist() == [Status.NOT_CONVERGED, Status.OK]
    assert torch.equal(sol.ys[1], alone.ys[0])
    torch.testing.assert_close(sol.ys[1, -1, 0], torch.tensor(-1 / 4, dtype=torch.float64), rtol=1e-9, atol=0)
    assert 0 < sol.first_bad_step[0] <= 11  # the exact solution is singular at t = 0.1 (step 10)


def test_adaptive_step_counts_are_those_of_the_error_control() -> None:
    # Exponential decay at rtol = atol = 1e-6: the internal steps of dopri5 grow with the tolerance demanded.
    f = lambda t, x: -x  # noqa: E731
    x0 = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    loose = solve(f, get_integrator("dopri5", rtol=1e-4, atol=1e-4), x0, 1.0, 5)
    tight = solve(f, get_integrator("dopri5", rtol=1e-10, atol=1e-10), x0, 1.0, 5)
    assert loose.stats["field_evaluations"] < tight.stats["field_evaluations"]
    exact = torch.exp(-torch.arange(6, dtype=torch.float64))
    assert (tight.ys[0, :, 0] - exact).abs().max() < 1e-9 < (loose.ys[0, :, 0] - exact).abs().max()


def test_adaptive_max_steps_fails_only_the_trajectories_that_need_more() -> None:
    # x' = x^2 from 0.9 needs ever smaller steps towards t = 1.11; from -1 it needs few
    x0 = torch.tensor([[0.9, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    sol = solve(Blowup(), get_integrator("dopri5", max_steps=40), x0, 0.1, 10)
    assert sol.status.tolist() == [Status.NOT_CONVERGED, Status.OK]
    with pytest.raises(ConvergenceError, match="^dopri5: the adaptive solve from t = "):
        get_integrator("dopri5", max_steps=3).step(Blowup(), 0.0, x0, 1.0)


def test_splitting_state_reuses_the_last_force() -> None:
    # leapfrog on a separable field: 2 half-field evaluations a step in the loop (one of each half), 3 by hand
    sol = solve(Pendulum(), "leapfrog", X0, 0.1, 100)
    assert sol.stats["field_evaluations"] == pytest.approx(0.5 * (2 * 100 + 1))
    assert torch.equal(sol.ys, torch.stack(by_hand(Pendulum(), "leapfrog", X0, 0.1, 100), dim=1))


def test_solve_refuses_an_unknown_on_nonfinite() -> None:
    with pytest.raises(InvalidArgumentError, match="^on_nonfinite must be one of 'mask', 'raise', got 'skip'$"):
        solve(Pendulum(), "rk4", X0, 0.1, 10, on_nonfinite="skip")


def test_save_every_that_does_not_divide_runs_to_the_last_multiple_and_says_so() -> None:
    with pytest.warns(SaveEveryWarning, match="^n_steps = 10 is not a multiple of save_every = 3: running 9 steps"):
        sol = solve(Pendulum(), "rk4", X0, 0.1, 10, save_every=3)
    assert sol.stats["steps"] == 9 and sol.ts.tolist() == pytest.approx([0.0, 0.3, 0.6, 0.9])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_initial_states_are_refused_as_the_message_says(dtype: torch.dtype) -> None:
    """The message names float32 and float64 as the allowed dtypes, and the check agrees (issue 13)."""
    with pytest.raises(InvalidArgumentError) as info:
        rollout(Pendulum(), "leapfrog", torch.zeros(2, 2, dtype=dtype), 0.1, 10)
    assert str(info.value) == f"x0 must have a floating dtype (float32 or float64), got {dtype}"


class _ViewSpring(AbstractSeparableField):
    """``H = (p^2 + q^2) / 2`` whose halves return views of the state they are given (``dq/dt = p`` is
    ``x[..., 1:]`` itself): the in-place splitting path must never let a later write change a value read earlier."""

    dof = 1

    def __call__(self, t, x: Tensor) -> Tensor:
        return torch.cat([self.dq_dt(t, x), self.dp_dt(t, x)], dim=-1)

    def dq_dt(self, t, x: Tensor) -> Tensor:
        return x[..., 1:]

    def dp_dt(self, t, x: Tensor) -> Tensor:
        return x[..., :1].neg()



@pytest.mark.parametrize("name", ["leapfrog", "yoshida4", "symplectic_euler"])
def test_graph_free_rollouts_update_in_place_and_agree_bit_for_bit_with_the_graph_path(name: str) -> None:
    """Under ``no_grad`` the splitting methods update a copy of the state in place (no ``torch.cat`` per half
    evaluation); with gradients enabled they build new tensors. Same states, bit for bit, x0 untouched, also for a
    field whose halves are views of their input."""
    for field in (_ViewSpring(), Pendulum()):
        x0 = X0[:, :2].clone().float()
        before = x0.clone()
        with torch.no_grad():
            fast = rollout(field, name, x0, 0.05, 60)
        graph_x0 = x0.clone().requires_grad_(True)
        slow = rollout(field, name, graph_x0, 0.05, 60)
        assert slow.requires_grad and torch.equal(fast, slow.detach())
        assert torch.equal(x0, before)
        assert torch.equal(fast, torch.stack(by_hand(field, name, x0, 0.05, 60), dim=1))


@pytest.mark.parametrize("dtype, width", [(torch.float32, 2), (torch.float64, 2), (torch.float32, 4),
                                          (torch.float64, 1)])
def test_saved_states_are_stacked_in_time_with_the_same_bits(dtype: torch.dtype, width: int) -> None:
    """The blocked transpose used for small rows (2, 4 or 8 bytes) gives ``torch.stack(dim=1)`` exactly, NaN
    payloads and signed zeros included."""
    from hnnlab.rollout import _stack_in_time

    generator = torch.Generator().manual_seed(0)
    states = [torch.randn(7, width, generator=generator, dtype=torch.float64).to(dtype) for _ in range(50)]
    states[3][2, 0] = float("nan")
    states[4][1, -1] = -0.0
    stacked = _stack_in_time(states)
    expected = torch.stack(states, dim=1)
    assert stacked.shape == (7, 50, width) and stacked.is_contiguous()
    word = {4: torch.int32, 8: torch.int64}[stacked.element_size()]  # compare bits, so that NaN == NaN
    assert torch.equal(stacked.view(word), expected.view(word))


def test_counts_may_be_numpy_integers_and_t0_must_be_finite():
    import numpy as np

    from hnnlab.errors import InvalidArgumentError
    from hnnlab.rollout import iter_solve, solve
    from hnnlab.systems import get_system

    system, x0 = get_system("pendulum"), torch.zeros(2, 2, dtype=torch.float64)
    assert solve(system, "leapfrog", x0, 0.1, np.int64(10), np.int32(5)).ys.shape == (2, 3, 2)
    for bad in (float("nan"), float("inf"), "0"):
        with pytest.raises(InvalidArgumentError, match="t0 must be a finite number, got"):
            solve(system, "leapfrog", x0, 0.1, 10, t0=bad)
    stream = iter_solve(system, "leapfrog", x0, 0.1, 10)
    list(stream)
    assert stream.result().ys.shape == (2, 0, 2)  # the stream kept no states: (batch, 0, 2 * dof)


def test_gradients_flow_through_a_rollout_of_small_float32_states():
    # One-dof float32 states are 8 bytes a row: the fast stacking of saved states must keep the graph.
    from hnnlab.systems import get_system

    x0 = torch.tensor([[0.5, 0.1], [0.2, -0.3]], dtype=torch.float32, requires_grad=True)
    ys = rollout(get_system("mass_spring"), "leapfrog", x0, 0.1, 10)
    (grad,) = torch.autograd.grad(ys[:, -1].sum(), x0)
    assert ys.requires_grad and torch.isfinite(grad).all() and grad.abs().sum() > 0
