"""A table file (CSV, TSV, Parquet or .npz) read into the columns lrexp keeps: numeric columns as
float32 arrays (NaN where a value is missing), every other column as an Arrow array.

The file is read piece by piece and each numeric piece is written as float32 as it arrives, so
that the numeric columns are never held in Arrow (float64, mostly) beside their float32 copy:
- CSV and TSV: pyarrow's streaming reader, block by block (multi-threaded within a block). It
  types each column from the first block; where a later block does not fit that type (an integer
  column with a decimal further down), the file is read again whole, with types from all of it,
  for the same columns. The number of rows is known at the end only, so the blocks' numbers go
  to float32 segments, copied into one matrix at the end, each freed once copied: the float32
  columns are in memory once, plus a segment;
- Parquet: a few columns at a time (as many as decode to about PARQUET_VALUES_PER_READ values of
  the largest row group), each streamed in record batches into float32 columns of the file's
  length;
- .npz: one 1-D array per column, named by the column (`np.savez(path, age=ages,
  color=np.asarray(colors, dtype=str), y=labels)`), loaded one at a time and never with pickle.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lrexp.errors import LrexpError

SUFFIXES = (".csv", ".tsv", ".parquet", ".npz")
# 2M values: 16 MB of float64 per read, whatever the table's width and length.
PARQUET_VALUES_PER_READ = 2**21
# CSV numbers are gathered in float32 segments of this size: above glibc's largest mmap threshold
# (32 MiB), so that each is a mapping of its own, given back to the system when freed (smaller
# arrays freed into the C heap stay resident in the process).
SEGMENT_BYTES = 40 * 2**20


def is_numeric(kind: pa.DataType) -> bool:
    """Numbers and booleans (and dictionaries of them): the columns read as float32."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
    )


def float32_values(column: pa.Array | pa.ChunkedArray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 values (into `out` if given), NaN where missing, rounded once from float64; a
    column of text is parsed as numbers, and raises pa.ArrowInvalid where it holds other text.
    A value beyond float32's range becomes ±inf, without numpy's warning: the DataModule counts
    and refuses infinite values (TableColumns.infinite) with a message of its own."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore"):
        if out is None:
            return values.astype(np.float32)
        out[...] = values
    return out


