"""The user's own table (CSV, TSV, Parquet or .npz) as a logistic-regression problem: the
DataModule that reads the files, splits the rows and keeps the learned state.

Files are read by `table_file` (pyarrow, piece by piece): numeric columns straight into
float32, the others (strings, the target) as Arrow arrays. The target becomes labels by
`table_labels` (the run logs which value is label 1), the feature columns are encoded by
`table_columns` into raw features, and `table_preprocessing` learns the training statistics and
turns raw features into the model's (its docstring describes both layouts); `preprocess` and
`export_preprocessing` share its one code path. What a table adds to a run (coefficients.csv,
the fit's statistics, its figures) is `table_extras`'.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import pyarrow as pa
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn

from lrexp.data.batches import SplitLoaders
from lrexp.data.labels import log_balance, split_label_check, stratified_split
from lrexp.data.table_columns import (
    category_codes,
    check_finite,
    column_kind,
    sample_weight_column,
)
from lrexp.data.table_extras import TableExtras
from lrexp.data.table_file import TableColumns, TableFile
from lrexp.data.table_hashing import (
    Encoding,
    column_name,
    column_values,
    hashed_column,
    text_rows,
    token_counts,
    value_counts,
)
from lrexp.data.table_labels import (
    Spec,
    distinct_values,
    encode_labels,
    label_groups,
    target_column,
)
from lrexp.data.table_preprocessing import TablePreprocessing, learn_state
from lrexp.data.wide_features import Features, WideFeatures
from lrexp.errors import LrexpError

if TYPE_CHECKING:
    from lrexp.data.extras import Fitted

log = logging.getLogger(__name__)

MISSING_POLICIES = ("error", "mean", "drop")
ONEHOT_DROPS = (None, "first")  # scikit-learn's OneHotEncoder(drop=...)
PREPROCESS_ROWS = 2**16


class TableDataModule(TableExtras, SplitLoaders, L.LightningDataModule):
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
        categorical: str = "onehot",
        hash_bits: int = 18,
        text: Sequence[str] | None = None,
        ngram_max: int = 1,
        weight: str | None = None,
        seed: int | None = 0,
        minibatches_per_step: int = 64,
        batches_per_fetch: int | None = None,
    ) -> None:
        super().__init__()
        # Column names are text; Hydra reads data.target=1 or data.features=[0,1] as numbers.
        target = str(target)
        weight = None if weight is None else str(weight)
        if features is not None and not isinstance(features, str):
            features = [str(f) for f in features]
        self.save_hyperparameters(logger=False)
        if missing not in MISSING_POLICIES:
            raise LrexpError(f"data.missing={missing!r}: use one of {', '.join(MISSING_POLICIES)}")
        if onehot_drop not in ONEHOT_DROPS:
            raise LrexpError(
                f"data.onehot_drop={onehot_drop!r}: use null (every category) or first (the "
                "first category of each column is the reference, without a column)"
            )
        self.configured = Encoding.of(categorical, hash_bits, text, ngram_max)
        if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
            raise LrexpError(
                f"data.delimiter={delimiter!r}: give one character, e.g. data.delimiter=';'"
            )
        if features is not None and not list(features):
            raise LrexpError("data.features is empty: list feature columns, or null for all")
        if features is not None and (
            twice := sorted({f for f in features if list(features).count(f) > 1})
        ):
            raise LrexpError(f"data.features lists {twice} more than once: list each column once")
        for key, fraction in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
            if not 0 <= fraction < 1:
                raise LrexpError(f"data.{key}={fraction}: use a share in [0, 1)")
        if test_fraction == 0 and test_path is None:
            raise LrexpError(
                "data.test_fraction=0 leaves no test rows (a run tests its best checkpoint): "
                "use a share in (0, 1), e.g. data.test_fraction=0.2, or give data.test_path"
            )
        # batches_per_fetch is the earlier name of minibatches_per_step.
        self.minibatches_per_step = batches_per_fetch or minibatches_per_step
        # seed=null: a fresh random split and order for this run.
        self.seed = seed if seed is not None else int(torch.randint(2**31, ()))
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        # Each split's row numbers in its file (data rows from 0), in the splits' order.
        self.split_rows: dict[str, np.ndarray] = {}
        self.split_weights: dict[str, Tensor] = {}  # data.weight: each split's, splits' order
        self.state: dict[str, Any] = {}
        self.preprocessing: TablePreprocessing | None = None
        # Training rows per label (their total sample weight, with data.weight).
        self.class_counts: list[float] = []
        # The most frequent training values of each hashed column (its name in coefficients.csv).
        self.hashed_values: dict[int, list[str]] = {}
        self.token_values: dict[int, list[str]] = {}  # the same for the text columns' tokens
        self._inference: tuple[Fitted, list[dict], dict[str, float]] | None = None

    # --- what the model and the entry points read ----------------------------------------------

    @property
    def columns(self) -> list[str]:
        return self._state("columns")

    @property
    def encoding(self) -> Encoding:
        """How string columns are encoded: the learned state's, else the config's."""
        return Encoding.from_state(self.state) if self.state else self.configured

    @property
    def feature_names(self) -> list[str]:
        """The model's input features: numeric columns, then one "column=category" each (with
        onehot_drop=first, for every category but the first), then the hashed columns, where
        hashed or text columns exist (lrexp.data.table_hashing.column_name)."""
        kinds, categories = self._state("kinds"), self._state("categories")
        numeric = [c for c, k in zip(self.columns, kinds, strict=True) if k == "numeric"]
        skip = self._dropped()
        onehot = [f"{c}={v}" for c in self.columns if c in categories for v in categories[c][skip:]]
        if not self._hashed_width():
            return numeric + onehot
        values = self.hashed_values
        return numeric + onehot + [column_name(k, values) for k in range(self._hashed_width())]

    def weight_names(self) -> list[str]:
        return self.feature_names

    def sample_weights(self, split: str) -> Tensor | None:
        """data.weight's values for the split's rows (None without data.weight)."""
        return self.split_weights.get(split)

    @property
    def in_features(self) -> int:
        kinds, skip = self._state("kinds"), self._dropped()
        onehot = sum(len(v) - skip for v in self._state("categories").values())
        return kinds.count("numeric") + onehot + self._hashed_width()

    def _hashed_width(self) -> int:
        """The hashed columns' features: 2^data.hash_bits where a column is hashed or text."""
        kinds = self._state("kinds")
        return 2**self.encoding.hash_bits if {"hashed", "text"} & set(kinds) else 0

    @property
    def sparse_start(self) -> int | None:
        """The first one-hot or hashed feature (the sparse block, lrexp.data.wide_features; a
        stream's are dense): their weights start at 0, so that a column no training row holds
        (a hashed column no value hashes to) keeps weight 0 whatever the penalty. None where
        every column is numeric."""
        kinds = self._state("kinds")
        return kinds.count("numeric") if set(kinds) - {"numeric"} else None

    def reported_features(self) -> list[int]:
        """The features coefficients.csv lists: all but the hashed columns no training value
        hashes to (weight 0, no name)."""
        width = self._hashed_width()
        first = self.in_features - width
        return [*range(first), *(first + k for k in sorted(self.hashed_values) if k < width)]

    @property
    def stored_width(self) -> int:
        """Numbers per training row as the model holds its features: the dense ones, and two
        (index and value) per sparse entry (lrexp.solvers.choose_optimizer's budget)."""
        kinds = self._state("kinds")
        if self.streamed:
            return self.in_features
        raw, _ = self.splits["train"]
        entries = kinds.count("categorical")
        if isinstance(raw, WideFeatures):
            entries += len(raw.indices) / max(len(raw), 1)
        return kinds.count("numeric") + math.ceil(2 * entries)

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
            if self.hparams[key] is None:
                continue
            path = Path(self.hparams[key]).expanduser()
            if path.is_dir():
                raise LrexpError(
                    f"data.{key}={self.hparams[key]}: is a directory; give a table file"
                )
            if not path.is_file():
                raise LrexpError(f"data.{key}={self.hparams[key]}: no such file")

    def setup(self, stage: str) -> None:
        if "train" in self.splits or (stage == "test" and "test" in self.splits):
            return
        hp = self.hparams
        # How a message's fix sets a data key: train composes data=table; eval and predict may
        # run on the checkpoint's own data config, which the command line extends with ++.
        override = "data." if stage == "fit" else "++data."
        # Testing a checkpoint on a separate test file needs nothing from the training file.
        if not (stage == "test" and self.state and hp.test_path is not None):
            self._setup_from_path(stage, override)
        if hp.test_path is not None and stage in ("fit", "test"):
            key = "data.test_path"
            table, columns = self._read(hp.test_path, key)
            rows, labels = self._usable_rows(table, columns, hp.test_path, key, override)
            counts = np.bincount(labels[rows], minlength=self.num_classes)
            if absent := [self.label_names[n] for n in np.flatnonzero(counts == 0)]:
                raise LrexpError(
                    f"{key}={hp.test_path}: no rows of label(s) {absent} among its {len(rows)} "
                    "usable rows; AUROC and F1 need every label: give a test file with rows of each"
                )
            self._add_splits(table, labels, {"test": rows}, hp.test_path)
        if stage != "test" and (empty := [n for n, c in enumerate(self.class_counts) if c == 0]):
            names = [self.label_names[n] for n in empty]
            raise LrexpError(
                f"data.path={hp.path}: no training rows for label(s) {names}; "
                "check data.target, data.positive/negative/classes and data.missing"
            )

    def _setup_from_path(self, stage: str, override: str) -> None:
        """Labels, the seeded split and (unless loaded) the preprocessing state from data.path."""
        hp = self.hparams
        table, columns = self._read(hp.path, "data.path")
        learn = not self.state
        if learn:
            values = distinct_values(target_column(table, hp.target))
            groups, rule = label_groups(values, hp.positive, hp.negative, hp.classes, hp.target)
            self.state = {"target": hp.target, "label_groups": groups}
            self._log_labels(rule)
        rows, labels = self._usable_rows(table, columns, hp.path, "data.path", override)
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
        self._check_split(labels, rows, train, val, test if hp.test_path is None else None)
        if learn:
            self._learn(table, columns, train)
        parts = {"train": train, "val": val} if stage != "test" else {}
        if hp.test_path is None and stage in ("fit", "test"):
            parts["test"] = test
        self._add_splits(table, labels, parts, hp.path)

    def state_dict(self) -> dict[str, Any]:
        """Plain Python values and tensors: what torch.load(weights_only=True) accepts."""
        return dict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.state = dict(state)
            self._build_preprocessing()

    # --- features ------------------------------------------------------------------------------

    def preprocess(self, raw: Features) -> Features:
        """Raw table features (see the module docstring) → float32 model features: a tensor
        where every column is numeric, else WideFeatures, the one-hot and hashed columns a
        sparse block (lrexp.data.wide_features) that is never made dense.

        A tensor in slices of PREPROCESS_ROWS rows written into the result, so that the
        module's intermediates (standardised columns) never exist for a whole split.
        """
        self._state("columns")
        dense = raw.dense if isinstance(raw, WideFeatures) else raw
        module = self.preprocessing.to(dense.device)
        # A stream preprocesses row groups into dense features (lrexp.data.table_stream).
        wide = not self.streamed
        if wide and any(kind != "numeric" for kind in self.state["kinds"]):
            with torch.no_grad():
                onehot = module.sparse(dense)
            if not isinstance(raw, WideFeatures):
                return onehot
            blocks = [b for b in (onehot, raw) if b.sparse_width]
            return WideFeatures.hstack(onehot.dense, blocks)
        # The module's columns: not the hashed ones (a stream's sparse block beside them).
        features = raw.new_empty((len(raw), module.n_numeric + module.onehot_width))
        with torch.no_grad():
            for start in range(0, len(raw), PREPROCESS_ROWS):
                features[start : start + PREPROCESS_ROWS] = module(
                    raw[start : start + PREPROCESS_ROWS]
                )
        return features

    def export_preprocessing(self) -> nn.Module:
        """Raw features (float32, batch first, `input_card()['columns']` order) → features: the
        one-hot columns dense, a batch at a time. Hashed strings cannot be: ONNX has no
        MurmurHash, nor a tokenizer."""
        self._check_exportable()
        return TablePreprocessing.from_state(self.state, self.hparams.missing == "mean").eval()

    def _check_exportable(self) -> None:
        kinds = self._state("kinds")
        if hashed := [
            c for c, k in zip(self.columns, kinds, strict=True) if k in ("hashed", "text")
        ]:
            raise LrexpError(
                f"export: columns {hashed} are hashed strings (data.categorical=hash or "
                "data.text), which an ONNX graph cannot hash: use python -m lrexp.predict, or "
                "train with data.categorical=onehot and without data.text"
            )

    def input_card(self) -> dict[str, Any]:
        """What the exported model takes: one float32 column per table column, in order."""
        self._check_exportable()
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
        table = file.read(self.columns, text=self._string_columns())
        check_finite(table, self.columns, f"inputs={path}")
        rows = self._complete_rows(table, self.columns, path, "inputs", "++data.")
        raw = self._raw(table, {"predict": rows})["predict"]
        return [str(r) for r in rows], self.preprocess(raw)

    # --- internals -----------------------------------------------------------------------------

    def _read(self, path: str, key: str) -> tuple[TableColumns, list[str]]:
        """The file's target and feature columns, and the feature columns' names."""
        file = TableFile(path, key, self.hparams.delimiter)
        columns = self._check_columns(file.names, path)
        # Categorical columns are matched to their categories as text, whatever their type here.
        text = [self.hparams.target, *self._string_columns()]
        weight = [self.hparams.weight] if self.hparams.get("weight") is not None else []
        table = file.read([*columns, self.hparams.target, *weight], text)
        for name in columns:
            if name in self.encoding.text and pa.types.is_null(table.types[name]):
                raise LrexpError(
                    f"data.text=[{name}]: column {name!r} of {path} is empty in every row; leave "
                    "it out of data.text"
                )
            column_kind(table.types[name], name, path)
        check_finite(table, columns, f"{key}={path}")
        return table, columns

    def _check_columns(self, names: list[str], path: str) -> list[str]:
        """The feature columns (the checkpoint's, else data.features or every other column)."""
        target = self.hparams.target
        if target not in names:
            raise LrexpError(f"data.target={target!r} is not a column of {path}; columns: {names}")
        weight = self.hparams.get("weight")
        if weight is not None and weight not in names:
            raise LrexpError(f"data.weight={weight!r} is not a column of {path}; columns: {names}")
        if weight is not None and weight == target:
            raise LrexpError(f"data.weight={weight!r} is the target: give the weights' column")
        if self.state:
            wanted = self.columns
        elif self.hparams.features is None:
            wanted = [n for n in names if n not in (target, weight)]
        else:
            wanted = list(self.hparams.features)
            if target in wanted:
                raise LrexpError(f"data.features lists the target {target!r}: leave it out")
            if weight is not None and weight in wanted:
                raise LrexpError(
                    f"data.features lists data.weight={weight!r}: a column is a feature or the "
                    "sample weights, not both; leave it out of data.features"
                )
        for name in self.encoding.text:
            if name not in names:
                raise LrexpError(
                    f"data.text=[{name}]: {path} has no column {name!r}; columns: {names}"
                )
            if name == target:
                raise LrexpError(f"data.text lists the target {target!r}: leave it out")
            if name not in wanted:  # a text column is a feature whatever data.features lists
                wanted.append(name)
        if lacking := [c for c in wanted if c not in names]:
            raise LrexpError(f"data.features: {path} has no column {lacking}; columns: {names}")
        if not wanted:
            raise LrexpError(f"data.path={path}: no column besides the target {target!r}")
        return wanted

    def _usable_rows(
        self, table: TableColumns, columns: list[str], path: str, key: str, override: str
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
        rows = self._complete_rows(table, [*columns, self.hparams.target], path, key, override)
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
        self, table: TableColumns, columns: list[str], path: str, key: str, override: str
    ) -> np.ndarray:
        """Row numbers to use under data.missing (error: all, or an error naming the columns);
        `override` is how the fix a message gives sets a data key ("data." or "++data.")."""
        target, policy = self.hparams.target, self.hparams.missing
        masks = {c: table.missing(c) for c in columns}
        counts = {c: int(m.sum()) for c, m in masks.items() if m.any()}
        if counts and policy == "error":
            listed = ", ".join(f"{c!r} ({n})" for c, n in counts.items())
            raise LrexpError(
                f"{key}={path}: missing values in columns {listed}; fill them in, impute them "
                f"with {override}missing=mean (the training mean or most frequent category) or "
                f"leave those rows out with {override}missing=drop"
            )
        if target in counts and policy == "mean":
            raise LrexpError(
                f"{key}={path}: missing values in the target {target!r} ({counts[target]}); "
                f"a label cannot be imputed: set {override}missing=drop"
            )
        keep = np.ones(table.num_rows, dtype=bool)
        if policy == "drop" and counts:
            for mask in masks.values():
                keep &= ~mask
            log.warning(f"{key}={path}: {int((~keep).sum())} rows with missing values left out")
        return np.flatnonzero(keep)

    def _check_split(
        self,
        labels: np.ndarray,
        rows: np.ndarray,
        train: np.ndarray,
        val: np.ndarray,
        test: np.ndarray | None,
    ) -> None:
        """Every label of data.path must reach every split that exists: AUROC and F1 cannot be
        measured on a split without one."""
        hp = self.hparams
        fractions = {} if test is None else {"data.test_fraction": hp.test_fraction}
        parts = {"train": train} | ({} if test is None else {"test": test})
        if hp.val_fraction > 0:
            fractions["data.val_fraction"] = hp.val_fraction
            parts["val"] = val
        if fractions:
            split_label_check(
                torch.from_numpy(labels[rows]),
                {name: torch.from_numpy(labels[part]) for name, part in parts.items()},
                self.label_names,
                f"data.path={hp.path}",
                fractions,
            )

    def _learn(self, table: TableColumns, columns: list[str], train: np.ndarray) -> None:
        hp = self.hparams
        weight = self._weights(table, hp.path)
        if weight is not None:
            weight = weight[train]
            if not weight.any():
                raise self._no_weight()
        outputs = 1 if self.num_classes == 2 else self.num_classes
        self.state |= learn_state(
            table, columns, train, hp.path, hp.normalize, self.configured, outputs, weight
        )
        self._build_preprocessing()

    def _weights(self, table: TableColumns, path: str) -> np.ndarray | None:
        """data.weight's column of `table` (checked), None without data.weight."""
        name = self.hparams.get("weight")
        return None if name is None else sample_weight_column(table, name, path)

    def _dropped(self) -> int:
        """Categories without a column at the start of each column's sorted categories."""
        return 1 if self.hparams.get("onehot_drop") == "first" else 0

    def _build_preprocessing(self) -> None:
        self.preprocessing = TablePreprocessing.from_state(
            self.state, self.hparams.missing == "mean", self._dropped()
        )

    def _raw(self, table: TableColumns, parts: dict[str, np.ndarray]) -> dict[str, Features]:
        """Each part's raw features (module docstring), float32 (len(rows), numeric and one-hot
        columns); where columns are hashed, WideFeatures of those beside their hashed columns.

        Built column-major (each column written contiguously, each file column converted once)
        and returned as row views of its transpose; preprocess() gives row-major features.
        """
        kinds = dict(zip(self.columns, self.state["kinds"], strict=True))
        columns = [c for c in self.columns if kinds[c] in ("numeric", "categorical")]
        raw = np.empty((len(columns), sum(map(len, parts.values()))), dtype=np.float32)
        bounds = np.cumsum([0, *map(len, parts.values())])
        for j, name in enumerate(columns):
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
        hashed = self._hashed_rows(table, kinds)
        if hashed is None:
            return views
        return {
            split: hashed[torch.from_numpy(rows)].with_dense(views[split])
            for split, rows in parts.items()
        }

    def _hashed_rows(self, table: TableColumns, kinds: dict[str, str]) -> WideFeatures | None:
        """Every row's hashed columns (lrexp.data.table_hashing), None where no column is
        hashed: hashed categorical columns one entry each (a missing value the training
        split's most frequent one under data.missing=mean, nothing otherwise), text columns
        their bags of words."""
        encoding, rows = self.encoding, table.num_rows
        hashed = [c for c in self.columns if kinds[c] == "hashed"]
        blocks = [
            text_rows(table.arrow[c], c, encoding.hash_bits, encoding.ngram_max)
            for c in self.columns
            if kinds[c] == "text"
        ]
        if hashed:
            codes = np.stack(
                [hashed_column(table.arrow[c], c, encoding.hash_bits) for c in hashed], 1
            )
            missing = codes < 0
            impute = self.hparams.missing == "mean"
            # Only imputation reads the fill (a stream learns none: lrexp.data.table_stream).
            fill = self.state["hash_fill"].numpy()[None, :] if impute else 0
            codes = np.where(missing, fill, codes)
            values = (~missing | impute).astype(np.float32)
            width = 2**encoding.hash_bits
            block = WideFeatures.fixed(
                torch.zeros(rows, 0), torch.from_numpy(codes), torch.from_numpy(values), width
            )
            blocks.insert(0, block)
        if not blocks:
            return None
        return WideFeatures.hstack(torch.zeros(rows, 0), blocks, shared=True)

    def _string_columns(self) -> list[str]:
        """The columns read as text whatever their look: categorical, hashed and text."""
        kinds = self.state.get("kinds", [])
        return [
            c for c, k in zip(self.state.get("columns", []), kinds, strict=True) if k != "numeric"
        ]

    def _learn_hashed_values(self, table: TableColumns, train: np.ndarray) -> None:
        """The most frequent training values of each hashed column (its name), and the stop for
        a text column without a word in any training row."""
        encoding = self.encoding
        kinds = dict(zip(self.columns, self.state["kinds"], strict=True))
        named, sources = [], []
        for name in self.columns:
            column = table.arrow.get(name)
            if kinds[name] in ("hashed", "text"):
                sources.append(kinds[name])
            if kinds[name] == "hashed":
                values, counts = value_counts(column.take(train))
                shown = [f"{name}={v}" for v in values]
                named.append((shown, shown, counts))
            elif kinds[name] == "text":
                counts = token_counts(column.take(train), encoding.ngram_max)
                if not counts:
                    raise LrexpError(
                        f"data.text=[{name}]: column {name!r} of {self.hparams.path} holds no "
                        "word (two letters or digits) in any training row; leave it out of "
                        "data.text"
                    )
                tokens = list(counts)
                named.append((tokens, [f"{name}={t}" for t in tokens], [counts[t] for t in tokens]))
        self.hashed_values = column_values(named, encoding.hash_bits)
        self.token_values = column_values(
            [n for n, k in zip(named, sources, strict=True) if k == "text"], encoding.hash_bits
        )

    def _add_splits(
        self, table: TableColumns, labels: np.ndarray, parts: dict[str, np.ndarray], path: str
    ) -> None:
        weights = self._weights(table, path)
        for split, raw in self._raw(table, parts).items():
            y = torch.from_numpy(labels[parts[split]])
            self.splits[split] = (raw, y)
            self.split_rows[split] = parts[split]
            weight = None if weights is None else torch.from_numpy(weights[parts[split]])
            if weight is not None:
                self.split_weights[split] = weight
                log.info(
                    f"{split} split: data.weight={self.hparams.weight!r} totals {weight.sum():g}"
                )
            if split == "train":
                self.class_counts = self._class_counts(y, weight)
                if self._hashed_width():
                    self._learn_hashed_values(table, parts[split])
            log_balance(split, y, self.label_names)

    def _class_counts(self, y: Tensor, weight: Tensor | None) -> list[float]:
        """Training rows per label, each counted by its sample weight; all-zero weights are an
        error (nothing to fit)."""
        if weight is None:
            return np.bincount(y.numpy(), minlength=self.num_classes).tolist()
        counts = np.bincount(y.numpy(), weights=weight.double().numpy(), minlength=self.num_classes)
        if counts.sum() == 0:
            raise self._no_weight()
        return counts.tolist()

    def _no_weight(self) -> LrexpError:
        return LrexpError(
            f"data.path={self.hparams.path}: data.weight={self.hparams.weight!r} is 0 on every "
            "training row, which leaves nothing to fit; give some rows a weight > 0"
        )

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
