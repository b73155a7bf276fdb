"""Serve minibatches straight from in-memory tensors, in an order fixed by (seed, epoch).

A binary subset is small enough to keep decoded in memory (on the GPU when training there), so
batches are slices of a per-epoch permutation instead of per-sample transforms and collation.
Each loader item is a *group* of up to `minibatches_per_step` minibatches; the model runs one SGD
step per minibatch, so grouping changes no update, only how often Lightning's loop turns.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from lrexp.data.wide_features import Features, WideFeatures


def epoch_permutation(n: int, seed: int, epoch: int, *part: int) -> Tensor:
    """The training order of epoch `epoch`: a function of (seed, epoch) only, so that a
    resumed run sees the same batches as an uninterrupted one; `part` tells apart the orders
    of an epoch's pieces (a stream's shuffle buffers)."""
    state = np.random.SeedSequence([seed, epoch, *part]).generate_state(1, dtype=np.uint64)[0]
    generator = torch.Generator().manual_seed(int(state) & (2**63 - 1))
    return torch.randperm(n, generator=generator)


class ResumableGroups:
    """A sampler of loader items that can resume inside an epoch: it counts the items it has
    given this epoch (`state_dict`), and after `load_state_dict` the next pass over that epoch
    starts after them.

    Exact because lrexp's loaders have a length: Lightning then fetches no item ahead, so at a
    checkpoint the items given are the items trained on. A loader's epoch order is a function
    of (seed, epoch), so the position is all a resumed run needs.
    """

    epoch: int
    given = 0  # items given in this epoch's pass
    _resume: tuple[int, int] | None = None  # (epoch, items given) from a checkpoint

    def start_pass(self) -> int:
        """Items of this epoch to leave out (those given before the checkpoint)."""
        resume, self._resume = self._resume, None
        self.given = resume[1] if resume is not None and resume[0] == self.epoch else 0
        return self.given

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "given": self.given}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (int(state["epoch"]), int(state["given"]))


class ResumableLoader(DataLoader):
    """A DataLoader whose sampler is a ResumableGroups: Lightning saves the position of any
    loader with state_dict/load_state_dict (its `_Stateful`) in each checkpoint and hands it
    back on resume, so a run resumed from a mid-epoch checkpoint takes the uninterrupted run's
    steps."""

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)


class EpochBatches(ResumableGroups, Sampler[list[Tensor]]):
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
        skip = self.start_pass()
        indices = self._indices().to(self.device)
        batches = indices.split(self.batch_size) if len(indices) else ()  # as many as __len__
        per_step = self.minibatches_per_step
        for start in range(skip * per_step, len(batches), per_step):
            self.given += 1
            yield list(batches[start : start + per_step])

    @property
    def minibatches_per_epoch(self) -> int:
        return math.ceil(self._num_samples() / self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self.minibatches_per_epoch / self.minibatches_per_step)


class InMemoryDataset(Dataset):
    """Features, labels and (optionally) the rows' sample weights, indexed by whole groups of
    minibatches; keeps the buffer that `Minibatches.features()` gathers into."""

    def __init__(self, x: Features, y: Tensor, weight: Tensor | None = None) -> None:
        self.x, self.y, self.weight = x, y, weight
        self._staging = x.new_empty((0, *x.shape[1:])) if isinstance(x, Tensor) else None

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
    reached, so that a group never holds more than one minibatch's copy of the features.

    Iterating gives fresh tensors (x, y, sample weights or None); the training step takes the
    group's labels at once (`labels()`) and its features minibatch by minibatch (`features()`).

    Deliberately not a Sequence: the DataLoader's default_convert would rebuild it as a list,
    gathering everything.
    """

    def __init__(self, source: InMemoryDataset, indices: Sequence[Tensor]) -> None:
        self.source, self.indices = source, indices

    @classmethod
    def of(cls, x: Features, y: Tensor, weight: Tensor | None = None) -> Minibatches:
        """One minibatch of all of (x, y): what a plain (x, y) batch from any loader becomes."""
        return cls(InMemoryDataset(x, y, weight), [torch.arange(len(y), device=y.device)])

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[Features, Tensor, Tensor | None]]:
        for idx in self.indices:
            yield self.source.x[idx], self.source.y[idx], self._weight(idx)

    def sizes(self) -> list[int]:
        return [len(idx) for idx in self.indices]

    def labels(self) -> tuple[Tensor, Tensor | None]:
        """Every minibatch's labels and sample weights (None: every row counts once), one after
        another: one gather each for the whole group."""
        idx = self.indices[0] if len(self.indices) == 1 else torch.cat(list(self.indices))
        return self.source.y[idx], self._weight(idx)

    def features(self) -> Iterator[Features]:
        """Each minibatch's features in turn, gathered into one buffer that the loader reuses
        for every minibatch, so each is valid only until the next is drawn: that is how the
        training step uses them, and no minibatch allocates memory (benchmarks/README.md has
        what fresh tensors cost). A wide table's rows, of varying width, are gathered afresh."""
        x = self.source.x
        if isinstance(x, WideFeatures):
            yield from (x[idx] for idx in self.indices)
            return
        buffer = self.source.staging(max(self.sizes(), default=0))
        for idx in self.indices:
            yield torch.index_select(x, 0, idx, out=buffer[: len(idx)])

    def _weight(self, idx: Tensor) -> Tensor | None:
        weight = self.source.weight
        return None if weight is None else weight[idx]

    def to(self, device: torch.device | str) -> Minibatches:
        """What Lightning calls to move a batch: one call, and this same group for data already
        on `device` (lrexp's DataModules put it there), instead of a walk over every minibatch
        tensor."""
        source = self.source
        x, y = source.x.to(device), source.y.to(device)
        weight = None if source.weight is None else source.weight.to(device)
        if x is source.x and y is source.y and weight is source.weight:
            return self
        moved = InMemoryDataset(x, y, weight)
        return Minibatches(moved, [idx.to(device) for idx in self.indices])


