"""lrexp.data.table: real tables (scikit-learn's bundled breast cancer, wine and iris data, no
network) written by the tests as CSV, TSV, Parquet and .npz, read back through TableDataModule."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as csv
import pyarrow.parquet as pq
import pytest
import torch
from sklearn import datasets

from lrexp.data.table import TableDataModule
from lrexp.data.table_preprocessing import TablePreprocessing
from lrexp.errors import LrexpError

COLORS = np.array(["red", "green", "blue", "black"])


def cancer_frame() -> pd.DataFrame:
    """Breast cancer (569 rows, 30 numbers, target 0/1) with a string column derived from a
    feature, so its categories carry signal and the first rows hold all four."""
    frame = datasets.load_breast_cancer(as_frame=True).frame
    frame.insert(3, "color", COLORS[np.argsort(np.argsort(frame["mean area"])) % 4])
    return frame


def wine_frame() -> pd.DataFrame:
    return datasets.load_wine(as_frame=True).frame  # 178 rows, 13 numbers, target 0/1/2


def iris_frame() -> pd.DataFrame:
    """Iris with its species as names: a string target."""
    data = datasets.load_iris(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame["species"] = data.target_names[data.target]
    return frame


def write(frame: pd.DataFrame, path: Path) -> Path:
    """The frame as path's format (.csv, .tsv, .parquet, or .npz with one array per column)."""
    if path.suffix == ".npz":
        arrays = {
            c: frame[c].to_numpy(dtype=None if pd.api.types.is_numeric_dtype(frame[c]) else str)
            for c in frame
        }
        np.savez(path, **arrays)
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    else:
        delimiter = "\t" if path.suffix == ".tsv" else ","
        options = csv.WriteOptions(delimiter=delimiter, quoting_style="needed")
        csv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), path, options)
    return path


def fitted(path: Path, target: str = "target", **hparams) -> TableDataModule:
    datamodule = TableDataModule(path=str(path), target=target, **hparams)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def features(datamodule: TableDataModule, split: str) -> torch.Tensor:
    return datamodule.preprocess(datamodule.splits[split][0])


# --- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", [cancer_frame, wine_frame, iris_frame])
def test_every_format_gives_identical_tensors(frame, tmp_path: Path) -> None:
    table = frame()
    target = "species" if "species" in table else "target"
    reference = fitted(write(table, tmp_path / "t.csv"), target)
    for suffix in (".tsv", ".parquet", ".npz"):
        other = fitted(write(table, tmp_path / f"t{suffix}"), target)
        assert other.feature_names == reference.feature_names
        assert other.label_names == reference.label_names
        for split in ("train", "val", "test"):
            assert torch.equal(other.splits[split][0], reference.splits[split][0])
            assert torch.equal(other.splits[split][1], reference.splits[split][1])
            assert torch.equal(features(other, split), features(reference, split))


def test_labels_and_features_have_the_contracts_types(tmp_path: Path) -> None:
    datamodule = fitted(write(cancer_frame(), tmp_path / "t.csv"), batches_per_fetch=3)
    x, y = datamodule.splits["train"]
    assert y.dtype == torch.int64 and set(y.tolist()) == {0, 1}
    assert features(datamodule, "train").dtype == torch.float32
    assert datamodule.in_features == 30 + 4 == len(datamodule.feature_names)
    assert datamodule.feature_names[30:] == [
        "color=black",
        "color=blue",
        "color=green",
        "color=red",
    ]
    assert datamodule.class_counts == torch.bincount(y).tolist()
    group = next(iter(datamodule.train_dataloader()))
    assert len(group) == 3  # batches_per_fetch, the old name of minibatches_per_step
    xb, yb, wb = next(iter(group))
    assert xb.shape == (64, datamodule.in_features) and yb.dtype == torch.int64 and wb is None


# --- statistics from the training split -------------------------------------------------------


