"""The user's own table (CSV, TSV, Parquet or .npz) as a logistic-regression problem.

Files are read by `table_file` (pyarrow, piece by piece): numeric columns straight into
float32, the others (strings, the target) as Arrow arrays.

Raw features and what the model takes
-------------------------------------
A split's *raw* features are a float32 tensor with one column per table feature column, in
`columns` order: a numeric column holds its value as is, a categorical (string) column holds the
index of its value in that column's training categories (`input_card()` lists them), -1 for a
value never seen in training, NaN where the value is missing. `TablePreprocessing` (the module
that `preprocess` runs and `export_preprocessing` returns, so both share one code path) turns
that into the model's features, laid out as scikit-learn's ColumnTransformer of a StandardScaler
and a OneHotEncoder(handle_unknown="ignore") would: the numeric columns standardised with the
training split's mean and population std (a constant column keeps scale 1), then the one-hot
columns ("color=red"), categories sorted, an unseen index giving all zeros. With
`missing=mean`, NaN becomes the training mean (numeric) or most frequent category.
Raw values travel as float32: about 7 significant digits (shift e.g. Unix timestamps first).
The statistics are those of these float32 values, the values the model standardises.

Labels
------
Label i is the set of target values in `label_groups[i]`. With neither `positive` nor `classes`,
a target with two distinct values is binary and the larger of the two in sorted order is
label 1 (what scikit-learn's LabelEncoder makes 1: 0/1 -> 1, false/true -> true, "no"/"yes"
-> "yes"); with more than two (up to MAX_AUTO_CLASSES) it is a softmax over all of them in
sorted order. The run logs which value is label 1.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn

from lrexp.data.batches import SplitLoaders
from lrexp.data.labels import log_balance, stratified_split
from lrexp.data.table_file import TableColumns, TableFile, is_numeric, missing_mask
from lrexp.errors import LrexpError

log = logging.getLogger(__name__)

MISSING_POLICIES = ("error", "mean", "drop")
ONEHOT_DROPS = (None, "first")  # scikit-learn's OneHotEncoder(drop=...)
# More distinct target values than this without data.classes looks like a continuous target.
MAX_AUTO_CLASSES = 100
PREPROCESS_ROWS = 2**16
Value = bool | int | float | str
Spec = Sequence[Value] | Value | None


# --- columns ----------------------------------------------------------------------------------


def column_kind(kind: pa.DataType, name: str, path: str) -> str:
    """'numeric' (numbers, booleans) or 'categorical' (strings); anything else is an error."""
    if is_numeric(kind):
        return "numeric"
    value_type = kind.value_type if pa.types.is_dictionary(kind) else kind
    if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
        return "categorical"
    if pa.types.is_null(value_type):
        raise LrexpError(
            f"{path}: column {name!r} has no values at all; leave it out with data.features"
        )
    raise LrexpError(
        f"{path}: column {name!r} of type {kind} cannot be encoded (numbers, booleans and "
        "strings can); leave it out with data.features or convert it"
    )


def as_strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(pa.string())


def dictionary_indices(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Each value's index in the column's distinct values (-1 when missing), and those values."""
    encoded = as_strings(column).combine_chunks().dictionary_encode()
    indices = pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64)
    return indices, encoded.dictionary.to_pylist()


def category_codes(column: pa.ChunkedArray, categories: list[str]) -> np.ndarray:
    """float32 index of each value in `categories`: -1 when unseen, NaN when missing."""
    index = pc.index_in(as_strings(column), value_set=pa.array(categories, pa.string()))
    codes = pc.fill_null(index, -1).to_numpy().astype(np.float32)
    codes[missing_mask(column)] = np.nan
    return codes


# --- labels -----------------------------------------------------------------------------------


def _items(spec: Spec) -> list[Value]:
    return [spec] if isinstance(spec, bool | int | float | str) else list(spec)


def _resolve(spec: Spec, values: list[Value], key: str, target: str) -> list[Value]:
    """Target values named by `spec` (given as the values or their text: 1, '1', 'yes')."""
    lookup: dict[Any, Value] = {}
    for value in values:
        lookup.setdefault(value, value)
        lookup.setdefault(str(value), value)
    items = _items(spec)
    if not items:
        raise LrexpError(f"{key} is empty: list at least one value of column {target!r}")
    found = []
    for item in items:
        value = lookup.get(item, lookup.get(str(item)))
        if value is None:
            shown = ", ".join(map(str, values[:20])) + (", ..." if len(values) > 20 else "")
            raise LrexpError(
                f"{key} holds {item!r}, not a value of column {target!r}; its values: {shown}"
            )
        if value not in found:
            found.append(value)
    return found


