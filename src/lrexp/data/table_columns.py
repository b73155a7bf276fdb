"""A table's feature columns as lrexp encodes them: each column's kind (numeric or categorical),
the check that its numbers are finite, and a categorical column's values as indices into its
categories."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lrexp.data.table_file import TableColumns, is_numeric, missing_mask
from lrexp.errors import LrexpError


def column_kind(kind: pa.DataType, name: str, path: str) -> str:
    """'numeric' (numbers, booleans) or 'categorical' (strings); anything else is an error."""
    if is_numeric(kind):
        return "numeric"
    value_type = kind.value_type if pa.types.is_dictionary(kind) else kind
    if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
        return "categorical"
    if pa.types.is_binary(value_type) or pa.types.is_large_binary(value_type):
        raise LrexpError(
            f"{path}: column {name!r} holds text that is not UTF-8 (Latin-1, say): save the file "
            "as UTF-8, or leave the column out with data.features"
        )
    if pa.types.is_null(value_type):
        raise LrexpError(
            f"{path}: column {name!r} has no values at all; leave it out with data.features"
        )
    raise LrexpError(
        f"{path}: column {name!r} of type {kind} cannot be encoded (numbers, booleans and "
        "strings can); leave it out with data.features or convert it"
    )


def check_finite(table: TableColumns, columns: list[str], source: str) -> None:
    """Stop at a numeric column holding inf or -inf (NaN and blanks are missing values, which
    data.missing handles): no standardisation or weight can use them."""
    for name in columns:
        if count := table.infinite(name):
            raise LrexpError(
                f"{source}: column {name!r} holds {count} infinite value(s) (inf, -inf, or beyond "
                "float32's ±3.4e38); replace them with finite numbers, or leave them blank to "
                "treat them as missing values (data.missing)"
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


def sample_weight_column(table: TableColumns, name: str, source: str) -> np.ndarray:
    """data.weight's column as float32 frequency weights: numbers, none missing, infinite or
    negative (a row cannot count a negative number of times)."""
    kind = table.types[name]
    if not is_numeric(kind):
        raise LrexpError(
            f"{source}: data.weight={name!r} holds {kind} values; give a column of numbers "
            "(a row of weight 3 counts as three rows)"
        )
    weight = table.numbers(name)
    problems = {
        "missing": int(np.isnan(weight).sum()),
        "infinite": int(np.isinf(weight).sum()),
        "negative": int((weight < 0).sum()),
    }
    if found := {what: n for what, n in problems.items() if n}:
        listed = ", ".join(f"{n} {what}" for what, n in found.items())
        raise LrexpError(
            f"{source}: data.weight={name!r} has {listed} value(s); every row needs a finite "
            "weight >= 0 (0 leaves the row out of the fit)"
        )
    return weight
