"""The streamed table: the in-memory table's state from one pass over row groups, a hash split
every process agrees on, every training row in exactly one rank's share, and a file that breaks
mid-run stopped with one line naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lrexp.data.table import TableDataModule
from lrexp.data.table_stream import (
    TEST,
    TRAIN,
    VAL,
    StreamedTableDataModule,
    held_out,
    table_datamodule,
)
from lrexp.data.wide_features import as_dense
from lrexp.errors import LrexpError


def frame(rows: int, seed: int) -> pa.Table:
    """Numbers on different scales (some missing), a category, and a three-valued target."""
    rng = np.random.default_rng(seed)
    a = rng.normal(5.0, 3.0, rows)
    a[rng.random(rows) < 0.05] = np.nan
    b = rng.integers(0, 1000, rows)
    color = rng.choice(["red", "green", "blue", "teal"], rows, p=[0.4, 0.3, 0.2, 0.1])
    y = np.where(np.nan_to_num(a) + rng.normal(size=rows) > 5, "yes", "no")
    y[rng.random(rows) < 0.1] = "maybe"
    return pa.table({"a": a, "b": b, "color": color, "y": y})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stream")
    (root / "train").mkdir()
    whole = frame(1500, 0)
    for i, start in enumerate(range(0, 1500, 500)):  # three files of 500 rows, 5 row groups each
        pq.write_table(
            whole.slice(start, 500), root / "train" / f"part{i}.parquet", row_group_size=100
        )
    pq.write_table(whole, root / "whole.parquet", row_group_size=100)
    pq.write_table(frame(300, 1), root / "val.parquet")
    pq.write_table(frame(300, 2), root / "test.parquet")
    return {
        "dir": root / "train",
        "whole": root / "whole.parquet",
        "val": root / "val.parquet",
        "test": root / "test.parquet",
    }


def test_the_statistics_pass_learns_the_in_memory_state(files: dict[str, Path]) -> None:
    """Every row of data.path trains (validation and test from their own files): the streamed
    state equals the in-memory table's on the same rows."""
    common = {"target": "y", "missing": "mean", "test_path": str(files["test"]), "seed": 0}
    streamed = StreamedTableDataModule(str(files["dir"]), val_path=str(files["val"]), **common)
    streamed.setup("fit")
    memory = TableDataModule(str(files["whole"]), val_fraction=0.0, **common)
    memory.setup("fit")
    for key in ("columns", "kinds", "numeric", "categories", "target", "label_groups"):
        assert streamed.state[key] == memory.state[key], key
    for key in ("mean", "scale", "fill"):
        torch.testing.assert_close(streamed.state[key], memory.state[key], rtol=1e-12, atol=0)
    assert streamed.class_counts == memory.class_counts
    assert streamed.feature_names == memory.feature_names
    x, y = (torch.cat(parts) for parts in list(zip(*streamed.train_passes(), strict=True))[:2])
    raw, labels = memory.splits["train"]
    torch.testing.assert_close(x, as_dense(memory.preprocess(raw)))  # in memory: sparse
    assert torch.equal(y, labels)
    for split in ("val", "test"):
        assert len(streamed.splits[split][1]) == 300


def test_weighted_statistics_are_the_in_memory_ones(files: dict[str, Path], tmp_path: Path) -> None:
    """data.weight: weighted means, std and category counts from the pass, the labels' total
    weights as class counts, and each training row's weight with it."""
    rng = np.random.default_rng(5)
    table = frame(1500, 0)
    weights = rng.integers(0, 4, 1500).astype(float)  # zeros leave rows out
    table = table.append_column("w", pa.array(weights))
    pq.write_table(table, tmp_path / "w.parquet", row_group_size=100)
    for split, seed in (("val", 1), ("test", 2)):
        held = frame(300, seed)
        pq.write_table(
            held.append_column("w", pa.array(np.ones(300))), tmp_path / f"{split}.parquet"
        )
    common = {"target": "y", "missing": "mean", "weight": "w"}
    common["test_path"] = str(tmp_path / "test.parquet")
    path, val = str(tmp_path / "w.parquet"), str(tmp_path / "val.parquet")
    streamed = StreamedTableDataModule(path, val_path=val, **common)
    streamed.setup("fit")
    memory = TableDataModule(str(tmp_path / "w.parquet"), val_fraction=0.0, **common)
    memory.setup("fit")
    assert streamed.state["categories"] == memory.state["categories"]
    for key in ("mean", "scale", "fill"):
        torch.testing.assert_close(streamed.state[key], memory.state[key], rtol=1e-12, atol=0)
    assert streamed.class_counts == pytest.approx(memory.class_counts)
    parts = list(zip(*streamed.train_passes(), strict=True))
    assert torch.equal(torch.cat(parts[2]), memory.sample_weights("train"))
    assert torch.equal(streamed.sample_weights("test"), memory.sample_weights("test"))


