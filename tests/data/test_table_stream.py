"""The streamed table: the in-memory table's state from one pass over row groups, a hash split
every process agrees on, every training row in exactly one rank's share, and a file that breaks
mid-run stopped with one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lrexp.data.stream_batches import StreamBatches, StreamRows
from lrexp.data.table import TableDataModule
from lrexp.data.table_stream import (
    TEST,
    TRAIN,
    VAL,
    StreamedTableDataModule,
    held_out,
    table_datamodule,
)
from lrexp.data.wide_features import WideFeatures, as_dense
from lrexp.errors import LrexpError
from lrexp.train import main
from tests.conftest import run_entry


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


def strings_frame(rows: int, seed: int) -> pa.Table:
    """Numbers, two string columns of many values (hashed) and a short text, and a 0/1 target
    that depends on all three kinds."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, rows))
    city = rng.zipf(1.5, rows) % 300
    shop = rng.integers(0, 40, rows)
    words = np.array(["good value", "bad service", "so so", "great good", "awful bad bad"])
    note = rng.choice(words, rows)
    logit = a + (city < 3) - 0.5 * (shop % 2) + np.char.count(note, "good") - 0.5
    y = (logit + rng.logistic(size=rows) > 0).astype(int)
    return pa.table(
        {"a": a * 3 + 1, "b": b, "city": [f"c{v}" for v in city], "shop": shop.astype(str)}
        | {"note": note, "y": y}
    )


@pytest.fixture(scope="module")
def string_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """1000 training rows in two files of row groups of 90 rows, and the same rows in one file;
    validation and test in their own files."""
    root = tmp_path_factory.mktemp("stream_strings")
    (root / "train").mkdir()
    whole = strings_frame(1000, 0)
    for i, start in enumerate((0, 600)):
        part = whole.slice(start, 600 if start == 0 else 400)
        pq.write_table(part, root / "train" / f"part{i}.parquet", row_group_size=90)
    pq.write_table(whole, root / "whole.parquet")
    pq.write_table(strings_frame(200, 1), root / "val.parquet")
    pq.write_table(strings_frame(200, 2), root / "test.parquet")
    return {name: root / name for name in ("train", "whole.parquet", "val.parquet", "test.parquet")}


HASHED = {"target": "y", "categorical": "hash", "hash_bits": 10, "text": ["note"], "seed": 0}


def sorted_rows(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The rows (features and label) in one canonical order, whatever order they came in."""
    rows = torch.cat([x, y[:, None].to(x.dtype)], 1).numpy()
    return rows[np.lexsort(rows.T[::-1])]


def test_hashed_columns_stream_as_the_in_memory_encoding(string_files: dict[str, Path]) -> None:
    """An SGD epoch's minibatches (shuffle buffers spanning row groups) hold every training row
    once, hashed as in memory; the epoch is the same every time for a seed; the held-out rows
    are the in-memory encoding of their files."""
    train, val = str(string_files["train"]), str(string_files["val.parquet"])
    test, whole = str(string_files["test.parquet"]), str(string_files["whole.parquet"])
    streamed = StreamedTableDataModule(train, val_path=val, test_path=test, **HASHED)
    streamed.setup("fit")
    memory = TableDataModule(whole, val_fraction=0.0, test_path=test, **HASHED)
    memory.setup("fit")
    kinds = ["numeric"] * 2 + ["hashed"] * 2 + ["text"]
    assert streamed.state["kinds"] == memory.state["kinds"] == kinds
    assert streamed.in_features == memory.in_features == 2 + 2**10

    def epoch() -> list[tuple[torch.Tensor, torch.Tensor]]:
        sampler = StreamBatches(streamed.group_rows, 32, 3, 128, streamed.seed)
        sampler.set_epoch(1)
        rows = StreamRows(streamed.training_rows, sampler.share)
        batches = []
        for item in sampler:
            group = rows[item]
            labels = group.labels()[0].split(group.sizes())
            for x, y in zip(group.features(), labels, strict=True):
                assert isinstance(x, WideFeatures) and len(x) <= 32
                batches.append((x.to_dense(), y))
        return batches

    first = epoch()
    x, y = (torch.cat(parts) for parts in zip(*first, strict=True))
    raw, labels = memory.splits["train"]
    assert np.array_equal(sorted_rows(x, y), sorted_rows(as_dense(memory.preprocess(raw)), labels))
    again = epoch()
    for (x, y), (x_again, y_again) in zip(first, again, strict=True):
        assert torch.equal(x, x_again) and torch.equal(y, y_again)
    held, held_labels = streamed.splits["test"]
    raw, labels = memory.splits["test"]
    assert isinstance(held, WideFeatures) and torch.equal(held_labels, labels)
    assert torch.equal(as_dense(streamed.preprocess(held)), as_dense(memory.preprocess(raw)))


def hashed_run(files: dict[str, Path], run_dir: Path, *overrides: str) -> int:
    """lrexp.train on the string table, hashed and streamed (in memory: `overrides` give
    data.stream=false and its data.path)."""
    command = ["data=table", "data.target=y", "data.categorical=hash", "data.hash_bits=10"]
    command += ["data.text=[note]", "logger=none", "trainer.enable_progress_bar=false"]
    command += [f"data.test_path={files['test.parquet']}", f"hydra.run.dir={run_dir}"]
    if "data.stream=false" not in overrides:
        command += ["data.stream=true", f"data.path={files['train']}"]
        command += [f"data.val_path={files['val.parquet']}"]
    return run_entry(main, *command, *overrides)


@pytest.fixture(scope="module")
def string_runs(
    string_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """L-BFGS on the stream and in memory (the same 1000 training rows), to tol 1e-7."""
    root = tmp_path_factory.mktemp("stream_string_runs")
    lbfgs = ["model.optimizer=lbfgs", "model.tol=1e-7"]
    memory = ["data.stream=false", f"data.path={string_files['whole.parquet']}"]
    memory += ["data.val_fraction=0"]
    assert hashed_run(string_files, root / "stream", *lbfgs) == 0
    assert hashed_run(string_files, root / "memory", *lbfgs, *memory) == 0
    return {"stream": root / "stream", "memory": root / "memory"}


def test_streamed_lbfgs_on_hashed_columns_is_the_in_memory_fit(
    string_runs: dict[str, Path],
) -> None:
    weights = {
        run: torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for run, folder in string_runs.items()
    }
    hashed = weights["memory"]["linear.weight"][:, 2:]  # the hashed and text columns'
    assert hashed.shape[1] == 2**10 and hashed.abs().max() > 0.1
    for name, tensor in weights["memory"].items():
        torch.testing.assert_close(weights["stream"][name], tensor, rtol=0, atol=1e-4)


def test_a_streamed_sgd_run_on_hashed_columns_scores_and_writes_its_files(
    string_files: dict[str, Path], string_runs: dict[str, Path], tmp_path: Path
) -> None:
    sgd = ["model.optimizer=sgd", "model.lr=0.1", "trainer.max_epochs=2", "data.batch_size=32"]
    assert hashed_run(string_files, tmp_path, *sgd, "data.shuffle_rows=128") == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    memory = json.loads((string_runs["memory"] / "metrics.json").read_text())
    assert metrics["test/acc"] > memory["test/acc"] - 0.05
    assert (tmp_path / "coefficients.csv").is_file()