def test_standardisation_uses_the_training_split_only(tmp_path: Path) -> None:
    table = wine_frame()
    held = table.index[::4]  # every 4th row: the test files hold every class (wine is sorted)
    test_a, test_b = table.loc[held].copy(), table.loc[held].copy()
    test_b["alcohol"] += 100.0  # a test file far off the training data
    train = write(table.drop(held), tmp_path / "train.csv")
    a = fitted(train, test_path=str(write(test_a, tmp_path / "a.csv")))
    b = fitted(train, test_path=str(write(test_b, tmp_path / "b.csv")))
    assert torch.equal(a.state["mean"], b.state["mean"])
    assert torch.equal(features(a, "train"), features(b, "train"))
    rows = table.drop(held).iloc[a.split_rows["train"]].drop(columns="target").to_numpy()
    rows = rows.astype(np.float32).astype(np.float64)  # the statistics of the raw float32 values
    np.testing.assert_allclose(a.state["mean"].numpy(), rows.mean(0), rtol=1e-12)
    np.testing.assert_allclose(a.state["scale"].numpy(), rows.std(0), rtol=1e-12)
    x = features(a, "train")
    torch.testing.assert_close(x.mean(0), torch.zeros(13), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(0, unbiased=False), torch.ones(13), atol=1e-5, rtol=0)
    shift = (features(b, "test") - features(a, "test"))[:, 0]
    torch.testing.assert_close(shift, torch.full((len(held),), 100.0) / a.state["scale"][0].float())


def test_a_constant_column_keeps_scale_1_and_normalize_false_keeps_values(tmp_path: Path) -> None:
    table = wine_frame()
    table["constant"] = 7.0
    datamodule = fitted(write(table, tmp_path / "t.csv"))
    column = datamodule.feature_names.index("constant")
    assert datamodule.state["scale"][column] == 1.0
    assert torch.equal(
        features(datamodule, "train")[:, column], torch.zeros(len(datamodule.splits["train"][1]))
    )
    raw = fitted(write(table, tmp_path / "t.csv"), normalize=False)
    assert torch.equal(features(raw, "train"), raw.splits["train"][0])


def test_categories_come_from_training_and_unseen_ones_are_zeros_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = cancer_frame()
    test = table.iloc[:50].copy()
    test.loc[test.index[:7], "color"] = "purple"
    datamodule = fitted(
        write(table.iloc[50:], tmp_path / "train.csv"),
        test_path=str(write(test, tmp_path / "test.csv")),
    )
    assert datamodule.state["categories"] == {"color": ["black", "blue", "green", "red"]}
    assert "test: column 'color': 7 rows hold a category not seen in training" in caplog.text
    onehot = features(datamodule, "test")[:, 30:]
    assert torch.equal(onehot[:7], torch.zeros(7, 4))
    assert torch.equal(onehot[7:].sum(1), torch.ones(43))
    expected = [datamodule.state["categories"]["color"].index(c) for c in test["color"][7:]]
    assert onehot[7:].argmax(1).tolist() == expected


def test_categories_seen_only_outside_training_are_not_features(tmp_path: Path) -> None:
    table = wine_frame()
    table["grade"] = np.where(table.index < 60, "a", "b")
    datamodule = fitted(write(table, tmp_path / "t.csv"))
    train_values = set(table["grade"].iloc[datamodule.split_rows["train"]])
    assert datamodule.state["categories"]["grade"] == sorted(train_values)


# --- labels -----------------------------------------------------------------------------------


def test_a_binary_target_takes_the_larger_sorted_value_as_label_1_and_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lrexp.data.table")
    table = cancer_frame()
    table["diagnosis"] = np.where(table.pop("target") == 1, "benign", "malignant")
    datamodule = fitted(write(table, tmp_path / "t.csv"), target="diagnosis")
    assert datamodule.label_names == ["benign", "malignant"]
    assert "label 1 = malignant, label 0 = benign" in caplog.text
    rows = datamodule.split_rows["train"]
    expected = (table["diagnosis"].iloc[rows] == "malignant").astype(np.int64).to_numpy()
    assert datamodule.splits["train"][1].tolist() == expected.tolist()


