"""A NumPy feature matrix (`.npy`, rows × features) memory-mapped, never read whole, as the
pieces a stream reads (the interface of lrexp.data.row_groups.RowGroups): blocks of NPY_ROWS
rows, each turned into an Arrow table when read.

Its columns are named by their index ("0", "1", ...). The labels are either one of them
(data.target=3: column 3 is the target, the others the features) or a 1-D `.npy` of one label
per row (data.target=labels.npy: a column named by that path).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from lrexp.errors import LrexpError

NPY = ".npy"
# Rows per block: the unit of sharding and shuffling, as a Parquet row group is.
NPY_ROWS = 2**16


def is_npy(path: str) -> bool:
    return str(path).lower().endswith(NPY)


class NpyRows:
    """The rows of `path` in blocks; `target` a column index or a labels file (module docs)."""

    def __init__(self, path: str, key: str, target: str, block_rows: int = NPY_ROWS) -> None:
        self.path, self.key = str(path), key
        self.x = self._load(self.path, key, 2)
        self.labels = self._load(target, "data.target", 1) if is_npy(target) else None
        if self.labels is not None and len(self.labels) != len(self.x):
            raise LrexpError(
                f"data.target={target}: {len(self.labels)} labels for the {len(self.x)} rows of "
                f"{key}={path}; give one label per row"
            )
        self.target = target
        self.names = [str(j) for j in range(self.x.shape[1])]
        if self.labels is not None:
            self.names.append(target)
        starts = np.arange(0, len(self.x), block_rows, dtype=np.int64)
        self.starts = starts
        self.rows = np.minimum(block_rows, len(self.x) - starts).astype(np.int64)

    @staticmethod
    def _load(path: str, key: str, ndim: int) -> np.ndarray:
        if not Path(path).expanduser().is_file():
            raise LrexpError(f"{key}={path}: no such file")
        try:
            array = np.load(Path(path).expanduser(), mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise LrexpError(f"{key}={path}: not a readable .npy file ({err})") from None
        if array.ndim != ndim or array.dtype.kind not in "biuf":
            shape = "(rows, features)" if ndim == 2 else "(rows,)"
            raise LrexpError(
                f"{key}={path}: holds a {array.dtype} array of shape {array.shape}; give numbers "
                f"of shape {shape}"
            )
        return array

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def num_rows(self) -> int:
        return len(self.x)

    def file(self, index: int) -> str:
        return self.path

    def check_schemas(self, columns: Sequence[str]) -> None:
        """One file: nothing to agree on."""

    def read(self, index: int, columns: Sequence[str]) -> pa.Table:
        """Block `index`, the named columns (only this block is read from the file)."""
        start = int(self.starts[index])
        block = np.asarray(self.x[start : start + int(self.rows[index])])
        arrays = {}
        for name in columns:
            if self.labels is not None and name == self.target:
                arrays[name] = np.asarray(self.labels[start : start + len(block)])
            else:
                arrays[name] = np.ascontiguousarray(block[:, int(name)])
        return pa.table(arrays)
