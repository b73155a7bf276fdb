"""Strings as hashed features (data.categorical=hash, data.text): no list of values is kept or
collected, and a value never seen in training just hashes.

The hash is scikit-learn's FeatureHasher (input_type="string", alternate_sign=False): MurmurHash3
(32 bits, seed 0) of the string, its absolute value modulo 2^bits the column, every entry +1.
Different strings can share a column (a collision): their weights are one. With v values spread
over 2^bits columns a value shares its column with about v / 2^bits others (18 bits, 100 000
values: 0.4).

- a categorical column c's value v is the string "c=v": one entry per row;
- a text column c is a bag of words: its lowercased word tokens (scikit-learn's default token
  pattern \\b\\w\\w+\\b; with ngram_max=2 also each pair of neighbouring tokens, joined by a
  space), each the string "c=token", counted, and the row's counts scaled to unit L2 norm (as
  HashingVectorizer's norm="l2"), so that a long text weighs no more than a short one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lrexp.data.table_columns import dictionary_indices
from lrexp.data.wide_features import WideFeatures
from lrexp.errors import LrexpError

if TYPE_CHECKING:
    from sklearn.feature_extraction import FeatureHasher

CATEGORICAL = ("onehot", "hash")
HASH_BITS = (1, 30)  # data.hash_bits' range: 2^30 float32 weights are 4 GiB per class
NGRAM_MAX = (1, 2)
TOP_VALUES = 3  # values named per hashed column in coefficients.csv


@dataclass(frozen=True)
class Encoding:
    """How a table's string columns become features: data.categorical, data.hash_bits,
    data.text and data.ngram_max, checked."""

    categorical: str = "onehot"
    hash_bits: int = 18
    text: tuple[str, ...] = ()
    ngram_max: int = 1

    @classmethod
    def of(cls, categorical: Any, hash_bits: Any, text: Any, ngram_max: Any) -> Encoding:
        if categorical not in CATEGORICAL:
            raise LrexpError(
                f"data.categorical={categorical!r}: use onehot (a weight per training category) "
                "or hash (values hashed into 2^data.hash_bits weights)"
            )
        low, high = HASH_BITS
        if (
            isinstance(hash_bits, bool)
            or not isinstance(hash_bits, int)
            or not low <= hash_bits <= high
        ):
            raise LrexpError(
                f"data.hash_bits={hash_bits!r}: use a whole number in {low}..{high}, e.g. 18"
            )
        if ngram_max not in NGRAM_MAX:
            raise LrexpError(f"data.ngram_max={ngram_max!r}: use 1 (words) or 2 (words and pairs)")
        if isinstance(text, str):
            text = [text]
        columns = tuple(str(c) for c in (text or ()))
        if len(set(columns)) < len(columns):
            raise LrexpError(f"data.text={list(columns)} lists a column twice: list each once")
        return cls(categorical, hash_bits, columns, ngram_max)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Encoding:
        """A learned state's (a checkpoint made before hashing existed: one-hot, no text)."""
        return cls(
            state.get("categorical", "onehot"),
            state.get("hash_bits", 18),
            tuple(state.get("text", ())),
            state.get("ngram_max", 1),
        )

    def state(self) -> dict[str, Any]:
        """The keys that differ from the defaults (a plain one-hot table's state is as before
        hashing existed, so its checkpoints resume)."""
        default = Encoding()
        keys = ("categorical", "hash_bits", "text", "ngram_max")
        changed = [k for k in keys if getattr(self, k) != getattr(default, k)]
        return {k: list(self.text) if k == "text" else getattr(self, k) for k in changed}


def _hasher(bits: int) -> FeatureHasher:
    from sklearn.feature_extraction import FeatureHasher

    return FeatureHasher(n_features=2**bits, input_type="string", alternate_sign=False)


def buckets(strings: Sequence[str], bits: int) -> np.ndarray:
    """Each string's column among 2^bits."""
    if not strings:
        return np.zeros(0, dtype=np.int64)
    return _hasher(bits).transform([s] for s in strings).indices.astype(np.int64)


def hashed_column(column: pa.ChunkedArray, name: str, bits: int) -> np.ndarray:
    """Each row's column of "name=value", -1 where the value is missing (each distinct value
    hashed once)."""
    indices, dictionary = dictionary_indices(column)
    table = buckets([f"{name}={v}" for v in dictionary], bits)
    return np.where(indices >= 0, table[indices.clip(0)] if len(table) else -1, -1)


def tokenizer(ngram_max: int) -> Callable[[str], list[str]]:
    """The text's tokens: scikit-learn's word analyzer (lowercase, \\b\\w\\w+\\b, n-grams)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(ngram_range=(1, ngram_max)).build_analyzer()


def texts(column: pa.ChunkedArray) -> list[str]:
    return pc.fill_null(column.cast(pa.string()), "").to_pylist()


def text_rows(column: pa.ChunkedArray, name: str, bits: int, ngram_max: int) -> WideFeatures:
    """Every row's bag of words (module docstring) as a sparse block of 2^bits columns."""
    from sklearn.preprocessing import normalize

    analyze = tokenizer(ngram_max)
    counts = _hasher(bits).transform(
        [f"{name}={token}" for token in analyze(text)] for text in texts(column)
    )
    matrix = normalize(counts.astype(np.float32), norm="l2", copy=False).tocsr()
    return WideFeatures(
        torch.zeros(matrix.shape[0], 0),
        torch.from_numpy(matrix.indptr.astype(np.int64)),
        torch.from_numpy(matrix.indices.astype(np.int64)),
        torch.from_numpy(matrix.data.astype(np.float32)),
        2**bits,
    )


def token_counts(column: pa.ChunkedArray, ngram_max: int) -> Counter:
    """How many rows hold each token (the names of the text's columns)."""
    analyze = tokenizer(ngram_max)
    counts: Counter = Counter()
    for text in texts(column):
        counts.update(set(analyze(text)))
    return counts


def value_counts(column: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """A categorical column's distinct values and their rows (missing left out)."""
    indices, dictionary = dictionary_indices(column)
    counts = np.bincount(indices[indices >= 0], minlength=len(dictionary))
    return dictionary, counts


def column_values(
    named: Iterable[tuple[Sequence[str], Sequence[str], np.ndarray]], bits: int
) -> dict[int, list[str]]:
    """The TOP_VALUES most frequent values of each hashed column, from (names shown, strings
    hashed, counts) of each hashed source."""
    shown, hashed, counts = [], [], []
    for names, strings, count in named:
        shown += list(names)
        hashed += list(strings)
        counts.append(np.asarray(count, dtype=np.int64))
    if not shown:
        return {}
    columns = buckets(hashed, bits)
    count = np.concatenate(counts)
    order = np.lexsort((-count, columns))
    values: dict[int, list[str]] = {}
    for j in order:
        kept = values.setdefault(int(columns[j]), [])
        if len(kept) < TOP_VALUES:
            kept.append(shown[j])
    return values


def column_name(column: int, values: dict[int, list[str]]) -> str:
    """A hashed column's name in coefficients.csv: its one value (a token, or "c=v"), else the
    bucket and the most frequent values seen in training that hash to it."""
    seen = values.get(column)
    if not seen:
        return f"bucket {column}"
    if len(seen) == 1:
        return seen[0]
    return f"bucket {column}: {' | '.join(seen)}"