def test_positive_picks_label_1_and_negative_null_is_every_other_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lrexp.data.table")
    path = write(wine_frame(), tmp_path / "t.csv")
    one_vs_rest = fitted(path, positive=["2"])
    assert one_vs_rest.label_names == ["0, 1", "2"] and one_vs_rest.num_classes == 2
    assert "label 1 = 2, label 0 = 0, 1" in caplog.text
    pair = fitted(path, positive=0, negative=[1])
    assert sum(len(pair.splits[s][1]) for s in ("train", "val", "test")) == 59 + 71
    assert pair.label_names == ["1", "0"]


def test_several_values_make_a_softmax_over_classes(tmp_path: Path) -> None:
    path = write(iris_frame(), tmp_path / "t.parquet")
    auto = fitted(path, target="species")
    assert auto.num_classes == 3 and auto.label_names == ["setosa", "versicolor", "virginica"]
    assert auto.class_counts == [50 - 10 - 4] * 3  # test 20 %, val 10 % of the rest
    chosen = fitted(path, target="species", classes=["virginica", "setosa"])
    assert chosen.label_names == ["virginica", "setosa"]
    assert fitted(path, target="species", classes="all").label_names == auto.label_names


@pytest.mark.parametrize(
    ("hparams", "match"),
    [
        ({"classes": "all", "positive": [1]}, "data.classes and data.positive are both set"),
        ({"negative": [1]}, "data.negative is set without data.positive"),
        (
            {"positive": [5]},
            "data.positive holds 5, not a value of column 'target'; its values: 0, 1, 2",
        ),
        ({"positive": [0, 1, 2]}, "data.positive lists every value"),
        ({"positive": [0], "negative": [0, 1]}, r"values \[0\] are in both"),
        ({"classes": [1]}, "list at least two values"),
    ],
)
def test_bad_label_choices_are_one_line_errors(hparams, match: str, tmp_path: Path) -> None:
    with pytest.raises(LrexpError, match=match) as err:
        fitted(write(wine_frame(), tmp_path / "t.csv"), **hparams)
    assert "\n" not in str(err.value)


def test_seeded_stratified_splits_keep_class_shares(tmp_path: Path) -> None:
    path = write(wine_frame(), tmp_path / "t.csv")
    datamodule = fitted(path, seed=3)
    totals = np.bincount(wine_frame()["target"])
    rows = np.concatenate([datamodule.split_rows[s] for s in ("train", "val", "test")])
    assert sorted(rows.tolist()) == list(range(178))  # disjoint and complete
    sizes = {s: len(datamodule.split_rows[s]) for s in ("train", "val", "test")}
    for split, fraction in (("test", 0.2), ("val", 0.8 * 0.1)):
        counts = torch.bincount(datamodule.splits[split][1], minlength=3).numpy()
        np.testing.assert_allclose(counts, totals * fraction, atol=1)
        assert abs(sizes[split] - 178 * fraction) <= 2
    again, other = fitted(path, seed=3), fitted(path, seed=4)
    assert np.array_equal(again.split_rows["test"], datamodule.split_rows["test"])
    assert not np.array_equal(other.split_rows["test"], datamodule.split_rows["test"])


# --- missing values ---------------------------------------------------------------------------