def test_the_hash_split_is_a_function_of_the_row_number_alone() -> None:
    positions = np.arange(200_000)
    split = held_out(positions, seed=3, test=0.2, val=0.1)
    shares = np.bincount(split, minlength=3) / len(split)
    np.testing.assert_allclose(shares, [0.72, 0.08, 0.2], atol=0.005)
    pieces = np.concatenate([held_out(p, 3, 0.2, 0.1) for p in np.array_split(positions, 7)])
    assert np.array_equal(pieces, split)  # whatever the row groups
    assert not np.array_equal(held_out(positions, 4, 0.2, 0.1), split)
    assert set(np.unique(held_out(np.arange(2**31 - 5, 2**31 + 5), 3, 0.5, 0))) <= {TRAIN, TEST}
    assert VAL not in held_out(positions, 3, 0.2, 0.0)


def test_held_out_rows_stay_out_of_training(files: dict[str, Path]) -> None:
    data = StreamedTableDataModule(str(files["dir"]), "y", missing="mean")
    data.setup("fit")
    trained = sum(len(y) for _, y, _ in data.train_passes())
    val, test = len(data.splits["val"][1]), len(data.splits["test"][1])
    assert trained + val + test == 1500
    assert trained == sum(data.class_counts) == int(data.group_rows.sum())
    assert 0.15 < test / 1500 < 0.25 and 0.05 < val / 1500 < 0.12


@pytest.mark.parametrize("world_size", [2, 3])
def test_every_training_row_is_in_one_ranks_share(files: dict[str, Path], world_size: int) -> None:
    data = StreamedTableDataModule(str(files["dir"]), "y", missing="mean")
    data.setup("fit")
    whole = torch.cat([x for x, _, _ in data.train_passes()])
    shares = [
        torch.cat([x for x, _, _ in data.train_passes(r, world_size)]) for r in range(world_size)
    ]
    assert sum(len(s) for s in shares) == len(whole)
    assert torch.equal(torch.cat(shares).sort(0).values, whole.sort(0).values)


def test_in_memory_tables_take_no_val_path(files: dict[str, Path]) -> None:
    assert type(table_datamodule(path=str(files["whole"]), target="y")) is TableDataModule
    with pytest.raises(LrexpError, match="data.val_path needs data.stream=true"):
        table_datamodule(path=str(files["whole"]), target="y", val_path=str(files["val"]))


def test_a_file_that_breaks_mid_run_names_itself(files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(files["whole"].read_bytes())
    data = StreamedTableDataModule(str(path), "y", missing="mean")
    data.setup("fit")
    data.training_rows(3)
    broken = bytearray(path.read_bytes())
    broken[100:4000] = bytes(3900)
    path.write_bytes(bytes(broken))
    with pytest.raises(LrexpError, match=f"file {path} \\(row group 0\\) cannot be read"):
        data.training_rows(0)


def test_a_file_changed_since_the_statistics_pass_is_refused(
    files: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "t.parquet"
    table = frame(1500, 0)
    pq.write_table(table, path, row_group_size=100)
    data = StreamedTableDataModule(str(path), "y", missing="mean", classes=["no", "yes"])
    data.setup("fit")
    y = table["y"].to_numpy(zero_copy_only=False).copy()
    y[:100] = "maybe"  # no training rows left in the first row group
    pq.write_table(table.set_column(3, "y", pa.array(y)), path, row_group_size=100)
    with pytest.raises(LrexpError, match="changed since the statistics pass"):
        data.training_rows(0)
