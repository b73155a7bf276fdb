"""Minibatches from a stream of row groups, in an order fixed by (seed, epoch), never holding
more than one shuffle buffer of rows.

- Sharding: rank r of W reads the row groups r, r + W, r + 2W, ... (the same ones every epoch,
  so a node reads only its share of the files).
- Equal steps: DDP synchronises every step, so every rank takes the same number. Each rank
  knows every row group's training rows (the statistics pass counts them), so each computes
  every rank's total and trains on the smallest: the first `rows_per_rank` rows of its own
  epoch order. The rows left out are a different few each epoch.
- Order: this rank's row groups shuffled by (seed, epoch, rank) make one sequence of rows; it
  is cut into shuffle buffers of `buffer_rows` rows (a multiple of the batch size, so no
  minibatch spans two), and each buffer's rows are shuffled by (seed, epoch, rank, buffer).
- Position: the order is a function of (seed, epoch), so a checkpoint keeps only the epoch and
  the loader items given (batches.ResumableGroups); a resumed run skips those items without
  reading their rows.

A loader item is a group of minibatches as lrexp.data.batches makes them (Minibatches), over
the current buffer's rows, so the model and its solvers take streamed and in-memory data alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from lrexp.data.batches import InMemoryDataset, Minibatches, ResumableGroups, epoch_permutation
from lrexp.data.wide_features import Features, cat

# (features, labels, sample weights or None) of one row group's training rows, preprocessed, on
# the training device; the features WideFeatures where string columns are hashed.
Rows = tuple[Features, Tensor, Tensor | None]
ReadRows = Callable[[int], Rows]


@dataclass(frozen=True)
class Buffer:
    """One shuffle buffer: its place in the epoch and its rows, as (row group, first, stop) of
    each row group's training rows."""

    epoch: int
    index: int
    spans: tuple[tuple[int, int, int], ...]


class StreamBatches(ResumableGroups, Sampler[tuple[Buffer, list[Tensor]]]):
    """Yields (buffer, minibatch indices into it), grouped `minibatches_per_step` a loader
    item; `rows[g]` is row group g's training rows."""

    def __init__(
        self,
        rows: np.ndarray,
        batch_size: int,
        minibatches_per_step: int,
        buffer_rows: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        self.batch_size, self.minibatches_per_step = batch_size, minibatches_per_step
        self.buffer_rows = max(batch_size, buffer_rows // batch_size * batch_size)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.device = torch.device(device)
        self.epoch = 0
        self.share = np.arange(rank, len(self.rows), world_size)
        self.rows_per_rank = min(int(self.rows[r::world_size].sum()) for r in range(world_size))

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def buffers(self) -> Iterator[Buffer]:
        """This epoch's shuffle buffers, in order (from the row groups' row counts alone)."""
        # As a NumPy index: a one-element tensor would index as a scalar (one row group a rank).
        order = self.share[
            epoch_permutation(len(self.share), self.seed, self.epoch, self.rank).numpy()
        ]
        spans: list[tuple[int, int, int]] = []
        filled, left, index = 0, self.rows_per_rank, 0
        for group in order.tolist():
            start, rows = 0, int(self.rows[group])
            while start < rows and left > 0:
                take = min(rows - start, self.buffer_rows - filled, left)
                spans.append((group, start, start + take))
                start, filled, left = start + take, filled + take, left - take
                if filled == self.buffer_rows or left == 0:
                    yield Buffer(self.epoch, index, tuple(spans))
                    spans, filled, index = [], 0, index + 1
            if left == 0:
                return

    def _buffer_sizes(self) -> list[int]:
        full, rest = divmod(self.rows_per_rank, self.buffer_rows)
        return [self.buffer_rows] * full + ([rest] if rest else [])

    @property
    def minibatches_per_epoch(self) -> int:
        return math.ceil(self.rows_per_rank / self.batch_size)

    def __len__(self) -> int:
        per_step = self.minibatches_per_step
        return sum(
            math.ceil(math.ceil(n / self.batch_size) / per_step) for n in self._buffer_sizes()
        )

    def __iter__(self) -> Iterator[tuple[Buffer, list[Tensor]]]:
        skip = self.start_pass()
        item = 0
        per_step = self.minibatches_per_step
        for buffer in self.buffers():
            size = sum(stop - start for _, start, stop in buffer.spans)
            items = math.ceil(math.ceil(size / self.batch_size) / per_step)
            if item + items <= skip:  # given before the checkpoint: not even shuffled
                item += items
                continue
            order = epoch_permutation(size, self.seed, self.epoch, self.rank, 1 + buffer.index)
            batches = order.to(self.device).split(self.batch_size)
            for start in range(0, len(batches), per_step):
                if item >= skip:
                    self.given += 1
                    yield buffer, list(batches[start : start + per_step])
                item += 1


class StreamRows(Dataset):
    """The rows of the current shuffle buffer, read when a loader item first names it (the last
    row group read is kept: a row group spanning two buffers is read once). `passes` gives the
    training rows of this rank's row groups one after another (the full objective's pass)."""

    def __init__(self, read: ReadRows, share: np.ndarray) -> None:
        self.read, self.share = read, share
        self._buffer: tuple[Buffer, InMemoryDataset] | None = None
        self._group: tuple[int, Rows] | None = None

    def __getitem__(self, item: tuple[Buffer, list[Tensor]]) -> Minibatches:
        buffer, indices = item
        if self._buffer is None or self._buffer[0] != buffer:
            self._buffer = None  # the previous buffer goes before the next is read
            parts = [self._rows_of(g) for g, _, _ in buffer.spans]
            x, y, weight = (
                None
                if parts[0][k] is None
                else cat([p[k][a:b] for p, (_, a, b) in zip(parts, buffer.spans, strict=True)])
                for k in range(3)
            )
            self._buffer = (buffer, InMemoryDataset(x, y, weight))
        return Minibatches(self._buffer[1], indices)

    def _rows_of(self, group: int) -> Rows:
        if self._group is None or self._group[0] != group:
            self._group = None
            self._group = (group, self.read(group))
        return self._group[1]

    def passes(self) -> Iterator[Rows]:
        """Every training row of this rank's row groups once, row group by row group."""
        for group in self.share.tolist():
            yield self.read(group)