def with_gaps(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    table = cancer_frame()
    table.loc[[3, 10, 20], "mean texture"] = np.nan
    table.loc[[5, 6], "color"] = None
    return table, write(table, tmp_path / "gaps.parquet")


def test_missing_values_are_an_error_naming_columns_and_counts(tmp_path: Path) -> None:
    with pytest.raises(
        LrexpError, match=r"missing values in columns 'mean texture' \(3\), 'color' \(2\)"
    ):
        fitted(with_gaps(tmp_path)[1])


def test_missing_drop_leaves_incomplete_rows_out(tmp_path: Path) -> None:
    datamodule = fitted(with_gaps(tmp_path)[1], missing="drop")
    rows = np.concatenate([datamodule.split_rows[s] for s in ("train", "val", "test")])
    assert len(rows) == 569 - 5 and not {3, 5, 6, 10, 20} & set(rows.tolist())


def test_missing_mean_imputes_training_mean_and_most_frequent_category(tmp_path: Path) -> None:
    table, path = with_gaps(tmp_path)
    datamodule = fitted(path, missing="mean")
    rows = datamodule.split_rows["train"]
    train = table.iloc[rows]
    column = datamodule.columns.index("mean texture")
    assert datamodule.state["fill"][column].item() == pytest.approx(
        train["mean texture"].astype(np.float32).astype(np.float64).mean(), rel=1e-12
    )
    mode = sorted(train["color"].dropna().value_counts().items(), key=lambda kv: (-kv[1], kv[0]))[
        0
    ][0]
    x = features(datamodule, "train")
    gaps = np.isin(rows, [3, 10, 20])
    assert gaps.any()
    torch.testing.assert_close(x[gaps, 0 + 1], torch.zeros(int(gaps.sum())), atol=1e-5, rtol=0)
    color_gaps = np.isin(rows, [5, 6])
    onehot = x[color_gaps][:, 30:]
    assert (onehot.argmax(1) == datamodule.state["categories"]["color"].index(mode)).all()


def test_a_missing_target_is_never_imputed(tmp_path: Path) -> None:
    table = wine_frame()
    table["target"] = table["target"].astype(float)
    table.loc[0, "target"] = np.nan
    with pytest.raises(LrexpError, match="missing values in the target 'target' \\(1\\)"):
        fitted(write(table, tmp_path / "t.csv"), missing="mean")


# --- bad input --------------------------------------------------------------------------------


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, dict, str]]:
    """name -> (file, hparams, what the one-line message must say)."""
    good = write(wine_frame(), tmp_path / "good.csv")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("a,b,target\n")
    (tmp_path / "semicolon.csv").write_text("a;b;target\n1;2;0\n3;4;1\n")
    (tmp_path / "dupes.csv").write_text("a,a,target\n1,2,0\n3,4,1\n")
    (tmp_path / "single.csv").write_text("a,target\n1,yes\n2,yes\n")
    (tmp_path / "nullcol.csv").write_text("a,b,target\n1,,0\n2,,1\n")
    np.savez(tmp_path / "pickle.npz", a=np.array([1, 2]), target=np.array([{}, {}], dtype=object))
    np.savez(tmp_path / "matrix.npz", X=np.ones((2, 2)), target=np.array([0, 1]))
    pq.write_table(pa.table({"a": [[1], [2]], "target": [0, 1]}), tmp_path / "list.parquet")
    (tmp_path / "table.xlsx").write_text("x")
    return {
        "no file": (tmp_path / "nope.csv", {}, "nope.csv: no such file"),
        "empty file": (tmp_path / "empty.csv", {}, "empty.csv: the file is empty"),
        "no rows": (tmp_path / "header.csv", {}, "header.csv: the table has no rows"),
        "format": (tmp_path / "table.xlsx", {}, "table.xlsx: unknown table format"),
        "target": (
            good,
            {"target": "label"},
            "data.target='label' is not a column of .*good.csv; columns: \\['alcohol'",
        ),
        "feature": (
            good,
            {"features": ["alcohol", "colour"]},
            "has no column \\['colour'\\]; columns: \\['alcohol'",
        ),
        "single value": (
            tmp_path / "single.csv",
            {},
            "column 'target' has a single value \\(yes\\)",
        ),
        "delimiter": (
            tmp_path / "semicolon.csv",
            {},
            "semicolon.csv: split at ',' it has one column \\('a;b;target'\\).*data.delimiter=';'",
        ),
        "duplicates": (tmp_path / "dupes.csv", {}, "dupes.csv: duplicate column names \\['a'\\]"),
        "pickle": (tmp_path / "pickle.npz", {}, "pickle.npz: array 'target' needs pickle"),
        "2-D npz": (tmp_path / "matrix.npz", {}, "matrix.npz: array 'X' has shape \\(2, 2\\)"),
        "list column": (
            tmp_path / "list.parquet",
            {},
            "column 'a' of type list<.*> cannot be encoded",
        ),
        "all-null column": (tmp_path / "nullcol.csv", {}, "column 'b' has no values at all"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "no file",
        "empty file",
        "no rows",
        "format",
        "target",
        "feature",
        "single value",
        "delimiter",
        "duplicates",
        "pickle",
        "2-D npz",
        "list column",
        "all-null column",
    ],
)
def test_bad_input_is_one_line_naming_the_file_or_column(case: str, tmp_path: Path) -> None:
    path, hparams, match = bad_inputs(tmp_path)[case]
    with pytest.raises(LrexpError, match=match) as err:
        fitted(path, **{"target": "target", **hparams})
    assert "\n" not in str(err.value)


