"""data.categorical=hash and data.text: scikit-learn's FeatureHasher on "column=value", bags of
words scaled to unit norm, no category list, unseen values just hashing; and a hashed run's
optimum is scikit-learn's LogisticRegression on the same hashed matrix."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from sklearn.feature_extraction import FeatureHasher
from sklearn.utils import murmurhash3_32

from lrexp.data.table_hashing import Encoding, buckets, column_name, text_rows
from lrexp.data.wide_features import as_dense
from lrexp.errors import LrexpError
from tests.data.test_table import fitted, write


def test_a_strings_column_is_murmurhash3s_absolute_value_modulo_2_to_the_bits() -> None:
    strings = ["user=u1", "user=u2", "color=red", "review=great", ""]
    expected = [abs(murmurhash3_32(s, seed=0)) % 2**18 for s in strings]
    assert buckets(strings, 18).tolist() == expected
    assert buckets(strings, 3).max() < 8


def test_a_texts_tokens_are_counted_and_scaled_to_unit_norm() -> None:
    column = pa.chunked_array([["Great movie, GREAT!", "", None, "a b c", "Not bad at all"]])
    rows = as_dense(text_rows(column, "review", 18, ngram_max=2))
    great, movie, pair = buckets(["review=great", "review=movie", "review=great movie"], 18)
    # great x2, movie, "great movie", "movie great": counts (2, 1, 1, 1), norm sqrt(7)
    assert rows[0, great] == pytest.approx(2 / math.sqrt(7))
    assert rows[0, movie] == pytest.approx(1 / math.sqrt(7))
    assert rows[0, pair] == pytest.approx(1 / math.sqrt(7))
    assert rows[0].norm() == pytest.approx(1.0)
    assert rows[1:4].abs().sum() == 0  # empty, missing, and one-letter words only
    assert rows[4].norm() == pytest.approx(1.0) and (rows[4] > 0).sum() == 4 + 3


def test_the_keys_are_checked_in_one_line() -> None:
    for arguments, words in [
        (("dense", 18, None, 1), "data.categorical='dense'"),
        (("hash", 31, None, 1), "data.hash_bits=31"),
        (("hash", True, None, 1), "data.hash_bits=True"),
        (("hash", 18, None, 3), "data.ngram_max=3"),
        (("hash", 18, ["t", "t"], 1), "lists a column twice"),
    ]:
        with pytest.raises(LrexpError, match=words):
            Encoding.of(*arguments)
    assert Encoding.of("hash", 20, "review", 2).text == ("review",)


def ids_frame(rows: int = 800, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.minimum(rng.zipf(1.4, rows), 300)
    city = rng.choice(["paris", "rome", "oslo"], rows)
    effect = rng.normal(size=301)
    a = rng.normal(size=rows)
    logit = a + effect[ids] + (city == "rome")
    target = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"a": a, "user": [f"u{i}" for i in ids], "city": city, "target": target})


def test_hashed_features_are_feature_hashers_beside_the_standardised_numbers(
    tmp_path: Path,
) -> None:
    frame = ids_frame()
    datamodule = fitted(write(frame, tmp_path / "ids.csv"), categorical="hash", hash_bits=10)
    assert "categories" not in datamodule.state or not datamodule.state["categories"]
    assert datamodule.in_features == 1 + 2**10
    train = frame.iloc[datamodule.split_rows["train"]]
    hasher = FeatureHasher(n_features=2**10, input_type="string", alternate_sign=False)
    expected = hasher.transform(
        [[f"user={u}", f"city={c}"] for u, c in zip(train["user"], train["city"], strict=True)]
    ).toarray()
    x = as_dense(datamodule.preprocess(datamodule.splits["train"][0]))
    np.testing.assert_array_equal(x[:, 1:].numpy(), expected)
    a = train["a"].to_numpy()
    np.testing.assert_allclose(x[:, 0].numpy(), (a - a.mean()) / a.std(), atol=1e-5)
    # coefficients.csv's names: a bucket of one training value is that value
    names = datamodule.feature_names
    rome = buckets(["city=rome"], 10)[0]
    assert "city=rome" in names[1 + rome]


def test_an_unseen_value_at_predict_time_just_hashes(tmp_path: Path) -> None:
    frame = ids_frame()
    datamodule = fitted(write(frame, tmp_path / "ids.csv"), categorical="hash", hash_bits=12)
    new = frame.drop(columns="target").iloc[:2].copy()
    new["user"] = ["never-seen", "u1"]
    write(new, tmp_path / "new.csv")
    _, x = datamodule.encode_inputs(str(tmp_path / "new.csv"))
    dense = as_dense(x)
    unseen, seen = buckets(["user=never-seen", "user=u1"], 12)
    assert dense[0, 1 + unseen] == 1 and dense[1, 1 + seen] == 1


def test_collisions_share_a_column_named_by_its_most_frequent_values() -> None:
    values = {3: ["user=u1", "user=u9", "city=oslo"]}
    assert column_name(3, values) == "bucket 3: user=u1 | user=u9 | city=oslo"
    assert column_name(4, {4: ["great"]}) == "great"
    assert column_name(5, values) == "bucket 5"


def test_a_hashed_run_reaches_scikit_learns_optimum_on_the_hashed_matrix(
    tmp_path: Path, run_main
) -> None:
    """lbfgs, C=1 on hashed ids and a text column: the test probabilities are those of
    scikit-learn's LogisticRegression(C=1) on the same features (StandardScaler + hashed);
    export refuses the hashed model in one line."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import normalize

    from lrexp import export, predict, train

    frame = ids_frame()
    words = np.array(["good", "bad", "fine", "dull", "the", "a", "plot"])
    rng = np.random.default_rng(1)
    frame["note"] = [
        " ".join(rng.choice(words, 4)) + (" good" if t else " bad") * (rng.random() < 0.5)
        for t in frame["target"]
    ]
    path = write(frame, tmp_path / "ids.parquet")
    run = tmp_path / "run"
    keys = ["data.categorical=hash", "data.hash_bits=12", "data.text=[note]"]
    overrides = ["data=table", f"data.path={path}", "data.target=target", *keys, "logger=none"]
    overrides += ["model.optimizer=lbfgs", "model.C=1", "model.tol=1e-7"]
    overrides += ["trainer.max_epochs=3", "trainer.enable_progress_bar=false"]
    assert run_main(train.main, *overrides, f"hydra.run.dir={run}") == 0

    rows = fitted(path, categorical="hash", hash_bits=12, text=["note"]).split_rows
    hasher = FeatureHasher(n_features=2**12, input_type="string", alternate_sign=False)

    def design(part: pd.DataFrame, a_mean: float, a_std: float) -> np.ndarray:
        ids = hasher.transform(
            [[f"user={u}", f"city={c}"] for u, c in zip(part["user"], part["city"], strict=True)]
        )
        notes = normalize(
            hasher.transform([[f"note={w}" for w in n.split() if len(w) > 1] for n in part["note"]])
        )
        return np.hstack(
            [((part["a"] - a_mean) / a_std).to_numpy()[:, None], (ids + notes).toarray()]
        )

    train_rows, test_rows = frame.iloc[rows["train"]], frame.iloc[rows["test"]]
    a_mean, a_std = train_rows["a"].mean(), train_rows["a"].std(ddof=0)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000)
    reference.fit(design(train_rows, a_mean, a_std), train_rows["target"])
    expected = reference.predict_proba(design(test_rows, a_mean, a_std))[:, 1]

    write(test_rows.drop(columns="target"), tmp_path / "test_rows.csv")
    out = tmp_path / "predict"
    ckpt = f"ckpt_path={run / 'checkpoints/last.ckpt'}"
    inputs = f"inputs={tmp_path / 'test_rows.csv'}"
    assert run_main(predict.main, ckpt, inputs, f"hydra.run.dir={out}") == 0
    predicted = pd.read_csv(out / "predictions.csv")["p_label_1"].to_numpy()
    np.testing.assert_allclose(predicted, expected, atol=2e-3)

    coefficients = pd.read_csv(run / "coefficients.csv")
    assert {"good", "bad", "city=rome"} <= set(coefficients["feature"])
    assert coefficients["std_err"].isna().all()  # 4098 parameters: no inference
    assert (run / "figures" / "tokens.png").is_file()
    assert run_main(export.main, ckpt, f"hydra.run.dir={tmp_path / 'export'}") == 2
    assert (
        torch.load(run / "checkpoints/last.ckpt", weights_only=True)["TableDataModule"][
            "categorical"
        ]
        == "hash"
    )
