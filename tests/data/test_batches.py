"""lrexp.data.batches: the per-epoch order and the groups of minibatches each rank gets."""

from __future__ import annotations

import torch

from lrexp.data.batches import EpochBatches, Minibatches, epoch_permutation, tensor_loader


def flat(sampler: EpochBatches) -> list[list[int]]:
    """The minibatches of one pass, as lists of indices."""
    return [batch.tolist() for group in sampler for batch in group]


def test_epoch_permutation_depends_on_seed_and_epoch_only() -> None:
    torch.manual_seed(123)
    first = epoch_permutation(100, seed=7, epoch=3)
    torch.manual_seed(456)  # the global RNG plays no part
    assert torch.equal(first, epoch_permutation(100, seed=7, epoch=3))
    assert sorted(first.tolist()) == list(range(100))
    assert not torch.equal(first, epoch_permutation(100, seed=7, epoch=4))
    assert not torch.equal(first, epoch_permutation(100, seed=8, epoch=3))


def test_every_seed_and_epoch_pair_has_its_own_order() -> None:
    """Not a function of seed + epoch (nor of any other mix of the two that collides): runs
    with seeds 0 and 1 must not replay each other's epochs one epoch apart."""
    pairs = [(seed, epoch) for seed in range(4) for epoch in range(4)]
    orders = {tuple(epoch_permutation(100, seed, epoch).tolist()) for seed, epoch in pairs}
    assert len(orders) == len(pairs)


def test_a_resumed_sampler_replays_the_epoch_of_an_uninterrupted_one() -> None:
    """A fresh sampler told the epoch (as Lightning does on resume) serves that epoch's batches,
    which differ from every other epoch's."""
    uninterrupted = EpochBatches(50, 8, 2, shuffle=True, seed=1)
    epochs = []
    for epoch in range(3):
        uninterrupted.set_epoch(epoch)
        epochs.append(flat(uninterrupted))
    assert epochs[0] != epochs[1] != epochs[2] != epochs[0]  # set_epoch changes the order
    resumed = EpochBatches(50, 8, 2, shuffle=True, seed=1)
    resumed.set_epoch(2)
    assert flat(resumed) == epochs[2]
    expected = epoch_permutation(50, seed=1, epoch=2).split(8)
    assert flat(resumed) == [batch.tolist() for batch in expected]


def test_groups_hold_minibatches_per_step_minibatches_and_len_counts_groups() -> None:
    sampler = EpochBatches(10, batch_size=3, minibatches_per_step=2, shuffle=False)
    groups = [[b.tolist() for b in group] for group in sampler]
    assert groups == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9]]]
    assert len(sampler) == len(groups) == 2


def test_training_shards_are_disjoint_and_equally_long() -> None:
    n, world = 103, 4
    samplers = [EpochBatches(n, 5, 3, True, seed=0, rank=r, world_size=world) for r in range(4)]
    # DDP synchronises every step: each rank must run as many groups and minibatches
    assert {len(list(s)) for s in samplers} == {len(samplers[0])} == {2}
    shards = [flat(s) for s in samplers]
    assert {len(shard) for shard in shards} == {5}
    samples = [sum(shard, []) for shard in shards]
    assert {len(s) for s in samples} == {n // world}
    everything = sum(samples, [])
    assert len(set(everything)) == len(everything) == n - n % world


def test_evaluation_shards_cover_every_sample_once() -> None:
    n, world = 11, 3
    shards = [flat(EpochBatches(n, 100, 1, False, rank=r, world_size=world)) for r in range(world)]
    assert sorted(sum((sum(s, []) for s in shards), [])) == list(range(n))
    assert [len(EpochBatches(n, 100, 1, False, rank=r, world_size=world)) for r in range(3)] == [
        1
    ] * 3


def test_an_empty_split_yields_nothing_as_its_len_says() -> None:
    sampler = EpochBatches(0, 1, 64, shuffle=False)
    assert len(sampler) == 0
    assert list(sampler) == []


def test_tensor_loader_serves_pairs_on_the_tensors_device() -> None:
    """Each item is a group of (x, y) minibatches, gathered as it is iterated (the DataLoader
    must not turn it into a list)."""
    x, y = torch.arange(20.0).reshape(10, 2), torch.arange(10.0)
    (group,) = list(tensor_loader(x, y, batch_size=4, minibatches_per_step=8))
    assert isinstance(group, Minibatches) and len(group) == 3
    assert [len(batch_y) for _, batch_y, _ in group] == [4, 4, 2]
    for batch_x, batch_y, _ in group:
        assert torch.equal(batch_x[:, 0], 2 * batch_y)
        assert batch_x.device == x.device


def test_staged_minibatches_are_the_plain_ones_gathered_into_one_reused_buffer() -> None:
    x, y = torch.randn(10, 3), torch.arange(10.0)
    weight = torch.rand(10)
    loader = tensor_loader(
        x, y, batch_size=4, minibatches_per_step=8, shuffle=True, seed=3, weight=weight
    )
    (group,) = list(loader)
    plain = [(bx.clone(), by, bw) for bx, by, bw in group]
    assert len(loader.dataset.staging(0)) == 0  # plain iteration allocates no buffer
    staged = [(bx.clone(), bx.data_ptr()) for bx in group.features()]
    assert group.sizes() == [4, 4, 2]
    labels, weights = group.labels()  # the whole group's, in minibatch order
    assert torch.equal(labels, torch.cat([py for _, py, _ in plain]))
    assert torch.equal(weights, torch.cat([pw for *_, pw in plain]))
    for (px, _, _), (sx, _) in zip(plain, staged, strict=True):
        assert torch.equal(px, sx)
    assert len({ptr for _, ptr in staged}) == 1  # one buffer, every minibatch
    (again,) = list(loader)
    assert next(again.features()).data_ptr() == staged[0][1]  # kept by the loader across items
