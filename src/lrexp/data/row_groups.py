"""A Parquet dataset — one file, a directory (hive-partitioned or not) or a glob — as the row
groups lrexp streams: each one's file, its row count from the file's metadata and the global
position of its first row, read one at a time with pyarrow.dataset.

Row groups are numbered in file order (files sorted by path), then in their order in the file,
so that every process and every resume numbers them alike. Partition columns
(`year=2024/...`) are columns like any other.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from lrexp.data.table_file import is_numeric
from lrexp.errors import LrexpError

PARQUET = ".parquet"


def _kind(kind: pa.DataType) -> str:
    """What two files must agree on for a column: numbers (any width), or the value type."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if is_numeric(kind):
        return "numbers"
    return "text" if pa.types.is_string(kind) or pa.types.is_large_string(kind) else str(kind)


class RowGroups:
    """The row groups of the Parquet dataset at `path` (for messages: config key `key`)."""

    def __init__(self, path: str, key: str) -> None:
        self.path, self.key = str(path), key
        files, base = self._files()
        try:
            self.dataset = ds.dataset(
                files, format="parquet", partitioning="hive", partition_base_dir=base
            )
            fragments = list(self.dataset.get_fragments())
            self.pieces = [p for f in fragments for p in f.split_by_row_group()]
        except (pa.ArrowException, OSError) as err:
            self._fail(f"not a readable Parquet dataset ({' '.join(str(err).split())})")
        self.rows = np.array([p.row_groups[0].num_rows for p in self.pieces], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.rows)[:-1]]).astype(np.int64)
        self.names = self.dataset.schema.names
        self._fragments = fragments

    def _files(self) -> tuple[list[str], str | None]:
        """The dataset's Parquet files, sorted, and the directory its partitions are under."""
        path = Path(self.path).expanduser()
        if path.is_dir():
            files = sorted(str(p) for p in path.rglob(f"*{PARQUET}") if p.is_file())
            if not files:
                self._fail(f"holds no {PARQUET} files; data.stream=true reads Parquet datasets")
            return files, str(path)
        if any(c in self.path for c in "*?["):
            files = sorted(f for f in glob.glob(str(path), recursive=True) if Path(f).is_file())
            if not files:
                self._fail("the pattern matches no file")
            return files, None
        if not path.is_file():
            self._fail("no such file or directory")
        if path.suffix.lower() != PARQUET:
            self._fail(
                "data.stream=true reads Parquet (a file, a directory of them or a glob); convert "
                "it, e.g. pyarrow.parquet.write_table(pyarrow.csv.read_csv(src), 'data.parquet'), "
                "or set data.stream=false"
            )
        return [str(path)], None

    def __len__(self) -> int:
        return len(self.pieces)

    @property
    def num_rows(self) -> int:
        return int(self.rows.sum())

    def file(self, index: int) -> str:
        return self.pieces[index].path

    def check_schemas(self, columns: Sequence[str]) -> None:
        """Every file holds `columns`, each of the same kind as in the first file."""
        first = self._fragments[0]
        if lacking := [c for c in columns if c not in self.dataset.schema.names]:
            self._fail(f"has no column {lacking}; columns: {self.dataset.schema.names}")
        expected = {c: _kind(self.dataset.schema.field(c).type) for c in columns}
        partition = set(self.dataset.schema.names) - set(first.physical_schema.names)
        for fragment in self._fragments:
            schema = fragment.physical_schema
            for name, kind in expected.items():
                if name in partition:
                    continue
                if name not in schema.names:
                    self._fail(f"file {fragment.path} has no column {name!r}, unlike {first.path}")
                if (found := _kind(schema.field(name).type)) != kind:
                    self._fail(
                        f"file {fragment.path}: column {name!r} holds {found}, but {kind} in "
                        f"{first.path}; give every file the same schema"
                    )

    def read(self, index: int, columns: Sequence[str]) -> pa.Table:
        """Row group `index`, the named columns; a file that cannot be read is one line naming
        it."""
        piece = self.pieces[index]
        try:
            return piece.to_table(columns=list(columns), schema=self.dataset.schema)
        except (pa.ArrowException, OSError) as err:
            raise LrexpError(
                f"{self.key}={self.path}: file {piece.path} (row group "
                f"{piece.row_groups[0].id}) cannot be read ({' '.join(str(err).split())[:200]}); "
                "replace the file, then resume with ckpt_path=last"
            ) from None

    def _fail(self, message: str) -> None:
        raise LrexpError(f"{self.key}={self.path}: {message}")
