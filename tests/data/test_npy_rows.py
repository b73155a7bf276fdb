"""A .npy feature matrix is memory-mapped and streamed as a Parquet table is: the same state, the
same training rows, labels from a file or from a column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lrexp.data.npy_rows import NpyRows
from lrexp.data.table_stream import StreamedTableDataModule
from lrexp.errors import LrexpError


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 4)).astype(np.float32) * [1, 2, 3, 4]
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "xy.npy", np.column_stack([x, y]).astype(np.float32))
    columns = {str(j): x[:, j] for j in range(4)} | {"label": y}
    pq.write_table(pa.table(columns), tmp_path / "t.parquet", row_group_size=1000)
    return {p.stem: p for p in tmp_path.iterdir()}


def test_blocks_are_read_from_the_memory_map(files: dict[str, Path]) -> None:
    rows = NpyRows(str(files["x"]), "data.path", str(files["y"]), block_rows=1200)
    assert isinstance(rows.x, np.memmap)
    assert rows.rows.tolist() == [1200] * 4 + [200] and rows.starts[-1] == 4800
    block = rows.read(4, ["2", str(files["y"])])
    np.testing.assert_array_equal(block["2"].to_numpy(), np.load(files["x"])[4800:, 2])
    np.testing.assert_array_equal(block[str(files["y"])].to_numpy(), np.load(files["y"])[4800:])


@pytest.mark.parametrize("labels", ["file", "column"])
def test_a_matrix_streams_as_its_parquet_table(files: dict[str, Path], labels: str) -> None:
    if labels == "file":
        npy = StreamedTableDataModule(str(files["x"]), str(files["y"]), seed=1)
    else:  # the labels in column 4 of the matrix
        npy = StreamedTableDataModule(str(files["xy"]), "4", seed=1)
    parquet = StreamedTableDataModule(str(files["t"]), "label", seed=1)
    npy.setup("fit")
    parquet.setup("fit")
    for key in ("mean", "scale"):
        torch.testing.assert_close(npy.state[key], parquet.state[key], rtol=1e-12, atol=0)
    assert npy.class_counts == parquet.class_counts
    ours, theirs = (torch.cat([x for x, _, _ in d.train_passes()]) for d in (npy, parquet))
    assert torch.equal(ours.sort(0).values, theirs.sort(0).values)  # blocks != row groups
    for split in ("val", "test"):
        assert torch.equal(
            npy.splits[split][1].sort().values, parquet.splits[split][1].sort().values
        )


def test_labels_of_another_length_are_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    np.save(tmp_path / "short.npy", np.zeros(10, dtype=np.int64))
    with pytest.raises(LrexpError, match="10 labels for the 5000 rows"):
        NpyRows(str(files["x"]), "data.path", str(tmp_path / "short.npy"))
    with pytest.raises(LrexpError, match=r"give numbers of shape \(rows, features\)"):
        NpyRows(str(files["y"]), "data.path", "0")