def test_numeric_column_names_match_as_text(tmp_path: Path) -> None:
    """Hydra reads data.target=3 and data.features=[0,1] as numbers; column names are text."""
    path = tmp_path / "numbered.csv"
    rows = [f"{i * 0.5},{(i * 7) % 5},{i % 3},{i % 2}" for i in range(40)]
    path.write_text("0,1,2,3\n" + "\n".join(rows) + "\n")
    datamodule = fitted(path, target=3, features=[0, 1])
    assert datamodule.columns == ["0", "1"] and datamodule.hparams.target == "3"


def test_a_delimiter_can_be_given(tmp_path: Path) -> None:
    path = tmp_path / "semicolon.csv"
    path.write_text("a;b;target\n1;2;0\n3;4;1\n5;6;0\n7;8;1\n")
    datamodule = fitted(path, delimiter=";", test_path=str(path), val_fraction=0.0)
    assert datamodule.columns == ["a", "b"] and len(datamodule.splits["train"][1]) == 4


# --- state in the checkpoint, predict and export ----------------------------------------------


def test_state_round_trip_rebuilds_identical_features_without_the_training_file(
    tmp_path: Path,
) -> None:
    table = cancer_frame()
    test = table.iloc[:60].copy()
    train_path = write(table.iloc[60:], tmp_path / "train.csv")
    datamodule = fitted(
        train_path, test_path=str(write(test, tmp_path / "test.csv")), missing="mean"
    )
    torch.save(datamodule.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)  # as a checkpoint is loaded
    train_path.unlink()  # eval and predict must not need the training file's statistics

    fresh = TableDataModule(**datamodule.hparams)
    fresh.load_state_dict(state)
    fresh.setup("test")
    assert fresh.feature_names == datamodule.feature_names
    assert torch.equal(features(fresh, "test"), features(datamodule, "test"))

    test.drop(columns="target").to_csv(tmp_path / "new.csv", index=False)  # no target column
    names, x = fresh.encode_inputs([str(tmp_path / "new.csv")])
    assert names == [str(i) for i in range(60)]
    assert torch.equal(x, features(datamodule, "test"))


def test_predict_input_must_hold_every_feature_column(tmp_path: Path) -> None:
    datamodule = fitted(write(wine_frame(), tmp_path / "t.csv"))
    wine_frame().drop(columns=["alcohol", "target"]).to_parquet(tmp_path / "new.parquet")
    with pytest.raises(
        LrexpError, match=r"inputs=.*new.parquet: lacks feature columns \['alcohol'\]"
    ):
        datamodule.encode_inputs(str(tmp_path / "new.parquet"))


def test_exported_preprocessing_runs_in_onnxruntime_as_in_torch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    table, path = with_gaps(tmp_path)
    datamodule = fitted(path, missing="mean")
    module = datamodule.export_preprocessing()
    assert isinstance(module, TablePreprocessing)
    raw = datamodule.splits["train"][0].contiguous()
    raw[0, 1], raw[1, 30] = float("nan"), -1.0  # a missing number, an unseen category
    onnx_path = tmp_path / "pre.onnx"
    torch.onnx.export(
        module, (raw,), str(onnx_path), input_names=["raw"], dynamic_shapes=({0: "batch"},)
    )
    session = ort.InferenceSession(str(onnx_path))
    (got,) = session.run(None, {"raw": raw[:17].numpy()})
    np.testing.assert_allclose(got, datamodule.preprocess(raw[:17]).numpy(), rtol=0, atol=1e-6)
    card = datamodule.input_card()
    assert [c["name"] for c in card["columns"]] == datamodule.columns
    assert card["columns"][30]["categories"] == ["black", "blue", "green", "red"]
    assert card["features"] == datamodule.feature_names