def missing_mask(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return pc.is_null(column, nan_is_null=True).to_numpy(zero_copy_only=False)


@dataclass
class TableColumns:
    """The columns read from one table file, each of `num_rows` values."""

    types: dict[str, pa.DataType]  # each read column's type in the file
    num_rows: int
    floats: dict[str, np.ndarray]  # numeric columns: float32, NaN where missing
    arrow: dict[str, pa.ChunkedArray]  # the other read columns

    def missing(self, name: str) -> np.ndarray:
        """Where the column has no value (null or NaN)."""
        if name in self.floats:
            return np.isnan(self.floats[name])
        return missing_mask(self.arrow[name])

    def infinite(self, name: str) -> int:
        """How many values of a numeric column are inf or -inf (in the file, or beyond float32)."""
        return int(np.isinf(self.floats[name]).sum()) if name in self.floats else 0

    def numbers(self, name: str) -> np.ndarray:
        """The column as float32 (see float32_values for a column read as Arrow)."""
        if name in self.floats:
            return self.floats[name]
        return float32_values(self.arrow[name])


def table_columns(
    table: pa.Table, columns: Sequence[str], text: Collection[str] = ()
) -> TableColumns:
    """The named columns of an Arrow table already read (a Parquet row group), kept as
    `TableFile.read` keeps a file's: numeric ones as float32 unless named in `text`."""
    built = _Columns(table.schema, columns, text, table.num_rows)
    built.add_all(table.select(list(columns)).to_batches())
    floats, arrow = built.finish()
    return TableColumns(built.types, table.num_rows, floats, arrow)


class TableFile:
    """An opened table file: its column names, then the columns asked for (`read`).

    Every way a file can be unusable is one LrexpError naming `key` and the file.
    """

    def __init__(self, path: str | Path, key: str, delimiter: str | None = None) -> None:
        self.path = Path(path).expanduser()
        self.key = key
        self.suffix = self.path.suffix.lower()
        if self.suffix not in SUFFIXES:
            self._fail(f"unknown table format; use one of {', '.join(SUFFIXES)}")
        if self.path.is_dir():
            self._fail(f"is a directory; give the path of a {self.suffix} table file")
        if not self.path.is_file():
            self._fail(f"no such file; give the path of a {self.suffix} table")
        if self.path.stat().st_size == 0:
            self._fail("the file is empty; give a table with a header and rows")
        self.delimiter = delimiter or ("\t" if self.suffix == ".tsv" else ",")
        if self.suffix == ".parquet":
            self.names = self._open_parquet()
        elif self.suffix == ".npz":
            self.names = self._open_npz()
        else:
            self._stream: pa.RecordBatchReader | None = self._open_delimited()
            self.names = self._stream.schema.names
        if duplicates := sorted({n for n in self.names if self.names.count(n) > 1}):
            self._fail(f"duplicate column names {duplicates}; give every column its own name")

    def read(self, columns: Sequence[str], text: Collection[str] = ()) -> TableColumns:
        """The named columns: numeric ones as float32, unless named in `text` (kept as Arrow,
        e.g. for matching against category names), and every other one as Arrow."""
        columns = list(columns)
        if self.suffix == ".parquet":
            built = self._read_parquet(columns, text)
        elif self.suffix == ".npz":
            built = self._read_npz(columns, text)
        else:
            built = self._read_delimited(columns, text)
        floats, arrow = built.finish()
        if built.num_rows == 0:
            self._fail("the table has no rows")
        return TableColumns(built.types, built.num_rows, floats, arrow)

    # --- CSV and TSV ------------------------------------------------------------------------------

    def _csv_options(self) -> dict:
        import pyarrow.csv as csv

        return {
            "read_options": csv.ReadOptions(use_threads=True),
            "parse_options": csv.ParseOptions(delimiter=self.delimiter),
            # An empty field is missing in a string column too, not the category "".
            "convert_options": csv.ConvertOptions(strings_can_be_null=True),
        }

    def _open_delimited(self) -> pa.RecordBatchReader:
        """pyarrow's streaming reader, its first block read (which gives the columns)."""
        import pyarrow.csv as csv

        try:
            stream = csv.open_csv(self.path, **self._csv_options())
        except pa.ArrowException as err:
            self._unreadable_text(err)
        if len(stream.schema) == 1:
            self._fail(
                f"split at {self.delimiter!r} it has one column ({stream.schema.names[0]!r}); "
                "a table needs a target and features: set data.delimiter to the file's "
                f"separator, e.g. data.delimiter=';'"
            )
        return stream

    def _read_delimited(self, columns: list[str], text: Collection[str]) -> _Columns:
        import pyarrow.csv as csv

        stream, self._stream = self._stream, None
        try:
            if stream is None:  # read before: open again
                stream = csv.open_csv(self.path, **self._csv_options())
            built = _Columns(stream.schema, columns, text)
            try:
                built.add_all(stream)
            except pa.ArrowInvalid as err:
                if "conversion error" not in str(err).lower():
                    raise
                del built  # its segments go before the whole file comes
                # A later block broke the first block's types: the whole file, typed from all.
                whole = csv.read_csv(self.path, **self._csv_options())
                built = _Columns(whole.schema, columns, text)
                built.add_all(whole.to_batches())
        except pa.ArrowException as err:
            self._unreadable_text(err)
        return built

    def _unreadable_text(self, err: pa.ArrowException) -> NoReturn:
        self._fail(f"cannot read it as {self.delimiter!r}-separated text ({_one_line(err)})")

    # --- Parquet ----------------------------------------------------------------------------------

    def _open_parquet(self) -> list[str]:
        import pyarrow.parquet as pq

        try:
            self._parquet = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as err:
            self._unreadable_parquet(err)
        return self._parquet.schema_arrow.names

    def _read_parquet(self, columns: list[str], text: Collection[str]) -> _Columns:
        """A few columns at a time, each batch written into the columns of the file's length."""
        file = self._parquet
        metadata = file.metadata
        longest = max(
            (metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)), default=0
        )
        per_read = max(1, PARQUET_VALUES_PER_READ // max(longest, 1))
        built = _Columns(file.schema_arrow, columns, text, metadata.num_rows)
        try:
            for start in range(0, len(columns), per_read):
                group = columns[start : start + per_read]
                built.add_all(file.iter_batches(columns=group, use_threads=True))
        except (pa.ArrowException, OSError) as err:
            self._unreadable_parquet(err)
        return built

    def _unreadable_parquet(self, err: BaseException) -> NoReturn:
        self._fail(f"not a readable Parquet file ({_one_line(err)})")

    # --- .npz -------------------------------------------------------------------------------------

    def _open_npz(self) -> list[str]:
        try:
            with np.load(self.path, allow_pickle=False) as arrays:
                names = list(arrays.files)
        except (OSError, ValueError) as err:
            self._unreadable_npz(err)
        if not names:
            self._fail("the .npz holds no arrays; save one array per column")
        return names

    def _read_npz(self, columns: list[str], text: Collection[str]) -> _Columns:
        """One array at a time, each converted before the next is loaded."""
        built: _Columns | None = None
        lengths: dict[str, int] = {}
        try:
            with np.load(self.path, allow_pickle=False) as arrays:
                for name in columns:
                    column = pa.array(self._npz_array(arrays, name))
                    lengths[name] = len(column)
                    if len(set(lengths.values())) > 1:
                        self._fail(f"arrays of different lengths {lengths}; one per column")
                    if built is None:
                        built = _Columns(pa.schema([]), [], text, len(column))
                    built.expect(name, column.type)
                    built.add(pa.record_batch([column], names=[name]))
        except (OSError, ValueError, pa.ArrowException) as err:
            self._unreadable_npz(err)
        assert built is not None  # columns holds at least the target
        return built

    def _npz_array(self, arrays: np.lib.npyio.NpzFile, name: str) -> np.ndarray:
        try:
            array = arrays[name]
        except ValueError:
            self._fail(
                f"array {name!r} needs pickle, which lrexp never loads; "
                "save strings as np.asarray(values, dtype=str)"
            )
        if array.ndim != 1:
            self._fail(
                f"array {name!r} has shape {array.shape}; save one 1-D array per column, "
                "e.g. np.savez(path, **{name: X[:, i], ...}, y=y)"
            )
        return array.astype(str) if array.dtype.kind == "S" else array

    def _unreadable_npz(self, err: BaseException) -> NoReturn:
        self._fail(f"not a readable .npz file ({_one_line(err)})")

    def _fail(self, message: str) -> NoReturn:
        raise LrexpError(f"{self.key}={self.path}: {message}") from None


class _Columns:
    """Read columns, built from pieces that arrive in row order (every piece of a column after
    the one before it): numeric columns (unless named in `text`) written as float32 on arrival,
    so that their Arrow piece can go at once, the others kept as Arrow.

    With `num_rows` given, each numeric column is allocated whole up front and a piece may hold
    any of the columns. Without, every piece holds them all (CSV blocks): their numbers fill
    segments of SEGMENT_BYTES, which `finish` copies into one matrix, freeing each once copied.
    """

    def __init__(
        self,
        schema: pa.Schema,
        columns: Sequence[str],
        text: Collection[str],
        num_rows: int | None = None,
    ) -> None:
        self.text, self.num_rows = set(text), num_rows
        self.types: dict[str, pa.DataType] = {}
        self.numeric: list[str] = []  # the columns written as float32
        self.floats: dict[str, np.ndarray] = {}  # with num_rows: each of them, whole
        self.written: dict[str, int] = {}  # with num_rows: the rows of each written so far
        self.pieces: dict[str, list[pa.Array]] = {}  # the other columns' pieces
        for name in columns:
            self.expect(name, schema.field(name).type)
        # Without num_rows: the numeric columns' segments, the last filled up to `rows`.
        self.rows = 0
        self.segments: list[np.ndarray] = []

    def expect(self, name: str, kind: pa.DataType) -> None:
        """Column `name`, of type `kind`, is one of those read."""
        self.types[name] = kind
        if name in self.text or not is_numeric(kind):
            self.pieces[name] = []
            return
        self.numeric.append(name)
        if self.num_rows is not None:
            self.floats[name] = np.empty(self.num_rows, dtype=np.float32)
            self.written[name] = 0

    def add(self, batch: pa.RecordBatch) -> None:
        if self.num_rows is None:
            self._add_to_segments(batch)
        else:
            for name in batch.schema.names:
                if name in self.written:
                    start = self.written[name]
                    out = self.floats[name][start : start + batch.num_rows]
                    float32_values(batch.column(name), out=out)
                    self.written[name] += batch.num_rows
        for name in batch.schema.names:
            if name in self.pieces:
                self.pieces[name].append(batch.column(name))

    def add_all(self, batches: Iterable[pa.RecordBatch]) -> None:
        for batch in batches:
            self.add(batch)

    def _add_to_segments(self, batch: pa.RecordBatch) -> None:
        width = len(self.numeric)
        per_segment = max(1, SEGMENT_BYTES // (4 * max(width, 1)))
        done = 0
        while done < batch.num_rows:
            filled = self.rows % per_segment
            if filled == 0:
                self.segments.append(np.empty((width, per_segment), dtype=np.float32))
            take = min(batch.num_rows - done, per_segment - filled)
            piece = batch.slice(done, take)
            for row, name in zip(self.segments[-1], self.numeric, strict=True):
                float32_values(piece.column(name), out=row[filled : filled + take])
            self.rows += take
            done += take

    def finish(self) -> tuple[dict[str, np.ndarray], dict[str, pa.ChunkedArray]]:
        """(float32 columns, Arrow columns); num_rows set."""
        if self.num_rows is None:
            self.num_rows = self.rows
            matrix = np.empty((len(self.numeric), self.rows), dtype=np.float32)
            self.segments.reverse()
            start = 0
            while self.segments:  # each segment freed once copied
                segment = self.segments.pop()[:, : self.rows - start]
                matrix[:, start : start + segment.shape[1]] = segment
                start += segment.shape[1]
                del segment
            self.floats = dict(zip(self.numeric, matrix, strict=True))
        arrow = {
            name: pa.chunked_array(pieces, type=self.types[name])
            for name, pieces in self.pieces.items()
        }
        return self.floats, arrow


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