class SplitLoaders:
    """A LightningDataModule's three loaders over its in-memory `splits` (split_loader), the
    training one shuffled in minibatches of `hparams.batch_size`."""

    def train_dataloader(self) -> DataLoader:
        return split_loader(self, "train", self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return split_loader(self, "val")

    def test_dataloader(self) -> DataLoader:
        return split_loader(self, "test")


def split_loader(
    datamodule: L.LightningDataModule,
    split: str,
    batch_size: int | None = None,
    shuffle: bool = False,
) -> DataLoader:
    """A DataModule's split, preprocessed on the trainer's device, as groups of minibatches
    (`batch_size` None: the whole split in one); this rank's share when distributed. The
    DataModule provides what `preprocessed_split` reads, `seed` and `minibatches_per_step`."""
    trainer = datamodule.trainer
    device = trainer.strategy.root_device if trainer else torch.device("cpu")
    x, y, weight = preprocessed_split(datamodule, split, device)
    return tensor_loader(
        x,
        y,
        batch_size=batch_size or max(len(y), 1),
        minibatches_per_step=datamodule.minibatches_per_step,
        shuffle=shuffle,
        seed=datamodule.seed,
        rank=trainer.global_rank if trainer else 0,
        world_size=trainer.world_size if trainer else 1,
        weight=weight,
    )


def preprocessed_split(
    datamodule: L.LightningDataModule, split: str, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor, Tensor | None]:
    """A split's model features, labels and sample weights (None: every row counts once) on
    `device`, from the DataModule's `splits`, `preprocess` and `sample_weights`
    (lrexp.data.extras)."""
    raw, y = datamodule.splits[split]
    weight = datamodule.sample_weights(split)
    return (
        datamodule.preprocess(raw.to(device)),
        y.to(device),
        None if weight is None else weight.to(device),
    )


def tensor_loader(
    x: Features,
    y: Tensor,
    batch_size: int,
    minibatches_per_step: int = 1,
    shuffle: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    weight: Tensor | None = None,
) -> DataLoader:
    """A DataLoader over in-memory tensors (and the rows' sample weights) that fetches whole
    minibatches, never samples."""
    sampler = EpochBatches(
        len(y), batch_size, minibatches_per_step, shuffle, seed, rank, world_size, x.device
    )
    return ResumableLoader(InMemoryDataset(x, y, weight), batch_size=None, sampler=sampler)