def test_features_agree_with_scikit_learns_scaler_and_one_hot_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from lrexp.data import table as table_module

    monkeypatch.setattr(table_module, "PREPROCESS_ROWS", 100)  # the training split in 4 slices
    table = cancer_frame()
    test = table.iloc[:40].copy()
    test.loc[test.index[:5], "color"] = "purple"
    datamodule = fitted(
        write(table.iloc[40:], tmp_path / "train.parquet"),
        test_path=str(write(test, tmp_path / "test.parquet")),
    )
    train = table.iloc[40:].iloc[datamodule.split_rows["train"]].drop(columns="target")
    numeric = [c for c in train if c != "color"]
    sklearn = ColumnTransformer(
        [
            ("num", StandardScaler(), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"]),
        ],
        sparse_threshold=0,
    ).fit(train)
    for split, rows in (("train", train), ("test", test.drop(columns="target"))):
        expected = sklearn.transform(rows)
        np.testing.assert_allclose(features(datamodule, split).numpy(), expected, rtol=0, atol=1e-5)


def test_onehot_drop_first_gives_no_column_to_each_columns_first_category(tmp_path: Path) -> None:
    """data.onehot_drop=first: scikit-learn's OneHotEncoder(drop="first"), the first sorted
    category of each column the reference (all zeros); anything else is a one-line error."""
    from sklearn.preprocessing import OneHotEncoder

    table = cancer_frame()[["mean radius", "color", "target"]]
    table.insert(2, "size", np.where(table["mean radius"] > 14, "large", "small"))
    path = write(table, tmp_path / "table.csv")
    datamodule = fitted(path, onehot_drop="first")
    assert datamodule.feature_names == [
        "mean radius",
        "color=blue",
        "color=green",
        "color=red",
        "size=small",
    ]  # black and large: the references
    train = table.iloc[datamodule.split_rows["train"]]
    encoder = OneHotEncoder(drop="first", sparse_output=False).fit(train[["color", "size"]])
    expected = encoder.transform(train[["color", "size"]])
    np.testing.assert_array_equal(features(datamodule, "train")[:, 1:].numpy(), expected)
    with pytest.raises(LrexpError, match="data.onehot_drop='last'"):
        TableDataModule(path=str(path), target="target", onehot_drop="last")


def test_a_table_run_agrees_with_scikit_learns_pipeline_end_to_end(
    tmp_path: Path, run_main
) -> None:
    """train (lbfgs, C=1) on a table with a string target and a categorical column, then eval
    and predict: probabilities equal scikit-learn's StandardScaler + OneHotEncoder +
    LogisticRegression(C=1) on the same split to 2e-3; coefficients.csv names every feature."""
    import json

    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from lrexp import eval as eval_
    from lrexp import predict, train

    frame = cancer_frame()
    frame["target"] = np.where(frame["target"] == 1, "benign", "malignant")
    path = write(frame, tmp_path / "cancer.csv")
    run = tmp_path / "run"
    common = ["data=table", f"data.path={path}", "data.target=target"]
    exact = ["model.optimizer=lbfgs", "model.C=1", "model.tol=1e-7"]
    overrides = [*common, *exact, "trainer.max_epochs=3"]
    assert run_main(train.main, *overrides, "logger=none", f"hydra.run.dir={run}") == 0

    datamodule = fitted(path)
    rows = datamodule.split_rows
    numeric = [c for c in frame if c not in ("target", "color")]
    reference = make_pipeline(
        ColumnTransformer(
            [("num", StandardScaler(), numeric), ("cat", OneHotEncoder(), ["color"])]
        ),
        LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000),
    )
    reference.fit(frame.iloc[rows["train"]], frame["target"].iloc[rows["train"]])
    assert list(reference.classes_) == ["benign", "malignant"]  # label 1: malignant
    expected = reference.predict_proba(frame.iloc[rows["test"]])[:, 1]

    test_rows = tmp_path / "test_rows.csv"
    write(frame.iloc[rows["test"]].drop(columns="target"), test_rows)
    out = tmp_path / "predict"
    status = run_main(
        predict.main,
        f"ckpt_path={run / 'checkpoints/last.ckpt'}",
        f"inputs={test_rows}",
        f"hydra.run.dir={out}",
    )
    assert status == 0
    predicted = pd.read_csv(out / "predictions.csv")
    assert list(predicted.columns) == ["input", "p_label_1", "label"]
    np.testing.assert_allclose(predicted["p_label_1"], expected, atol=2e-3)

    coefficients = pd.read_csv(run / "coefficients.csv")
    features = {"(intercept)", *numeric, *(f"color={c}" for c in COLORS)}
    assert set(coefficients["feature"]) == features
    np.testing.assert_allclose(coefficients["odds_ratio"], np.exp(coefficients["weight"]))
    assert (run / "figures" / "coefficients.png").is_file()

    evaluated = tmp_path / "eval"
    ckpt = f"ckpt_path={run / 'checkpoints/last.ckpt'}"
    assert run_main(eval_.main, ckpt, "logger=none", f"hydra.run.dir={evaluated}") == 0
    scores = json.loads((evaluated / "metrics.json").read_text())
    trained = json.loads((run / "metrics.json").read_text())
    assert scores["test/acc"] == pytest.approx(trained["test/acc"])


