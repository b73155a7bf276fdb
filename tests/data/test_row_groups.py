"""A Parquet dataset as row groups: files, directories, globs and hive partitions numbered alike
everywhere, row counts from the metadata, and every unusable input one line naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lrexp.data.row_groups import RowGroups
from lrexp.errors import LrexpError


def write(path: Path, start: int, rows: int, group: int = 4, **extra: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {"x": np.arange(start, start + rows, dtype=float), "y": np.arange(rows) % 2}
    pq.write_table(pa.table(columns | extra), path, row_group_size=group)
    return path


def values(groups: RowGroups, column: str = "x") -> list:
    return [v for i in range(len(groups)) for v in groups.read(i, [column])[column].to_pylist()]


def test_a_file_is_its_row_groups_with_their_metadata_row_counts(tmp_path: Path) -> None:
    groups = RowGroups(str(write(tmp_path / "t.parquet", 0, 10)), "data.path")
    assert groups.rows.tolist() == [4, 4, 2]
    assert groups.starts.tolist() == [0, 4, 8]
    assert groups.num_rows == 10
    assert values(groups) == list(map(float, range(10)))


def test_a_directory_and_a_glob_number_the_files_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "d" / "b.parquet", 100, 5)
    write(tmp_path / "d" / "a.parquet", 0, 6)
    (tmp_path / "d" / "notes.txt").write_text("not data")
    expected = [*map(float, range(6)), *map(float, range(100, 105))]
    assert values(RowGroups(str(tmp_path / "d"), "data.path")) == expected
    assert values(RowGroups(str(tmp_path / "d" / "*.parquet"), "data.path")) == expected


def test_hive_partitions_are_columns(tmp_path: Path) -> None:
    write(tmp_path / "h" / "site=north" / "part.parquet", 0, 3)
    write(tmp_path / "h" / "site=south" / "part.parquet", 3, 2)
    groups = RowGroups(str(tmp_path / "h"), "data.path")
    assert "site" in groups.names
    assert values(groups, "site") == ["north"] * 3 + ["south"] * 2


def test_a_directory_without_parquet_files_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "t.csv").write_text("x,y\n1,0\n")
    with pytest.raises(LrexpError, match="holds no .parquet files"):
        RowGroups(str(tmp_path / "e"), "data.path")


def test_a_csv_asks_for_parquet(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("x,y\n1,0\n")
    with pytest.raises(LrexpError, match="data.stream=true reads Parquet.*data.stream=false"):
        RowGroups(str(tmp_path / "t.csv"), "data.path")


def test_files_that_disagree_name_the_file_and_the_column(tmp_path: Path) -> None:
    write(tmp_path / "d" / "a.parquet", 0, 4)
    odd = write(tmp_path / "d" / "b.parquet", 0, 4, z=["u", "v", "w", "x"])
    pq.write_table(pa.table({"x": ["1", "2"], "y": [0, 1]}), odd)
    groups = RowGroups(str(tmp_path / "d"), "data.path")
    with pytest.raises(LrexpError, match=f"file {odd}: column 'x' holds text, but numbers"):
        groups.check_schemas(["x", "y"])
    pq.write_table(pa.table({"y": [0, 1]}), odd)
    with pytest.raises(LrexpError, match=f"file {odd} has no column 'x'"):
        RowGroups(str(tmp_path / "d"), "data.path").check_schemas(["x", "y"])


def test_integer_and_float_files_agree(tmp_path: Path) -> None:
    write(tmp_path / "d" / "a.parquet", 0, 4)
    pq.write_table(pa.table({"x": [1, 2], "y": [0, 1]}), tmp_path / "d" / "b.parquet")
    RowGroups(str(tmp_path / "d"), "data.path").check_schemas(["x", "y"])


def test_a_corrupt_row_group_names_its_file(tmp_path: Path) -> None:
    path = write(tmp_path / "t.parquet", 0, 400, group=100)
    groups = RowGroups(str(path), "data.path")
    data = bytearray(path.read_bytes())
    data[200:300] = bytes(100)  # inside the first row group's pages
    path.write_bytes(bytes(data))
    with pytest.raises(LrexpError, match=f"file {path} \\(row group 0\\) cannot be read"):
        groups.read(0, ["x"])
