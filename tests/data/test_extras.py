"""The DataModule contract for what a kind of data adds to a run (lrexp.data.extras), and that
the kind of data is known only in data/."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

import lrexp
from lrexp.coefficients import COEFFICIENTS_FILE
from lrexp.data.extras import Fitted, RunExtras
from lrexp.data.mnist import MNISTDataModule
from lrexp.data.table import TableDataModule
from lrexp.data.toy import ToyDataModule
from lrexp.inference import INTERCEPT


def fitted_on(test_labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> Fitted:
    """A fit whose test probabilities put label 1 at 0.8 wherever it is the true label."""
    probs = torch.where(test_labels == 1, 0.8, 0.3)
    return Fitted(weight, bias, test_probs=probs, test_predicted=(probs >= 0.5).long())


def test_the_toy_answers_the_lectures_question() -> None:
    datamodule = ToyDataModule()
    w, b = 2.0, -5.0
    fit = fitted_on(datamodule.y, torch.tensor([[w]]), torch.tensor([b]))
    metrics = datamodule.run_metrics(fit)
    assert metrics == {
        "w": 2.0,
        "b": -5.0,
        "p_pass_at_4h": pytest.approx(1 / (1 + math.exp(-3.0))),
        "boundary_h": 2.5,
    }
    assert set(datamodule.run_figures(fit)) == {"decision_curve"}
    assert datamodule.run_files(fit) == {}


def test_a_flat_toy_model_has_no_boundary() -> None:
    datamodule = ToyDataModule()
    metrics = datamodule.run_metrics(fitted_on(datamodule.y, torch.zeros(1, 1), torch.zeros(1)))
    assert math.isnan(metrics["boundary_h"])  # left out of metrics.json (lrexp.rundir.measured)


def test_a_table_adds_its_coefficients(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    rows = [f"{i % 4},{'xy'[i % 2]},{i % 2}" for i in range(40)]
    path.write_text("\n".join(["a,c,y", *rows]) + "\n")
    datamodule = TableDataModule(str(path), target="y")
    datamodule.setup("fit")
    weight = torch.tensor([[0.5, -2.0, 1.0]])
    _, labels = datamodule.splits["test"]
    fit = fitted_on(labels, weight, torch.zeros(1))
    files = datamodule.run_files(fit)
    assert list(files) == [COEFFICIENTS_FILE]
    lines = files[COEFFICIENTS_FILE].decode().splitlines()
    header = "class,feature,weight,odds_ratio,std_err,z,p_value,ci_low,ci_high,reference"
    assert lines[0] == header
    # The intercept, then the largest |w| first; c's two categories sum to the intercept, so
    # the information is singular and the weights stay the fit's, without inference.
    assert lines[1].startswith(f"1,{INTERCEPT},")
    assert lines[2].startswith(f"1,{datamodule.feature_names[1]},-2.0,{math.exp(-2.0)}")
    assert lines[2].endswith(",,,,,,")
    figures = {"coefficients", "confusion_matrix", "reliability", "roc"}
    assert set(datamodule.run_figures(fit)) == figures
    # The fit statistics of the training rows, for metrics.json.
    assert set(datamodule.run_metrics(fit)) == {
        "train/log_likelihood",
        "train/aic",
        "train/bic",
        "train/pseudo_r2",
    }


def test_images_add_their_weights_and_worst_mistakes(mnist_root: Path) -> None:
    datamodule = MNISTDataModule(str(mnist_root), positive=[3], negative=[8])
    datamodule.setup("fit")
    datamodule.setup("test")
    _, labels = datamodule.splits["test"]
    fit = fitted_on(labels, torch.randn(1, 784), torch.zeros(1))
    figures = datamodule.run_figures(fit)
    assert set(figures) == {
        "weights",
        "confidently_wrong",
        "confusion_matrix",
        "reliability",
        "roc",
    }
    texts = [t.get_text() for ax in figures["confidently_wrong"].axes for t in ax.texts]
    assert texts == ["no test image misclassified"]  # its predictions are the true labels


def test_every_kind_of_data_keeps_the_contract() -> None:
    for kind in (ToyDataModule, TableDataModule, MNISTDataModule):
        assert issubclass(kind, RunExtras)


def test_the_kind_of_data_is_known_only_in_data() -> None:
    """Outside data/, no module asks which kind of data a run has: it asks the contract."""
    source = Path(lrexp.__file__).parent
    asking = re.compile(r"is_toy|isinstance\([^)]*(Toy|Table|Vision)DataModule|hasattr\(")
    found = [
        f"{path.relative_to(source)}:{n}"
        for path in source.rglob("*.py")
        if "data" not in path.relative_to(source).parts[:1]
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if asking.search(line)
    ]
    assert found == []
