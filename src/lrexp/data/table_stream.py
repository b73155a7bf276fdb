"""data.stream=true: a Parquet dataset larger than memory as a logistic-regression problem, read
row group by row group (lrexp.data.row_groups) and never held whole.

- Statistics: one streamed pass at the start reads every row group and sums what the in-memory
  table learns (table_preprocessing.TrainingStatistics): the target's values, each numeric
  column's mean and population std, each categorical column's categories, over the training
  rows (weighted by data.weight where given). It also counts each row group's training rows,
  which fix every epoch's plan (lrexp.data.stream_batches). The state is the in-memory table's,
  in the checkpoint as there. Every rank makes this pass over all row groups: setup runs
  before the processes meet.
- Splits: data.test_path and data.val_path give the held-out rows; without them a row is held
  out by a hash of its global position (murmurhash3 of the row's number, seeded), the same on
  every rank, in every resume and in eval: test with probability data.test_fraction, then
  validation with data.val_fraction of the rest. The held-out rows are kept in memory (the
  run's metrics and figures are computed on them): give a bounded data.test_path/val_path, or
  small fractions, for a very large table.
- Features: the in-memory table's, with the one-hot columns dense (made a row group at a
  time); hashed (data.categorical=hash) and text (data.text) columns hashed per row group as in
  memory (lrexp.data.table_hashing), a sparse block beside them (WideFeatures). A hashed column
  needs no statistics, so the pass keeps no list of its values: data.missing=mean (the most
  frequent value) is refused for it, and coefficients.csv leaves the hashed columns out (no
  values to name them by).
- Training: each rank reads its share of the row groups through a shuffle buffer of
  data.shuffle_rows rows (stream_batches); the loader is resumable inside an epoch.
- NumPy: data.path=features.npy is memory-mapped and read in blocks of rows
  (lrexp.data.npy_rows), with the same statistics, splits, shards and order.
- Full-batch L-BFGS evaluates on this rank's row groups (the train loader's `passes`; the
  first pass cached to a file by lrexp.stream_objective), summed over the ranks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
from lightning.pytorch.utilities import rank_zero_only
from sklearn.utils.murmurhash import murmurhash3_32
from torch import Tensor
from torch.utils.data import DataLoader

from lrexp.data.batches import ResumableLoader
from lrexp.data.labels import log_balance, log_counts
from lrexp.data.npy_rows import NpyRows, is_npy
from lrexp.data.row_groups import RowGroups
from lrexp.data.stream_batches import StreamBatches, StreamRows
from lrexp.data.table import TableDataModule
from lrexp.data.table_columns import check_finite
from lrexp.data.table_file import TableColumns, table_columns
from lrexp.data.table_labels import label_groups, target_column
from lrexp.data.table_memory import check_hashed
from lrexp.data.table_preprocessing import TrainingStatistics, encoded_kinds
from lrexp.data.wide_features import Features, WideFeatures, cat
from lrexp.errors import LrexpError

log = logging.getLogger(__name__)

TRAIN, VAL, TEST = 0, 1, 2


def table_datamodule(stream: bool = False, val_path: str | None = None, **kwargs: Any):
    """data=table's DataModule: the table in memory, or (data.stream=true) streamed."""
    if stream:
        return StreamedTableDataModule(val_path=val_path, **kwargs)
    if val_path is not None:
        raise LrexpError(
            "data.val_path needs data.stream=true; in memory, validation is data.val_fraction "
            "of data.path"
        )
    kwargs.pop("shuffle_rows", None)
    return TableDataModule(**kwargs)


def held_out(positions: np.ndarray, seed: int, test: float, val: float) -> np.ndarray:
    """Each row's split (TRAIN, VAL, TEST) from a hash of its global position alone."""
    positions = np.asarray(positions, dtype=np.int64)
    u = np.empty(len(positions))
    high = positions >> 31
    for block in np.unique(high):  # 2^31 rows share one hash seed
        mine = high == block
        low = (positions[mine] & (2**31 - 1)).astype(np.int32)
        key_seed = int((seed + int(block) * 0x9E3779B1) % 2**32)
        u[mine] = murmurhash3_32(low, seed=key_seed, positive=True) / 2**32
    split = np.full(len(positions), TRAIN, dtype=np.int8)
    split[u < test + val * (1 - test)] = VAL
    split[u < test] = TEST
    return split