def label_groups(
    values: list[Value], positive: Spec, negative: Spec, classes: Spec, target: str
) -> tuple[list[list[Value]], str]:
    """The target values of each label, and the rule that chose them (for the log)."""
    if classes is not None and positive is not None:
        raise LrexpError(
            "data.classes and data.positive are both set: data.classes=all or a list for several "
            "classes, data.positive (and data.negative) for two; set the other to null"
        )
    if positive is None and negative is not None:
        raise LrexpError("data.negative is set without data.positive: set data.positive too")
    if positive is not None:
        pos = _resolve(positive, values, "data.positive", target)
        if negative is None:
            neg = [v for v in values if v not in pos]
            if not neg:
                raise LrexpError(
                    f"data.positive lists every value of column {target!r}: leave some for label 0"
                )
        else:
            neg = _resolve(negative, values, "data.negative", target)
            if shared := [v for v in pos if v in neg]:
                raise LrexpError(
                    f"values {shared} are in both data.positive and data.negative: "
                    "a value can have one label only"
                )
        return [neg, pos], "data.positive"
    if len(values) < 2:
        raise LrexpError(
            f"column {target!r} has a single value ({values[0] if values else 'none'}): "
            "logistic regression needs at least two; check data.target"
        )
    if classes is None:
        if len(values) == 2:
            return [[v] for v in values], "the larger of the two sorted values is label 1"
        if len(values) > MAX_AUTO_CLASSES:
            raise LrexpError(
                f"column {target!r} has {len(values)} distinct values (a continuous target?): "
                "choose labels with data.positive=[...] or data.classes=[...]"
            )
        return [[v] for v in values], "every value its own class (sorted)"
    if classes == "all":
        return [[v] for v in values], "data.classes=all (sorted)"
    chosen = _resolve(classes, values, "data.classes", target)
    if len(chosen) < 2:
        raise LrexpError(f"data.classes={chosen}: list at least two values of {target!r}")
    return [[v] for v in chosen], "data.classes, in the order given"


def target_column(table: TableColumns, name: str) -> pa.ChunkedArray:
    column = table.arrow[name]
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column


def encode_labels(column: pa.ChunkedArray, groups: list[list[Value]]) -> np.ndarray:
    """int64 label of each row; -1 for a value in no group (or missing)."""
    labels = np.full(len(column), -1, dtype=np.int64)
    for index, group in enumerate(groups):
        hit = pc.is_in(column, value_set=pa.array(group, column.type))
        labels[pc.fill_null(hit, False).to_numpy(zero_copy_only=False)] = index
    return labels


def distinct_values(column: pa.ChunkedArray) -> list[Value]:
    values = pc.unique(column.drop_null())
    if pa.types.is_floating(column.type):
        values = values.filter(pc.invert(pc.is_nan(values)))
    return sorted(values.to_pylist())


# --- preprocessing ----------------------------------------------------------------------------


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
    ) -> None:
        super().__init__()
        self.n_numeric = n_numeric
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)
        self.register_buffer("onehot_source", onehot_source)
        self.register_buffer("onehot_code", onehot_code)
        self.impute = fill is not None
        self.register_buffer("fill", fill if fill is not None else torch.zeros(0))

    def forward(self, raw: Tensor) -> Tensor:
        if self.impute:
            raw = torch.where(torch.isnan(raw), self.fill, raw)
        numeric = (raw[:, : self.n_numeric] - self.mean) / self.scale
        onehot = (raw.index_select(1, self.onehot_source) == self.onehot_code).to(raw.dtype)
        return torch.cat([numeric, onehot], 1)


