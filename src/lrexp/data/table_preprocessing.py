"""What a table's raw features become for the model, and the training statistics that say how.

A split's *raw* features are a float32 tensor with one column per table feature column, in
`columns` order: a numeric column holds its value as is, a categorical (string) column holds the
index of its value in that column's training categories, -1 for a value never seen in training,
NaN where the value is missing. `TablePreprocessing` turns that into the model's features, laid
out as scikit-learn's ColumnTransformer of a StandardScaler and a
OneHotEncoder(handle_unknown="ignore") would: the numeric columns standardised with the training
split's mean and population std (a constant column keeps scale 1), then the one-hot columns
("color=red"), categories sorted, an unseen index giving all zeros. With `missing=mean`, NaN
becomes the training mean (numeric) or most frequent category.
Raw values travel as float32: about 7 significant digits (shift e.g. Unix timestamps first).
The statistics are those of these float32 values, the values the model standardises.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lrexp.data.table_columns import column_kind, dictionary_indices, distinct_count
from lrexp.data.table_file import TableColumns
from lrexp.data.table_hashing import Encoding, buckets, value_counts
from lrexp.data.table_memory import check_hashed, check_onehot
from lrexp.data.wide_features import WideFeatures
from lrexp.errors import LrexpError


class TablePreprocessing(nn.Module):
    """Raw table features (float32: the numeric columns, then each categorical column's index)
    → the model's features (the numeric columns standardised, then the one-hot columns).

    Torch-only, so it exports to ONNX: imputation (missing=mean) is a `where` on NaN, scaling a
    broadcast, one-hot an equality of each categorical column's index with 0..k-1.
    """

    def __init__(
        self,
        n_numeric: int,
        mean: Tensor,
        scale: Tensor,
        onehot_source: Tensor,
        onehot_code: Tensor,
        fill: Tensor | None,
        skip: int = 0,
    ) -> None:
        super().__init__()
        self.n_numeric, self.skip = n_numeric, skip
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)
        self.register_buffer("onehot_source", onehot_source)
        self.register_buffer("onehot_code", onehot_code)
        self.impute = fill is not None
        self.register_buffer("fill", fill if fill is not None else torch.zeros(0))

    @classmethod
    def from_state(cls, state: dict[str, Any], impute: bool, skip: int = 0) -> TablePreprocessing:
        """The module for a learned state (`learn_state`); `impute`: data.missing=mean; `skip`:
        categories without a column at the start of each column's sorted ones (onehot_drop)."""
        columns, categories = state["columns"], state["categories"]
        source = [j for j, c in enumerate(columns) if c in categories for _ in categories[c][skip:]]
        code = [
            float(k) for c in columns if c in categories for k in range(skip, len(categories[c]))
        ]
        return cls(
            len(state["numeric"]),
            state["mean"].float(),
            state["scale"].float(),
            torch.tensor(source, dtype=torch.int64),
            torch.tensor(code, dtype=torch.float32),
            state["fill"].float() if impute else None,
            skip,
        )

    def forward(self, raw: Tensor) -> Tensor:
        numeric, raw = self.numeric(raw)
        onehot = (raw.index_select(1, self.onehot_source) == self.onehot_code).to(raw.dtype)
        return torch.cat([numeric, onehot], 1)

    def numeric(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        """The standardised numeric columns, and the raw features imputed."""
        if self.impute:
            raw = torch.where(torch.isnan(raw), self.fill, raw)
        return (raw[:, : self.n_numeric] - self.mean) / self.scale, raw

    @property
    def onehot_width(self) -> int:
        return len(self.onehot_code)

    def sparse(self, raw: Tensor) -> WideFeatures:
        """The same features with the one-hot columns sparse (lrexp.data.wide_features): one
        entry per categorical column and row, the category's column with the value 1, or the
        value 0 where no column is hot (a category unseen in training, or the dropped first)."""
        numeric, raw = self.numeric(raw)
        codes = raw[:, self.n_numeric :]
        # The one-hot columns of each categorical column: its first one, and how many.
        first = torch.searchsorted(
            self.onehot_source, torch.arange(self.n_numeric, raw.shape[1], device=raw.device)
        )
        count = torch.bincount(self.onehot_source - self.n_numeric, minlength=codes.shape[1])
        offset = codes - self.skip
        hot = (offset >= 0) & (offset < count) & ~torch.isnan(offset)
        indices = torch.where(hot, offset.nan_to_num(0).long() + first, 0)
        # Row-major, as the dense path's features: `raw` may be a column-major view (the
        # table's), and minibatches gather rows (a column-major gather costs several times).
        dense = numeric.contiguous()
        return WideFeatures.fixed(dense, indices, hot.to(numeric.dtype), self.onehot_width)


def learn_state(
    table: TableColumns,
    columns: list[str],
    train: np.ndarray,
    path: str,
    normalize: bool,
    encoding: Encoding,
    outputs: int = 1,
    sample_weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Columns, kinds, categories, statistics and imputation values from training rows.

    Numeric columns come first in the raw features (and so in the model's), then the
    categorical ones, each group in the table's order; hashed and text columns (not among the
    raw floats: lrexp.data.table_hashing) last. `outputs`: the model's (the memory guard's
    weights per feature). With `sample_weight` (one per training row) each row counts its
    weight's times, as in scikit-learn's StandardScaler.fit(X, sample_weight=...): weighted
    means, variances and category counts; categories only from rows of weight > 0 (a weight of
    0 leaves the row out).
    """
    kinds = encoded_kinds(table, columns, path, encoding)
    onehot = [c for c in columns if kinds[c] == "categorical"]
    check_onehot({c: distinct_count(table.arrow[c].take(train)) for c in onehot}, outputs, path)
    hashed = [c for c in columns if kinds[c] == "hashed"]
    if hashed or encoding.text:
        check_hashed(encoding.hash_bits, outputs)
    statistics = TrainingStatistics(kinds)
    statistics.add(table, train, sample_weight)
    state = statistics.state(path, normalize) | encoding.state()
    if hashed:
        state["hash_fill"] = hash_fill(table, hashed, train, path, encoding.hash_bits)
    return state


def encoded_kinds(
    table: TableColumns, columns: list[str], path: str, encoding: Encoding
) -> dict[str, str]:
    """Each column's kind as the encoding makes it: numeric, categorical (one-hot), hashed or
    text (lrexp.data.table_hashing)."""
    kinds = {c: column_kind(table.types[c], c, path) for c in columns}
    for name in encoding.text:
        if kinds[name] == "numeric":
            raise LrexpError(
                f"data.text=[{name}]: column {name!r} of {path} holds numbers, not text; leave "
                "it out of data.text"
            )
        kinds[name] = "text"
    if encoding.categorical == "hash":
        kinds = {c: "hashed" if k == "categorical" else k for c, k in kinds.items()}
    return kinds


def hash_fill(
    table: TableColumns, hashed: list[str], train: np.ndarray, path: str, bits: int
) -> Tensor:
    """Each hashed column's most frequent training value's column (data.missing=mean); ties go
    to the first in sorted order, as for categories."""
    fill = []
    for name in hashed:
        values, counts = value_counts(table.arrow[name].take(train))
        if not counts.sum():
            raise LrexpError(
                f"data.path={path}: column {name!r} has no value in the "
                "training split; leave it out with data.features"
            )
        top = min(np.flatnonzero(counts == counts.max()), key=values.__getitem__)
        fill.append(int(buckets([f"{name}={values[top]}"], bits)[0]))
    return torch.tensor(fill, dtype=torch.int64)


class TrainingStatistics:
    """What `learn_state` learns, summed piece by piece: training rows added from one table or
    from many (the row groups of a stream), and pieces merged.

    Per numeric column: the rows' total weight, the rows with a value (and weight > 0), their
    weight, weighted mean and weighted sum of squared deviations, merged by Chan et al.'s
    pairwise update (one piece gives exactly the two-pass mean and deviations); per categorical
    column: each value's total weight.
    """

    def __init__(self, kinds: dict[str, str]) -> None:
        self.kinds = kinds
        numeric = [c for c, k in kinds.items() if k == "numeric"]
        self.weight = dict.fromkeys(numeric, 0.0)  # of every row, a value or not
        self.present = dict.fromkeys(numeric, 0)
        self.present_weight = dict.fromkeys(numeric, 0.0)
        self.mean = dict.fromkeys(numeric, 0.0)
        self.deviations = dict.fromkeys(numeric, 0.0)
        # Hashed and text columns keep no list of values (lrexp.data.table_hashing).
        self.counts: dict[str, Counter] = {
            c: Counter() for c, k in kinds.items() if k == "categorical"
        }

    def add(self, table: TableColumns, rows: np.ndarray, weight: np.ndarray | None = None) -> None:
        """The table's rows `rows` (training rows), each of weight `weight` (default 1)."""
        weight = np.ones(len(rows)) if weight is None else weight.astype(np.float64)
        for name, counts in self.counts.items():
            indices, dictionary = dictionary_indices(table.arrow[name])
            present = indices[rows]
            kept = (present >= 0) & (weight > 0)
            found = np.bincount(present[kept], weight[kept], minlength=len(dictionary))
            seen = np.unique(present[kept])
            counts.update({dictionary[i]: float(found[i]) for i in seen})
        for name in self.weight:
            values = table.floats[name][rows].astype(np.float64)
            kept = ~np.isnan(values) & (weight > 0)
            present, present_weight = values[kept], weight[kept]
            piece = TrainingStatistics({})
            piece.weight, piece.present = {name: float(weight.sum())}, {name: len(present)}
            piece.present_weight = {name: float(present_weight.sum())}
            mean = float(np.average(present, weights=present_weight)) if len(present) else 0.0
            piece.mean = {name: mean}
            piece.deviations = {name: float((present_weight * (present - mean) ** 2).sum())}
            self._merge_numeric(piece, name)

    def merge(self, other: TrainingStatistics) -> None:
        for name, counts in self.counts.items():
            counts.update(other.counts[name])
        for name in self.weight:
            self._merge_numeric(other, name)

    def _merge_numeric(self, other: TrainingStatistics, name: str) -> None:
        self.weight[name] += other.weight[name]
        if other.present[name] == 0:
            return
        if self.present[name] == 0:
            self.present[name], self.present_weight[name] = (
                other.present[name],
                other.present_weight[name],
            )
            self.mean[name], self.deviations[name] = other.mean[name], other.deviations[name]
            return
        w_a, w_b = self.present_weight[name], other.present_weight[name]
        w = w_a + w_b
        delta = other.mean[name] - self.mean[name]
        self.mean[name] += delta * w_b / w
        self.deviations[name] += other.deviations[name] + delta * delta * w_a * w_b / w
        self.present[name] += other.present[name]
        self.present_weight[name] = w

    def state(self, path: str, normalize: bool) -> dict[str, Any]:
        """The preprocessing state (`learn_state`'s) of the rows added."""
        kinds = self.kinds
        numeric = [c for c in kinds if kinds[c] == "numeric"]
        ordered = numeric + [
            c for kind in ("categorical", "hashed", "text") for c in kinds if kinds[c] == kind
        ]
        categories, mean, scale, fill = {}, [], [], []
        for name in ordered:
            if kinds[name] in ("hashed", "text"):
                continue
            if name in self.counts:
                counts = self.counts[name]
                if not counts:
                    raise LrexpError(
                        f"data.path={path}: column {name!r} has no value in the "
                        "training split; leave it out with data.features"
                    )
                seen = list(counts)
                order = np.argsort(np.array(seen))
                categories[name] = [seen[i] for i in order]
                # The most frequent category; ties go to the first in sorted order, as in
                # scikit-learn's SimpleImputer(strategy="most_frequent").
                fill.append(float(np.argmax([counts[v] for v in categories[name]])))
                continue
            if self.present[name] == 0:
                raise LrexpError(
                    f"data.path={path}: column {name!r} has no value in the "
                    "training split; leave it out with data.features"
                )
            m = self.mean[name]
            # Population std over the imputed column (imputed values add 0), as a pipeline of
            # SimpleImputer(mean) and StandardScaler computes it; a constant column keeps scale 1.
            s = float(np.sqrt(self.deviations[name] / self.weight[name]))
            fill.append(m)
            if not normalize:
                m, s = 0.0, 1.0
            mean.append(m)
            scale.append(s if s > 1e-12 * max(1.0, abs(m)) else 1.0)
        return {
            "columns": ordered,
            "kinds": [kinds[c] for c in ordered],
            "numeric": numeric,
            "categories": categories,
            "mean": torch.tensor(mean, dtype=torch.float64),
            "scale": torch.tensor(scale, dtype=torch.float64),
            "fill": torch.tensor(fill, dtype=torch.float64),
        }