class StreamedTableDataModule(TableDataModule):
    """A Parquet dataset streamed: the in-memory table's preprocessing, labels, state and
    extras, with the training split read row group by row group (module docstring)."""

    streamed = True

    def __init__(
        self,
        path: str,
        target: str,
        features: list[str] | None = None,
        test_path: str | None = None,
        val_path: str | None = None,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        batch_size: int = 64,
        normalize: bool = True,
        missing: str = "error",
        positive: Any = None,
        negative: Any = None,
        classes: Any = None,
        delimiter: str | None = None,
        onehot_drop: str | None = None,
        weight: str | None = None,
        categorical: str = "onehot",
        hash_bits: int = 18,
        text: list[str] | None = None,
        ngram_max: int = 1,
        seed: int | None = 0,
        minibatches_per_step: int = 64,
        batches_per_fetch: int | None = None,
        shuffle_rows: int = 2**16,
    ) -> None:
        # Imputing a hashed column takes its most frequent training value: a list of every
        # value, which a stream never keeps.
        if categorical == "hash" and missing == "mean":
            raise LrexpError(
                "data.missing=mean with data.categorical=hash: a stream keeps no values of its "
                "hashed columns to impute the most frequent; use data.missing=drop (or error), "
                "or data.stream=false"
            )
        super().__init__(
            path=path, target=target, features=features, test_path=test_path,
            test_fraction=test_fraction, val_fraction=val_fraction, batch_size=batch_size,
            normalize=normalize, missing=missing, positive=positive, negative=negative,
            classes=classes, delimiter=delimiter, onehot_drop=onehot_drop, weight=weight,
            categorical=categorical, hash_bits=hash_bits, text=text, ngram_max=ngram_max,
            seed=seed,
            minibatches_per_step=minibatches_per_step, batches_per_fetch=batches_per_fetch,
        )  # fmt: skip
        if not (isinstance(shuffle_rows, int) and shuffle_rows > 0):
            raise LrexpError(f"data.shuffle_rows={shuffle_rows!r}: give a number of rows > 0")
        self.sources: dict[str, RowGroups | NpyRows] = {}
        self.group_rows = np.zeros(0, dtype=np.int64)  # training rows of each row group
        self.feature_columns: list[str] = []

    # --- Lightning hooks -----------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Opening the sources (in setup) checks them; nothing to fetch."""

    def setup(self, stage: str) -> None:
        if "val" in self.splits or (stage == "test" and "test" in self.splits):
            return
        hp = self.hparams
        for key in ("path", "test_path", "val_path"):
            if hp[key] is not None and key not in self.sources:
                path, name = hp[key], f"data.{key}"
                self.sources[key] = (
                    NpyRows(path, name, hp.target) if is_npy(path) else RowGroups(path, name)
                )
        train = self.sources["path"]
        self.feature_columns = self._check_columns(train.names, hp.path)
        for source in self.sources.values():
            source.check_schemas(self._columns())
        if stage == "fit" or not self.state:
            self._statistics_pass()
        for split, code in (("val", VAL), ("test", TEST)):
            if stage == "test" and split == "val":
                continue
            x, y, weight = self._held_out(f"{split}_path", code)
            if len(y) == 0:
                raise LrexpError(
                    f"data.{split}_path or data.{split}_fraction: the {split} split has no "
                    f"rows; give data.{split}_path or a larger data.{split}_fraction"
                )
            present = torch.bincount(y, minlength=self.num_classes)
            if absent := [self.label_names[k] for k in (present == 0).nonzero().flatten().tolist()]:
                raise LrexpError(
                    f"the {split} split has no rows of label(s) {absent}; AUROC and F1 need "
                    f"every label: give data.{split}_path with rows of each, or more rows"
                )
            self.splits[split] = (x, y)
            if weight is not None:
                self.split_weights[split] = weight
            log_balance(split, y, self.label_names)
        if stage == "fit":
            self._log_memory()

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        sampler = StreamBatches(
            self.group_rows,
            self.hparams.batch_size,
            self.minibatches_per_step,
            self.hparams.shuffle_rows,
            self.seed,
            trainer.global_rank,
            trainer.world_size,
            trainer.strategy.root_device,
        )
        if sampler.rows_per_rank == 0:
            raise LrexpError(
                f"data.path={self.hparams.path}: {len(self.group_rows)} row groups (with "
                f"training rows) for {trainer.world_size} processes leave a process none; write "
                "smaller row groups, e.g. pyarrow.parquet.write_table(t, path, row_group_size=N)"
            )
        device = trainer.strategy.root_device
        dataset = StreamRows(lambda group: self.training_rows(group, device), sampler.share)
        return ResumableLoader(dataset, batch_size=None, sampler=sampler)

    # --- the stream ----------------------------------------------------------------------------

    def preprocess(self, raw: Features) -> Features:
        """The in-memory table's preprocessing with the one-hot columns dense (a row group at a
        time); hashed and text columns stay a sparse block beside them (WideFeatures)."""
        if isinstance(raw, WideFeatures):
            return raw.with_dense(super().preprocess(raw.dense))
        return super().preprocess(raw)

    def training_rows(
        self, group: int, device: torch.device | str = "cpu"
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Row group `group`'s training rows, preprocessed, their labels and (data.weight) sample
        weights, on `device`."""
        source = self.sources["path"]
        table = self._table(source, group)
        rows, labels = self._usable_rows(
            table, self.feature_columns, source.file(group), "data.path", "data."
        )
        rows = rows[self._splits_of(source, group)[rows] == TRAIN]
        if len(rows) != self.group_rows[group]:
            raise LrexpError(
                f"data.path={self.hparams.path}: file {source.file(group)} changed since the "
                f"statistics pass ({len(rows)} training rows in its row group, then "
                f"{self.group_rows[group]}); restart the run on files that stay as they are"
            )
        raw = self._raw(table, {"train": rows})["train"]
        x = self.preprocess(raw.to(device))
        weight = self._weights(table, source.file(group))
        weight = None if weight is None else torch.from_numpy(weight[rows]).to(device)
        return x, torch.from_numpy(labels[rows]).to(device), weight

    def train_passes(
        self, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu"
    ) -> Iterator[tuple[Tensor, Tensor, Tensor | None]]:
        """Every training row of rank `rank`'s row groups once (StreamBatches' sharding)."""
        for group in range(rank, len(self.group_rows), world_size):
            yield self.training_rows(group, device)

    def _columns(self) -> list[str]:
        """The columns read: the features, the target and data.weight's."""
        weight = self.hparams.get("weight")
        return [*self.feature_columns, self.hparams.target, *([weight] if weight else [])]

    def _table(self, source: RowGroups | NpyRows, group: int) -> TableColumns:
        hp = self.hparams
        columns = self._columns()
        arrow = source.read(group, columns)
        text = [hp.target, *self._string_columns()]
        table = table_columns(arrow, columns, text)
        check_finite(table, self.feature_columns, f"{source.key}={source.file(group)}")
        return table

    def _splits_of(self, source: RowGroups | NpyRows, group: int) -> np.ndarray:
        """Each row's split in data.path's row group `group` (held_out)."""
        hp = self.hparams
        positions = source.starts[group] + np.arange(source.rows[group])
        test = hp.test_fraction if hp.test_path is None else 0.0
        val = hp.val_fraction if hp.val_path is None else 0.0
        return held_out(positions, self.seed, test, val)

    def _statistics_pass(self) -> None:
        """Labels, preprocessing state and each row group's training rows, in one pass."""
        hp = self.hparams
        source = self.sources["path"]
        learn = not self.state
        kinds: dict[str, str] = {}
        by_value: dict[Any, TrainingStatistics] = {}
        counts: list[dict[Any, tuple[int, float]]] = []  # (rows, total weight) per value
        values: set = set()
        for group in range(len(source)):
            table = self._table(source, group)
            if not kinds:
                kinds = encoded_kinds(table, self.feature_columns, hp.path, self.configured)
            file = source.file(group)
            rows = self._complete_rows(
                table, [*self.feature_columns, hp.target], file, "data.path", "data."
            )
            target = target_column(table, hp.target)
            encoded = target.combine_chunks().dictionary_encode()
            codes = pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64)
            dictionary = encoded.dictionary.to_pylist()
            values.update(v for v in dictionary if v == v)  # NaN is missing
            rows = rows[self._splits_of(source, group)[rows] == TRAIN]
            weight = self._weights(table, file)
            found: dict[Any, tuple[int, float]] = {}
            for code in np.unique(codes[rows]).tolist():
                if code < 0:
                    continue
                value, chosen = dictionary[code], rows[codes[rows] == code]
                chosen_weight = None if weight is None else weight[chosen]
                total = len(chosen) if weight is None else float(chosen_weight.sum(dtype=float))
                found[value] = (len(chosen), total)
                if learn:
                    statistics = by_value.setdefault(value, TrainingStatistics(kinds))
                    statistics.add(table, chosen, chosen_weight)
            counts.append(found)
        if learn:
            groups, rule = label_groups(
                sorted(values), hp.positive, hp.negative, hp.classes, hp.target
            )
            self.state = {"target": hp.target, "label_groups": groups}
            self._log_labels(rule)
            statistics = TrainingStatistics(kinds)
            for value in (v for group in groups for v in group if v in by_value):
                statistics.merge(by_value[value])
            self.state |= statistics.state(hp.path, hp.normalize) | self.configured.state()
            if {"hashed", "text"} & set(kinds.values()):
                check_hashed(self.configured.hash_bits, 1 if len(groups) == 2 else len(groups))
            self._build_preprocessing()
        label_of = {v: k for k, group in enumerate(self._state("label_groups")) for v in group}
        self.group_rows = np.array(
            [sum(n for v, (n, _) in found.items() if v in label_of) for found in counts], np.int64
        )
        # Training rows per label: their total sample weight, with data.weight.
        self.class_counts = [0] * self.num_classes
        for found in counts:
            for value, (_, total) in found.items():
                if value in label_of:
                    self.class_counts[label_of[value]] += total
        if hp.get("weight") is not None and not any(self.class_counts):
            raise self._no_weight()
        log_counts("train", self.class_counts, self.label_names)

    def _held_out(self, key: str, split: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """The held-out rows of one split: all usable rows of data.<key>, else data.path's rows
        that the hash holds out for it; raw features, labels and (data.weight) sample weights,
        in memory."""
        source = self.sources.get(key) or self.sources["path"]
        own = key in self.sources
        raws, labels, weights = [], [], []
        for group in range(len(source)):
            table = self._table(source, group)
            rows, y = self._usable_rows(
                table, self.feature_columns, source.file(group), source.key, "data."
            )
            if not own:
                rows = rows[self._splits_of(source, group)[rows] == split]
            raw = self._raw(table, {"held": rows})["held"]
            raws.append(raw.contiguous() if isinstance(raw, Tensor) else raw)
            labels.append(torch.from_numpy(y[rows]))
            if (weight := self._weights(table, source.file(group))) is not None:
                weights.append(torch.from_numpy(weight[rows]))
        return cat(raws), torch.cat(labels), torch.cat(weights) if weights else None

    @rank_zero_only
    def _log_memory(self) -> None:
        dense = self.in_features - self._hashed_width()
        batch = self.hparams.batch_size
        buffer = max(batch, self.hparams.shuffle_rows // batch * batch)
        held = [x for x, _ in self.splits.values()]
        size = sum(x.nbytes for x in held)
        row_bytes, shown = 4 * dense, f"{dense} features"
        if wide := [x for x in held if isinstance(x, WideFeatures)]:
            # A row's bytes as the held-out rows hold them: the same table's rows, joined as a
            # shuffle buffer joins row groups (cat), so in the buffer's layout.
            rows = max(sum(len(x) for x in wide), 1)
            entries = sum(len(x.indices) for x in wide) / rows
            row_bytes = sum(x.nbytes for x in wide) / rows
            shown = f"{dense} dense features and ~{entries:.1f} hashed entries"
        log.info(
            f"data.stream: {len(self.group_rows)} row groups, {int(self.group_rows.sum())} "
            f"training rows; the stream holds a shuffle buffer of {buffer} rows x {shown} "
            f"({buffer * row_bytes / 2**20:.1f} MiB) and one row group; the held-out splits "
            f"take {size / 2**20:.1f} MiB"
        )