class TableDataModule(SplitLoaders, L.LightningDataModule):
    """A table file → seeded stratified train/val/test splits of standardised, one-hot features.

    All preprocessing state (columns, their kinds, categories, statistics, imputation values and
    the target values of each label) is learned on the training split only and travels in the
    checkpoint (state_dict), so eval and predict never recompute it.
    """

    def __init__(
        self,
        path: str,
        target: str,
        features: Sequence[str] | None = None,
        test_path: str | None = None,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        batch_size: int = 64,
        normalize: bool = True,
        missing: str = "error",
        positive: Spec = None,
        negative: Spec = None,
        classes: Spec = None,
        delimiter: str | None = None,
        onehot_drop: str | None = None,
        seed: int | None = 0,
        minibatches_per_step: int = 64,
        batches_per_fetch: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        if missing not in MISSING_POLICIES:
            raise LrexpError(f"data.missing={missing!r}: use one of {', '.join(MISSING_POLICIES)}")
        if onehot_drop not in ONEHOT_DROPS:
            raise LrexpError(
                f"data.onehot_drop={onehot_drop!r}: use null (every category) or first (the "
                "first category of each column is the reference, without a column)"
            )
        if features is not None and not list(features):
            raise LrexpError("data.features is empty: list feature columns, or null for all")
        for key, fraction in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
            if not 0 <= fraction < 1:
                raise LrexpError(f"data.{key}={fraction}: use a share in [0, 1)")
        # batches_per_fetch is the earlier name of minibatches_per_step.
        self.minibatches_per_step = batches_per_fetch or minibatches_per_step
        # seed=null: a fresh random split and order for this run.
        self.seed = seed if seed is not None else int(torch.randint(2**31, ()))
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        # Each split's row numbers in its file (data rows from 0), in the splits' order.
        self.split_rows: dict[str, np.ndarray] = {}
        self.state: dict[str, Any] = {}
        self.preprocessing: TablePreprocessing | None = None
        self.class_counts: list[int] = []

    # --- what the model and the entry points read ----------------------------------------------

    @property
    def columns(self) -> list[str]:
        return self._state("columns")

    @property
    def feature_names(self) -> list[str]:
        """The model's input features: numeric columns, then one "column=category" each (with
        onehot_drop=first, for every category but the first)."""
        kinds, categories = self._state("kinds"), self._state("categories")
        numeric = [c for c, k in zip(self.columns, kinds, strict=True) if k == "numeric"]
        skip = self._dropped()
        onehot = [f"{c}={v}" for c in self.columns if c in categories for v in categories[c][skip:]]
        return numeric + onehot

    @property
    def in_features(self) -> int:
        return len(self.feature_names)

    @property
    def num_classes(self) -> int:
        return len(self._state("label_groups"))

    @property
    def label_names(self) -> list[str]:
        return [", ".join(map(str, group)) for group in self._state("label_groups")]

    def _state(self, key: str) -> Any:
        if not self.state:
            raise RuntimeError("TableDataModule: call setup('fit') or load_state_dict() first")
        return self.state[key]

    # --- Lightning hooks -----------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Fail early, before any trainer starts, when a file is missing."""
        for key in ("path", "test_path"):
            if self.hparams[key] is not None and not Path(self.hparams[key]).expanduser().is_file():
                raise LrexpError(f"data.{key}={self.hparams[key]}: no such file")

    def setup(self, stage: str) -> None:
        if "train" in self.splits or (stage == "test" and "test" in self.splits):
            return
        hp = self.hparams
        # Testing a checkpoint on a separate test file needs nothing from the training file.
        if not (stage == "test" and self.state and hp.test_path is not None):
            self._setup_from_path(stage)
        if hp.test_path is not None and stage in ("fit", "test"):
            table, columns = self._read(hp.test_path, "data.test_path")
            rows, labels = self._usable_rows(table, columns, hp.test_path, "data.test_path")
            self._add_splits(table, labels, {"test": rows})
        if stage != "test" and (empty := [n for n, c in enumerate(self.class_counts) if c == 0]):
            names = [self.label_names[n] for n in empty]
            raise LrexpError(
                f"data.path={hp.path}: no training rows for label(s) {names}; "
                "check data.target, data.positive/negative/classes and data.missing"
            )

    def _setup_from_path(self, stage: str) -> None:
        """Labels, the seeded split and (unless loaded) the preprocessing state from data.path."""
        hp = self.hparams
        table, columns = self._read(hp.path, "data.path")
        learn = not self.state
        if learn:
            values = distinct_values(target_column(table, hp.target))
            groups, rule = label_groups(values, hp.positive, hp.negative, hp.classes, hp.target)
            self.state = {"target": hp.target, "label_groups": groups}
            self._log_labels(rule)
        rows, labels = self._usable_rows(table, columns, hp.path, "data.path")
        # The same seed gives the same split in training and in eval (which re-reads the file).
        if hp.test_path is None:
            kept, held = stratified_split(
                torch.from_numpy(labels[rows]), hp.test_fraction, self.seed
            )
            rows, test = rows[kept.numpy()], rows[held.numpy()]
        kept, held = stratified_split(
            torch.from_numpy(labels[rows]), hp.val_fraction, self.seed + 1
        )
        train, val = rows[kept.numpy()], rows[held.numpy()]
        if learn:
            self._learn(table, columns, train)
        parts = {"train": train, "val": val} if stage != "test" else {}
        if hp.test_path is None and stage in ("fit", "test"):
            parts["test"] = test
        self._add_splits(table, labels, parts)

    def state_dict(self) -> dict[str, Any]:
        """Plain Python values and tensors: what torch.load(weights_only=True) accepts."""
        return dict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.state = dict(state)
            self._build_preprocessing()

    # --- features ------------------------------------------------------------------------------

    def preprocess(self, raw: Tensor) -> Tensor:
        """Raw table features (see the module docstring) → float32 model features.

        In slices of PREPROCESS_ROWS rows written into the result, so that the module's
        intermediates (standardised columns, one-hot columns) never exist for a whole split.
        """
        self._state("columns")
        module = self.preprocessing.to(raw.device)
        features = raw.new_empty((len(raw), self.in_features))
        with torch.no_grad():
            for start in range(0, len(raw), PREPROCESS_ROWS):
                features[start : start + PREPROCESS_ROWS] = module(
                    raw[start : start + PREPROCESS_ROWS]
                )
        return features

    def export_preprocessing(self) -> nn.Module:
        """Raw features (float32, batch first, `input_card()['columns']` order) → features."""
        self._state("columns")
        return TablePreprocessing(*self._preprocessing_args()).eval()

    def input_card(self) -> dict[str, Any]:
        """What the exported model takes: one float32 column per table column, in order."""
        mean, scale = self.state["mean"].tolist(), self.state["scale"].tolist()
        stats = dict(zip(self.state["numeric"], zip(mean, scale, strict=True), strict=True))
        columns = []
        for name, kind in zip(self.columns, self._state("kinds"), strict=True):
            if kind == "numeric":
                mean, scale = stats[name]
                columns.append({"name": name, "kind": kind, "mean": mean, "scale": scale})
            else:
                columns.append(
                    {
                        "name": name,
                        "kind": kind,
                        "categories": list(self.state["categories"][name]),
                        "encoding": "the value's index in categories, as a float; any other "
                        "index (e.g. -1 for a value not seen in training) gives all zeros",
                    }
                )
        return {
            "kind": "table",
            "input": "raw table features",
            "dtype": "float32",
            "shape": ["batch", len(self.columns)],
            "preprocessing": [
                "numeric columns: (x - mean) / scale (training split statistics, in the graph)",
                "categorical columns: one-hot of the category's index (in the graph)"
                + (", the first category none" if self._dropped() else ""),
            ],
            "columns": columns,
            "missing": "NaN: the training mean or most frequent category"
            if self.hparams.missing == "mean"
            else f"not accepted (the model was trained with data.missing={self.hparams.missing})",
            "features": self.feature_names,
            "labels": self.label_names,
        }

    def encode_inputs(self, inputs: str | Sequence[str]) -> tuple[list[str], Tensor]:
        """Rows of a .csv/.tsv/.parquet/.npz file for `predict` → (row numbers, features).

        Row numbers count data rows from 0; with data.missing=drop, incomplete rows are left out.
        """
        paths = [inputs] if isinstance(inputs, str | Path) else list(inputs)
        if len(paths) != 1:
            raise LrexpError(f"inputs={inputs!r}: give one table file, e.g. inputs=new_rows.csv")
        path = str(paths[0])
        file = TableFile(path, "inputs", self.hparams.delimiter)
        if lacking := [c for c in self.columns if c not in file.names]:
            raise LrexpError(
                f"inputs={path}: lacks feature columns {lacking}; the model needs {self.columns}"
            )
        table = file.read(self.columns, text=self.state["categories"])
        rows = self._complete_rows(table, self.columns, path, "inputs")
        raw = self._raw(table, {"predict": rows})["predict"]
        return [str(r) for r in rows], self.preprocess(raw)

    # --- internals -----------------------------------------------------------------------------

    def _read(self, path: str, key: str) -> tuple[TableColumns, list[str]]:
        """The file's target and feature columns, and the feature columns' names."""
        file = TableFile(path, key, self.hparams.delimiter)
        columns = self._check_columns(file.names, path)
        # Categorical columns are matched to their categories as text, whatever their type here.
        text = [self.hparams.target, *self.state.get("categories", {})]
        table = file.read([*columns, self.hparams.target], text)
        for name in columns:
            column_kind(table.types[name], name, path)
        return table, columns

    def _check_columns(self, names: list[str], path: str) -> list[str]:
        """The feature columns (the checkpoint's, else data.features or every other column)."""
        target = self.hparams.target
        if target not in names:
            raise LrexpError(f"data.target={target!r} is not a column of {path}; columns: {names}")
        if self.state:
            wanted = self.columns
        elif self.hparams.features is None:
            wanted = [n for n in names if n != target]
        else:
            wanted = list(self.hparams.features)
            if target in wanted:
                raise LrexpError(f"data.features lists the target {target!r}: leave it out")
        if lacking := [c for c in wanted if c not in names]:
            raise LrexpError(f"data.features: {path} has no column {lacking}; columns: {names}")
        if not wanted:
            raise LrexpError(f"data.path={path}: no column besides the target {target!r}")
        return wanted

    def _usable_rows(
        self, table: TableColumns, columns: list[str], path: str, key: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows with a label and (unless imputed) every feature, and the labels of all rows."""
        target = target_column(table, self.hparams.target)
        try:
            labels = encode_labels(target, self.state["label_groups"])
        except pa.ArrowException:
            raise LrexpError(
                f"{key}={path}: column {self.hparams.target!r} is of type {target.type}, "
                "unlike the training file's target"
            ) from None
        rows = self._complete_rows(table, [*columns, self.hparams.target], path, key)
        unlabelled = rows[labels[rows] < 0]
        chosen = self.hparams.positive is not None or self.hparams.classes not in (None, "all")
        if len(unlabelled) and not chosen:
            # Every training value has a label; another one can only come from a test file.
            unknown = sorted({str(v) for v in target.take(pa.array(unlabelled)).to_pylist()})
            raise LrexpError(
                f"{key}={path}: column {self.hparams.target!r} holds values the training data "
                f"lacks: {unknown[:10]}; give a file with the training file's target values"
            )
        return rows[labels[rows] >= 0], labels

    def _complete_rows(
        self, table: TableColumns, columns: list[str], path: str, key: str
    ) -> np.ndarray:
        """Row numbers to use under data.missing (error: all, or an error naming the columns)."""
        target, policy = self.hparams.target, self.hparams.missing
        masks = {c: table.missing(c) for c in columns}
        counts = {c: int(m.sum()) for c, m in masks.items() if m.any()}
        if counts and policy == "error":
            listed = ", ".join(f"{c!r} ({n})" for c, n in counts.items())
            raise LrexpError(
                f"{key}={path}: missing values in columns {listed}; "
                "set data.missing=mean or data.missing=drop"
            )
        if target in counts and policy == "mean":
            raise LrexpError(
                f"{key}={path}: missing values in the target {target!r} ({counts[target]}); "
                "a label cannot be imputed: set data.missing=drop"
            )
        keep = np.ones(table.num_rows, dtype=bool)
        if policy == "drop" and counts:
            for mask in masks.values():
                keep &= ~mask
            log.warning(f"{key}={path}: {int((~keep).sum())} rows with missing values left out")
        return np.flatnonzero(keep)

    def _learn(self, table: TableColumns, columns: list[str], train: np.ndarray) -> None:
        """Columns, kinds, categories, statistics and imputation values from training rows.

        Numeric columns come first in the raw features (and so in the model's), then the
        categorical ones, each group in the table's order.
        """
        kinds = {c: column_kind(table.types[c], c, self.hparams.path) for c in columns}
        numeric = [c for c in columns if kinds[c] == "numeric"]
        ordered = numeric + [c for c in columns if kinds[c] == "categorical"]
        categories, mean, scale, fill = {}, [], [], []
        for name in ordered:
            if kinds[name] == "categorical":
                indices, dictionary = dictionary_indices(table.arrow[name])
                present = indices[train]
                present = present[present >= 0]
                if not len(present):
                    raise LrexpError(
                        f"data.path={self.hparams.path}: column {name!r} has no value in the "
                        "training split; leave it out with data.features"
                    )
                seen = np.unique(present)
                order = np.argsort(np.array([dictionary[i] for i in seen]))
                categories[name] = [dictionary[i] for i in seen[order]]
                # The most frequent category; ties go to the first in sorted order, as in
                # scikit-learn's SimpleImputer(strategy="most_frequent").
                counts = np.bincount(present, minlength=len(dictionary))[seen[order]]
                fill.append(float(counts.argmax()))
                continue
            values = table.floats[name][train].astype(np.float64)
            present = values[~np.isnan(values)]
            if len(present) == 0:
                raise LrexpError(
                    f"data.path={self.hparams.path}: column {name!r} has no value in the "
                    "training split; leave it out with data.features"
                )
            m = float(present.mean())
            # Population std over the imputed column (imputed values add 0), as a pipeline of
            # SimpleImputer(mean) and StandardScaler computes it; a constant column keeps scale 1.
            s = float(np.sqrt(((present - m) ** 2).sum() / len(values)))
            fill.append(m)
            if not self.hparams.normalize:
                m, s = 0.0, 1.0
            mean.append(m)
            scale.append(s if s > 1e-12 * max(1.0, abs(m)) else 1.0)
        self.state |= {
            "columns": ordered,
            "kinds": [kinds[c] for c in ordered],
            "numeric": numeric,
            "categories": categories,
            "mean": torch.tensor(mean, dtype=torch.float64),
            "scale": torch.tensor(scale, dtype=torch.float64),
            "fill": torch.tensor(fill, dtype=torch.float64),
        }
        self._build_preprocessing()

    def _preprocessing_args(self) -> tuple[Any, ...]:
        columns, categories, skip = self.columns, self.state["categories"], self._dropped()
        source = [j for j, c in enumerate(columns) if c in categories for _ in categories[c][skip:]]
        code = [
            float(k) for c in columns if c in categories for k in range(skip, len(categories[c]))
        ]
        fill = self.state["fill"].float() if self.hparams.missing == "mean" else None
        return (
            len(self.state["numeric"]),
            self.state["mean"].float(),
            self.state["scale"].float(),
            torch.tensor(source, dtype=torch.int64),
            torch.tensor(code, dtype=torch.float32),
            fill,
        )

    def _dropped(self) -> int:
        """Categories without a column at the start of each column's sorted categories."""
        return 1 if self.hparams.get("onehot_drop") == "first" else 0

    def _build_preprocessing(self) -> None:
        self.preprocessing = TablePreprocessing(*self._preprocessing_args())

    def _raw(self, table: TableColumns, parts: dict[str, np.ndarray]) -> dict[str, Tensor]:
        """Each part's raw features (module docstring), float32 (len(rows), columns).

        Built column-major (each column written contiguously, each file column converted once)
        and returned as row views of its transpose; preprocess() gives row-major features.
        """
        raw = np.empty((len(self.columns), sum(map(len, parts.values()))), dtype=np.float32)
        bounds = np.cumsum([0, *map(len, parts.values())])
        for j, name in enumerate(self.columns):
            categories = self.state["categories"].get(name)
            if categories is not None:
                values = category_codes(table.arrow[name], categories)
            else:
                try:
                    values = table.numbers(name)
                except pa.ArrowException:
                    raise LrexpError(
                        f"column {name!r} holds {table.types[name]} values; the model was "
                        "trained on numbers there"
                    ) from None
            for start, (split, rows) in zip(bounds[:-1], parts.items(), strict=True):
                part = raw[j, start : start + len(rows)]
                part[:] = values[rows]
                if categories is not None and (unseen := int((part == -1).sum())):
                    log.warning(
                        f"{split}: column {name!r}: {unseen} rows hold a category not seen "
                        "in training; they get all-zero one-hot features"
                    )
        transposed = torch.from_numpy(raw).t()
        views = {
            split: transposed[start : start + len(rows)]
            for start, (split, rows) in zip(bounds[:-1], parts.items(), strict=True)
        }
        return views

    def _add_splits(
        self, table: TableColumns, labels: np.ndarray, parts: dict[str, np.ndarray]
    ) -> None:
        for split, raw in self._raw(table, parts).items():
            y = torch.from_numpy(labels[parts[split]])
            self.splits[split] = (raw, y)
            self.split_rows[split] = parts[split]
            if split == "train":
                self.class_counts = np.bincount(y.numpy(), minlength=self.num_classes).tolist()
            log_balance(split, y, self.label_names)

    @rank_zero_only
    def _log_labels(self, rule: str) -> None:
        names = self.label_names
        if len(names) == 2:
            log.info(
                f"data.target={self.hparams.target!r}: label 1 = {names[1]}, "
                f"label 0 = {names[0]} ({rule})"
            )
        else:
            log.info(f"data.target={self.hparams.target!r}: classes {names} ({rule})")
