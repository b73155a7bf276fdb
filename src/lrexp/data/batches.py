"""Serve minibatches straight from in-memory tensors, in an order fixed by (seed, epoch).

A binary subset is small enough to keep decoded in memory (on the GPU when training there), so
batches are slices of a per-epoch permutation instead of per-sample transforms and collation.
Each loader item is a *group* of up to `minibatches_per_step` minibatches; the model runs one SGD
step per minibatch, so grouping changes no update, only how often Lightning's loop turns.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The training order of epoch `epoch`: a function of (seed, epoch) only, so that a
    resumed run sees the same batches as an uninterrupted one."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    generator = torch.Generator().manual_seed(int(state) & (2**63 - 1))
    return torch.randperm(n, generator=generator)


class EpochBatches(Sampler[list[Tensor]]):
    """Yields groups of minibatch index tensors; this rank's share of the data when distributed.

    Training shards drop the remainder so that every rank runs the same number of SGD steps
    (DDP synchronises each one); evaluation shards keep every sample.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        minibatches_per_step: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.n, self.batch_size, self.minibatches_per_step = n, batch_size, minibatches_per_step
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def _indices(self) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.n)[self.rank :: self.world_size]
        order = epoch_permutation(self.n, self.seed, self.epoch)
        return order[: self.n - self.n % self.world_size][self.rank :: self.world_size]

    def _num_samples(self) -> int:
        if self.shuffle:
            return self.n // self.world_size
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self):
        indices = self._indices().to(self.device)
        batches = indices.split(self.batch_size) if len(indices) else ()  # as many as __len__
        for start in range(0, len(batches), self.minibatches_per_step):
            yield list(batches[start : start + self.minibatches_per_step])

    def __len__(self) -> int:
        return math.ceil(math.ceil(self._num_samples() / self.batch_size) / self.minibatches_per_step)


class InMemoryDataset(Dataset):
    """Features and labels indexed by whole groups of minibatches; keeps the buffer that
    `Minibatches.sharing_one_buffer()` gathers into."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y
        self._staging = x.new_empty((0, *x.shape[1:]))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, groups: list[Tensor]) -> Minibatches:
        return Minibatches(self, groups)

    def staging(self, rows: int) -> Tensor:
        """The reused gather buffer, grown on first use (plain iteration never allocates it)."""
        if len(self._staging) < rows:
            self._staging = self.x.new_empty((rows, *self.x.shape[1:]))
        return self._staging


class Minibatches:
    """A loader item: a group of minibatches of in-memory tensors, each gathered only when it is
    reached (gathering a whole group up front made an epoch about 20 % slower).

    Iterating gives fresh tensors. `staged()` gives the same minibatches with the features
    gathered into one buffer that the loader reuses for every minibatch, so each is valid only
    until the next is drawn: that is how the training step uses them. A fresh multi-megabyte
    tensor per minibatch made an epoch at batch 1024 up to 1.7 times slower than the raw loop
    whenever the C allocator handed that memory back to the system in between (about 7000 page
    faults an epoch; benchmarks/throughput.py).

    Deliberately not a Sequence: the DataLoader's default_convert would rebuild it as a list,
    gathering everything.
    """

    def __init__(self, source: InMemoryDataset, indices: Sequence[Tensor]) -> None:
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for idx in self.indices:
            yield self.source.x[idx], self.source.y[idx]

    def sharing_one_buffer(self) -> Iterator[tuple[Tensor, Tensor]]:
        buffer = self.source.staging(max((len(idx) for idx in self.indices), default=0))
        for idx in self.indices:
            x = torch.index_select(self.source.x, 0, idx, out=buffer[: len(idx)])
            yield x, self.source.y[idx]

    def to(self, device: torch.device | str) -> Minibatches:
        """What Lightning calls to move a batch: one call, and this same group for data already
        on `device` (lrexp's DataModules put it there), instead of a walk over every minibatch
        tensor."""
        x, y = self.source.x.to(device), self.source.y.to(device)
        if x is self.source.x and y is self.source.y:
            return self
        return Minibatches(InMemoryDataset(x, y), [idx.to(device) for idx in self.indices])


def tensor_loader(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    minibatches_per_step: int = 1,
    shuffle: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A DataLoader over in-memory tensors that fetches whole minibatches, never samples."""
    sampler = EpochBatches(
        len(y), batch_size, minibatches_per_step, shuffle, seed, rank, world_size, x.device
    )
    return DataLoader(InMemoryDataset(x, y), batch_size=None, sampler=sampler)
