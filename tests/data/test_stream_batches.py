"""Streamed minibatches: every rank its own row groups and the same number of steps, an order fixed
by (seed, epoch), a bounded buffer, and a resumed pass that continues the interrupted one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lrexp.data.stream_batches import StreamBatches, StreamRows

ROWS = np.array([7, 3, 10, 1, 8, 6, 5])  # training rows of each row group


def rows_of(group: int) -> tuple[torch.Tensor, torch.Tensor, None]:
    """Row group g's rows, each row's value its (group, row) as one number."""
    ids = torch.arange(int(ROWS[group]), dtype=torch.float32) + 100 * group
    return ids.unsqueeze(1), torch.zeros(int(ROWS[group]), dtype=torch.long), None


def epoch(sampler: StreamBatches, number: int) -> list[list[float]]:
    """The minibatches of one epoch, as their rows' ids."""
    sampler.set_epoch(number)
    dataset = StreamRows(rows_of, sampler.share)
    return [x.flatten().tolist() for item in sampler for x, _, _ in dataset[item]]


def sampler(**kwargs) -> StreamBatches:
    settings = {"batch_size": 4, "minibatches_per_step": 2, "buffer_rows": 12, "seed": 0}
    return StreamBatches(ROWS, **(settings | kwargs))


def test_one_process_sees_every_row_once_an_epoch_in_minibatches() -> None:
    one = sampler()
    batches = epoch(one, 0)
    rows = sorted(r for b in batches for r in b)
    assert rows == sorted(float(100 * g + i) for g, n in enumerate(ROWS) for i in range(n))
    assert [len(b) for b in batches][:-1] == [4] * (len(batches) - 1)
    assert len(batches) == one.minibatches_per_epoch == 10
    assert len(one) == len(list(one))


def test_the_order_is_a_function_of_seed_and_epoch() -> None:
    assert epoch(sampler(), 0) == epoch(sampler(), 0)
    assert epoch(sampler(), 0) != epoch(sampler(), 1)
    assert epoch(sampler(), 0) != epoch(sampler(seed=1), 0)


def test_no_buffer_holds_more_than_its_rows() -> None:
    one = sampler()
    one.set_epoch(0)
    for buffer in one.buffers():
        assert sum(b - a for _, a, b in buffer.spans) <= one.buffer_rows == 12


@pytest.mark.parametrize("world_size", [2, 3, len(ROWS)])  # len(ROWS): one row group a rank
def test_ranks_read_their_own_row_groups_and_take_the_same_number_of_steps(
    world_size: int,
) -> None:
    ranks = [sampler(rank=r, world_size=world_size) for r in range(world_size)]
    shares = [set(s.share.tolist()) for s in ranks]
    assert set().union(*shares) == set(range(len(ROWS)))
    assert sum(map(len, shares)) == len(ROWS)
    for number in range(3):
        batches = [epoch(s, number) for s in ranks]
        assert len({len(b) for b in batches}) == 1  # DDP steps together
        assert len({len(s) for s in ranks}) == 1
        for s, mine in zip(ranks, batches, strict=True):
            groups = {int(r) // 100 for b in mine for r in b}
            assert groups <= set(s.share.tolist())
        assert sum(len(b) for b in batches[0]) == min(
            int(ROWS[r::world_size].sum()) for r in range(world_size)
        )


def test_a_resumed_pass_gives_the_rest_of_the_interrupted_one() -> None:
    whole = epoch(sampler(), 2)
    first = sampler()
    first.set_epoch(2)
    dataset = StreamRows(rows_of, first.share)
    items = iter(first)
    done = sum(len(next(items)[1]) for _ in range(3))  # three loader items, then a checkpoint
    state = first.state_dict()
    assert state == {"epoch": 2, "given": 3}
    resumed = sampler()
    resumed.load_state_dict(state)
    resumed.set_epoch(2)
    rest = [x.flatten().tolist() for item in resumed for x, _, _ in dataset[item]]
    assert rest == whole[done:]
    assert epoch(resumed, 2) == whole  # the next pass is a whole one again