def test_a_column_typed_wrongly_by_the_first_block_is_read_with_the_whole_files_types(
    tmp_path: Path,
) -> None:
    """The streaming reader types columns from its first block (1 MB): an integer column with
    a decimal far below it makes the file be read again whole, giving the columns of a
    whole-file read."""
    from lrexp.data.table_file import TableFile

    rows = 300_000
    values = np.arange(rows).astype(str)
    values[-1] = "1.5"
    values[7] = ""  # missing
    path = tmp_path / "late_decimal.csv"
    pd.DataFrame({"x": values, "y": np.arange(rows) % 2}).to_csv(path, index=False)
    assert path.stat().st_size > 2_000_000  # well past the first block
    columns = TableFile(path, "data.path").read(["x", "y"], text=["y"])
    whole = csv.read_csv(path)
    assert columns.types["x"] == pa.float64()
    np.testing.assert_array_equal(
        columns.floats["x"], whole["x"].to_numpy().astype(np.float32), strict=True
    )
    assert np.isnan(columns.floats["x"][7]) and columns.floats["x"][-1] == 1.5
    assert columns.arrow["y"].equals(whole["y"]) and columns.num_rows == rows


def test_numbers_read_across_blocks_segments_row_groups_and_reads_are_the_files_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small segments (CSV) and reads (Parquet), so that their bounds fall inside the streaming
    reader's blocks and the row groups: every column as pyarrow reads the whole file."""
    from lrexp.data import table_file

    rng = np.random.default_rng(0)
    rows = 40_000  # a CSV of about 5 MB: five blocks of the streaming reader
    frame = pd.DataFrame({f"x{i}": rng.normal(0, 10 ** (i - 2), rows) for i in range(5)})
    frame.loc[rng.choice(rows, 50), "x1"] = np.nan
    frame["n"] = rng.integers(-1000, 1000, rows)
    frame["flag"] = rng.random(rows) < 0.5
    frame["color"] = np.where(rng.random(rows) < 0.01, None, COLORS[rng.integers(0, 4, rows)])
    frame["target"] = rng.integers(0, 2, rows)
    numeric = [c for c in frame if c not in ("color", "target")]
    monkeypatch.setattr(table_file, "SEGMENT_BYTES", 4 * len(numeric) * 7_001)
    monkeypatch.setattr(table_file, "PARQUET_VALUES_PER_READ", 2 * 9_000)
    csv_path = write(frame, tmp_path / "t.csv")
    parquet_path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet_path, 9_000)
    assert pq.ParquetFile(parquet_path).metadata.num_row_groups == 5
    nulls = csv.ConvertOptions(strings_can_be_null=True)  # an empty field is missing
    wholes = {csv_path: csv.read_csv(csv_path, convert_options=nulls)}
    wholes[parquet_path] = pq.read_table(parquet_path)
    for path, whole in wholes.items():
        columns = table_file.TableFile(path, "data.path").read(list(frame), text=["target"])
        assert columns.num_rows == rows and sorted(columns.floats) == sorted(numeric)
        for name in numeric:
            expected = whole[name].cast(pa.float64()).to_numpy().astype(np.float32)
            np.testing.assert_array_equal(columns.floats[name], expected, strict=True)
        assert columns.arrow["color"].equals(whole["color"])
        assert columns.arrow["target"].equals(whole["target"])


