"""Compiled rollouts (``solve(..., compile=True)``, :mod:`hnnlab.compiled`): the chunk plan, the refusals, and one
test that compiles (two tiny graphs) and compares with the eager loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hnnlab.compiled import CHUNK_EVALUATIONS, chunk_plan, compile_unavailable, default_steps
from hnnlab.errors import InvalidArgumentError
from hnnlab.inputs import DrivenField, InputSignal
from hnnlab.rollout import Status, iter_rollout, iter_solve, rollout, solve
from hnnlab.systems import get_system

HH = get_system("henon_heiles", energy_range=(0.05, 0.1))
# Three regular orbits and one that leaves the potential well and overflows (y'' = y^2 - y for y > 1).
X0 = torch.cat([HH.sample_initial_states(3, torch.Generator().manual_seed(0)),
                torch.tensor([[0.0, 3.0, 0.0, 0.0]], dtype=torch.float64)])


@pytest.mark.parametrize("n_steps, save_every, steps", [
    (20, 2, 6), (20, 2, 2), (24, 1, 5), (100, 100, 64), (1000, 1000, 64), (300, 100, 64), (0, 1, 4), (12, 3, 3),
])
def test_chunk_plan_covers_the_steps_saves_every_saved_step_and_needs_at_most_two_graphs(
        n_steps: int, save_every: int, steps: int) -> None:
    plan = list(chunk_plan(n_steps, save_every, steps))
    assert sum(n for n, _ in plan) == n_steps
    assert all(1 <= n <= steps for n, _ in plan)
    starts = [sum(n for n, _ in plan[:i]) for i in range(len(plan))]
    saved = [start + r for start, (_, saves) in zip(starts, plan, strict=True) for r in saves]
    assert saved == list(range(save_every, n_steps + 1, save_every))
    assert len(set(plan)) <= 2


@pytest.mark.parametrize("n_steps, save_every, steps, length", [
    (10000, 10000, 64, 50), (20, 2, 6, 4), (2000, 2000, 4, 4), (5000, 5000, 7, 5),
])
def test_chunk_plan_takes_one_length_where_one_divides_the_work(n_steps: int, save_every: int, steps: int,
                                                                 length: int) -> None:
    assert {n for n, _ in chunk_plan(n_steps, save_every, steps)} == {length}


def test_default_chunk_holds_about_the_default_field_evaluations() -> None:
    assert default_steps(1.0) == CHUNK_EVALUATIONS  # leapfrog in a rollout: one force per step
    assert default_steps(15.0) == round(CHUNK_EVALUATIONS / 15)  # kahan_li8: 15 drifts and 15 kicks of half fields
    assert default_steps(1000.0) == 1


def test_what_cannot_be_compiled_is_refused_before_the_first_step() -> None:
    with pytest.raises(InvalidArgumentError, match=r"^compile=True needs an explicit fixed-step integrator; "
                       r"'implicit_midpoint' is implicit \(its fixed-point iteration stops on a data-dependent "
                       r"test\): use compile=False$"):
        solve(HH, "implicit_midpoint", X0, 0.1, 4, compile=True)
    with pytest.raises(InvalidArgumentError, match=r"'dopri5' is adaptive \(per-trajectory step sizes\)"):
        solve(HH, "dopri5", X0, 0.1, 4, compile=True)
    chain = get_system("spring_damper_chain")
    t = torch.arange(3, dtype=torch.float64)
    driven = DrivenField(chain, InputSignal(t, torch.zeros(2, 3, chain.n_inputs, dtype=torch.float64), "zoh"))
    x0 = chain.sample_initial_states(2, torch.Generator().manual_seed(0))
    with pytest.raises(InvalidArgumentError, match=r"^compile=True cannot compile DrivenField: a field that differs "
                       r"between trajectories is bound anew to every step; use compile=False$"):
        solve(driven, "rk4", x0, 0.5, 2, compile=True)


@pytest.mark.parametrize("kwargs, message", [
    ({"compile": 1}, "compile must be True or False, got 1"),
    ({"compile": True, "compile_steps": 0}, "compile_steps must be an integer >= 1 or None, got 0"),
    ({"compile": True, "compile_steps": 2.0}, "compile_steps must be an integer >= 1 or None, got 2.0"),
    ({"compile_steps": 4}, "compile_steps is used only with compile=True"),
])
def test_compile_arguments_are_checked(kwargs: dict, message: str) -> None:
    for run in (solve, rollout, iter_rollout, iter_solve):  # every entry point of the loop takes them
        with pytest.raises(InvalidArgumentError, match=f"^{message}$"):
            run(HH, "leapfrog", X0, 0.1, 4, **kwargs)


def test_compiled_solve_with_gradients_is_refused() -> None:
    class Spring(nn.Module):
        is_separable = True

        def __init__(self) -> None:
            super().__init__()
            self.k = nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

        def forward(self, t, x):
            return torch.cat([x[..., 1:], -self.k * x[..., :1]], dim=-1)

    x0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    with pytest.raises(InvalidArgumentError, match=r"^compile=True computes no gradients, but x0 or the parameters "
                       r"of the field require grad: solve under torch.no_grad\(\) \(or detach them\), or use "
                       r"compile=False$"):
        solve(Spring(), "rk4", x0, 0.1, 4, compile=True)


@pytest.mark.slow  # two small graphs: 34 s of compile on the loaded 2-core machine
@pytest.mark.skipif(compile_unavailable() is not None, reason=str(compile_unavailable()))
def test_compiled_solve_equals_the_eager_loop_to_round_off() -> None:
    """Leapfrog and Kahan-Li 8 on Henon-Heiles, chunks of 2 steps (one small graph each): the same states to round-off,
    the same statuses, first bad steps, field evaluations and replayed steps as the eager loop checking at the same
    steps; streamed chunks, a progress bar and a second solve give the same states and compile nothing."""
    from torch._dynamo.utils import counters

    for method in ("leapfrog", "kahan_li8"):
        args = (HH, method, X0, 0.2, 20)
        compiled = solve(*args, save_every=2, check_every=2, compile=True, compile_steps=2)
        eager = solve(*args, save_every=2, check_every=2)
        assert compiled.status.tolist() == eager.status.tolist() == [Status.OK] * 3 + [Status.NONFINITE]
        assert torch.equal(compiled.first_bad_step, eager.first_bad_step)
        assert compiled.stats == eager.stats
        assert torch.equal(torch.isnan(compiled.ys), torch.isnan(eager.ys))
        assert torch.isnan(eager.ys[3, -1]).all()
        torch.testing.assert_close(compiled.ys[:3], eager.ys[:3], rtol=0, atol=1e-14)
        grown = eager.ys[3].abs().nan_to_num(nan=1.0)  # the overflowing row, relative to its size
        assert ((compiled.ys[3] - eager.ys[3]).nan_to_num().abs() <= 1e-13 * grown).all()

        graphs = counters["stats"]["unique_graphs"]
        again = solve(*args, save_every=2, compile=True, compile_steps=2, progress=True)
        stream = iter_solve(*args, save_every=2, chunk_size=4, compile=True, compile_steps=2)
        chunks = list(stream)
        assert counters["stats"]["unique_graphs"] == graphs  # nothing compiled again
        assert [c.shape[1] for c in chunks] == [4, 4, 3]
        assert torch.equal(again.ys.nan_to_num(), compiled.ys.nan_to_num())
        assert torch.equal(torch.cat(chunks, dim=1).nan_to_num(), compiled.ys.nan_to_num())
        assert stream.result().first_bad_step.tolist() == compiled.first_bad_step.tolist()

    # rollout and iter_rollout (on_nonfinite="raise") compile too: the finite rows, the same states
    finite = X0[:3]
    states = rollout(HH, "leapfrog", finite, 0.2, 20, 2, compile=True, compile_steps=2)
    streamed = torch.cat(list(iter_rollout(HH, "leapfrog", finite, 0.2, 20, 2, chunk_size=4, compile=True,
                                           compile_steps=2)), dim=1)
    torch.testing.assert_close(states, rollout(HH, "leapfrog", finite, 0.2, 20, 2), rtol=0, atol=1e-14)
    assert torch.equal(streamed, states)
