"""A table's target column as labels.

Label i is the set of target values in `label_groups[i]`. With neither `positive` nor `classes`,
a target with two distinct values is binary and the larger of the two in sorted order is
label 1 (what scikit-learn's LabelEncoder makes 1: 0/1 -> 1, false/true -> true, "no"/"yes"
-> "yes"); with more than two (up to MAX_AUTO_CLASSES) it is a softmax over all of them in
sorted order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lrexp.data.table_file import TableColumns
from lrexp.errors import LrexpError

# More distinct target values than this without data.classes looks like a continuous target.
MAX_AUTO_CLASSES = 100
Value = bool | int | float | str
Spec = Sequence[Value] | Value | None


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
