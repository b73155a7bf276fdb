"""model.C=path: the values start where L1 keeps every weight at zero, each point is the optimum
of its C, and the run leaves path.csv, its figure and the best C's model."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.preprocessing import StandardScaler
from sklearn.svm import l1_min_c

from lrexp import train
from lrexp.path import path_values


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine], ids=["binary", "3 classes"])
def test_the_path_starts_at_scikit_learns_l1_min_c(loader) -> None:
    x, y = loader(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    k = int(y.max()) + 1
    values = path_values(torch.from_numpy(x), torch.from_numpy(y), k, 5)
    assert values[0] == pytest.approx(l1_min_c(x, y, loss="log", fit_intercept=False))
    assert np.allclose(np.diff(np.log10(values)), 1.0)  # four decades in four steps


@pytest.fixture(scope="module")
def path_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    from tests.conftest import run_entry

    root = tmp_path_factory.mktemp("path")
    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(root / "cancer.csv", index=False)
    common = [
        "data=table",
        f"data.path={root / 'cancer.csv'}",
        "data.target=target",
        "model.optimizer=lbfgs",
        "model.tol=1e-7",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]
    run = root / "run"
    assert (
        run_entry(
            train.main, *common, "model.C=path", "model.path_length=4", f"hydra.run.dir={run}"
        )
        == 0
    )
    return run, common


def test_a_path_run_leaves_its_table_figure_and_best_model(path_run) -> None:
    run, _ = path_run
    rows = list(csv.DictReader((run / "path.csv").open()))
    assert len(rows) == 4
    assert {"C", "train/objective", "train/grad_norm", "val/loss", "val/acc"} <= set(rows[0])
    assert all(float(r["train/grad_norm"]) <= 1e-7 for r in rows)  # each point an optimum
    objectives = [float(r["train/objective"]) for r in rows]
    assert objectives == sorted(objectives, reverse=True)  # weaker penalty, lower objective
    metrics = json.loads((run / "metrics.json").read_text())
    best = min(rows, key=lambda r: float(r["val/loss"]))
    assert metrics["path/best_C"] == pytest.approx(float(best["C"]))
    checkpoint = torch.load(next((run / "checkpoints").glob("best-*.ckpt")), weights_only=True)
    assert checkpoint["hyper_parameters"]["C"] == pytest.approx(float(best["C"]))
    assert (run / "figures" / "regularisation_path.png").stat().st_size > 0


def test_refitting_a_path_value_from_scratch_reaches_the_same_objective(
    path_run, tmp_path: Path, run_main
) -> None:
    run, common = path_run
    row = list(csv.DictReader((run / "path.csv").open()))[1]
    single = tmp_path / "single"
    assert run_main(train.main, *common, f"model.C={row['C']}", f"hydra.run.dir={single}") == 0
    metrics = json.loads((single / "metrics.json").read_text())
    assert math.isclose(metrics["train/objective"], float(row["train/objective"]), rel_tol=1e-6)


def test_the_best_points_validation_is_the_runs_and_sgd_walks_the_path_too(
    path_run, tmp_path: Path, run_main
) -> None:
    """L-BFGS' points are scored without a Trainer: the best point's val/loss is the one the
    run's own validation of that optimum gives. SGD's points each take a bare Trainer."""
    run, common = path_run
    rows = list(csv.DictReader((run / "path.csv").open()))
    best = min(rows, key=lambda r: float(r["val/loss"]))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val/loss"] == pytest.approx(float(best["val/loss"]), rel=1e-5)
    sgd = tmp_path / "sgd"
    overrides = ["model.optimizer=sgd", "trainer.max_epochs=3", "model.C=path"]
    overrides += ["model.path_length=3", f"hydra.run.dir={sgd}"]
    assert run_main(train.main, *common, *overrides) == 0
    sgd_rows = list(csv.DictReader((sgd / "path.csv").open()))
    assert len(sgd_rows) == 3 and all(math.isfinite(float(r["val/loss"])) for r in sgd_rows)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["model.path_length=1"], "model.path_length"),
        (["ckpt_path=last"], "leave ckpt_path out"),
    ],
)
def test_a_bad_path_request_is_one_line(
    path_run, tmp_path: Path, run_main, capsys, overrides, words
) -> None:
    run, common = path_run
    code = run_main(train.main, *common, "model.C=path", f"hydra.run.dir={run}", *overrides)
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err