# --- sample weights (data.weight) --------------------------------------------------------------


def test_sample_weights_are_frequency_weights_and_scikit_learns_sample_weight(
    tmp_path: Path, run_main
) -> None:
    """data.weight=w (whole numbers 0-3) trains, tests and infers as the same rows repeated w
    times, and fits scikit-learn's pipeline with sample_weight (StandardScaler and
    LogisticRegression(C=1)): weights to 1e-4, metrics and inference to 1e-5."""
    import json

    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from lrexp import train

    frame = cancer_frame()
    frame["w"] = np.random.default_rng(0).integers(0, 4, len(frame))
    test = frame.sample(120, random_state=1)
    training = frame.drop(test.index)

    def repeated(part: pd.DataFrame) -> pd.DataFrame:
        return part.loc[part.index.repeat(part["w"])].drop(columns="w")

    files = {
        "weighted": (write(training, tmp_path / "w.csv"), write(test, tmp_path / "w_test.csv")),
        "repeated": (
            write(repeated(training), tmp_path / "r.csv"),
            write(repeated(test), tmp_path / "r_test.csv"),
        ),
    }
    exact = ["model.optimizer=lbfgs", "model.C=1", "model.tol=1e-7", "logger=none"]
    runs = {}
    for kind, (path, test_path) in files.items():
        run = tmp_path / kind
        weight = ["data.weight=w"] if kind == "weighted" else []
        overrides = [f"data.path={path}", f"data.test_path={test_path}", "data.val_fraction=0"]
        overrides += ["data=table", "data.target=target", *weight, *exact]
        assert run_main(train.main, *overrides, f"hydra.run.dir={run}") == 0
        state = torch.load(run / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
        runs[kind] = (
            state["linear.weight"].double(),
            json.loads((run / "metrics.json").read_text()),
            pd.read_csv(run / "coefficients.csv"),
        )
    (weight, metrics, coefficients), (weight_r, metrics_r, coefficients_r) = runs.values()
    torch.testing.assert_close(weight, weight_r, rtol=0, atol=1e-4)
    for key in ("test/acc", "test/auroc", "test/loss", "train/objective", "train/aic"):
        assert metrics[key] == pytest.approx(metrics_r[key], rel=1e-5), key
    np.testing.assert_allclose(coefficients["std_err"], coefficients_r["std_err"], rtol=1e-5)

    numeric = [c for c in frame if c not in ("target", "color", "w")]
    x_train = training.drop(columns=["target", "w"])
    scaler = StandardScaler().fit(x_train[numeric], sample_weight=training["w"])
    onehot = OneHotEncoder(sparse_output=False).fit(x_train[["color"]])
    x = np.hstack([scaler.transform(x_train[numeric]), onehot.transform(x_train[["color"]])])
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000)
    reference.fit(x, training["target"], sample_weight=training["w"])
    np.testing.assert_allclose(weight.numpy()[0], reference.coef_[0], atol=1e-4)
