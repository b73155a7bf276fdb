"""coefficients.csv's rows: the intercept first, then the largest |weight|, the inference beside
each weight, empty cells where there is none."""

from __future__ import annotations

import csv
import io
import math

import pytest
import torch

from lrexp.coefficients import COLUMNS, coefficient_rows, coefficients_csv
from lrexp.inference import INTERCEPT, Fit


def fit(coef: list[list[float]], std_err: list[list[float]] | None, **kw) -> Fit:
    se = None if std_err is None else torch.tensor(std_err, dtype=torch.float64)
    defaults = {"classes": [1], "reference": None, "singular": None, "statistics": {}}
    return Fit(coef=torch.tensor(coef, dtype=torch.float64), std_err=se, **(defaults | kw))


def test_rows_put_the_intercept_first_then_the_largest_weights_with_their_inference() -> None:
    result = fit([[0.5, -2.0, 1.0]], [[0.25, 1.0, 0.5]])
    rows = coefficient_rows(torch.zeros(1, 2), torch.zeros(1), ["a", "b"], ["no", "yes"], result)
    assert [r["feature"] for r in rows] == [INTERCEPT, "a", "b"]
    assert {r["class"] for r in rows} == {"yes"}
    a = rows[1]
    assert a["weight"] == -2.0 and a["odds_ratio"] == pytest.approx(math.exp(-2.0))
    assert a["z"] == -2.0 and a["std_err"] == 1.0
    assert a["p_value"] == pytest.approx(0.04550026389635842, rel=1e-12)  # 2 (1 - Φ(2))
    assert (a["ci_low"], a["ci_high"]) == pytest.approx(
        (-2 - 1.959963984540054, -2 + 1.96), abs=1e-3
    )
    assert rows[0]["p_value"] == pytest.approx(0.04550026389635842, rel=1e-12)


def test_the_level_sets_the_interval_width() -> None:
    result = fit([[0.0, 1.0]], [[1.0, 1.0]])
    (_, row) = coefficient_rows(torch.zeros(1, 1), torch.zeros(1), ["a"], ["0", "1"], result, 0.5)
    assert row["ci_high"] - 1.0 == pytest.approx(0.6744897501960817, rel=1e-12)  # Φ⁻¹(0.75)


def test_k_classes_against_a_reference_name_it_in_every_row() -> None:
    result = fit([[0.0, 1.0], [0.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]], classes=[1, 2], reference=0)
    names = ["setosa", "versicolor", "virginica"]
    rows = coefficient_rows(torch.zeros(3, 1), torch.zeros(3), ["x"], names, result)
    assert [r["class"] for r in rows] == ["versicolor"] * 2 + ["virginica"] * 2
    assert {r["reference"] for r in rows} == {"setosa"}


def test_no_inference_leaves_its_cells_empty_in_the_csv() -> None:
    result = fit([[0.1, 3.0]], None, singular="singular information, ...: a")
    rows = coefficient_rows(torch.zeros(1, 1), torch.zeros(1), ["a"], ["0", "1"], result)
    table = list(csv.DictReader(io.StringIO(coefficients_csv(rows).decode())))
    assert list(table[0]) == COLUMNS
    assert [r["feature"] for r in table] == [INTERCEPT, "a"]
    assert all(r[key] == "" for r in table for key in ("std_err", "z", "p_value", "ci_low"))
    assert float(table[1]["weight"]) == 3.0


def test_without_a_fit_the_rows_are_the_models_weights_and_bias() -> None:
    """A checkpoint tested on a separate test file has no training rows to take inference on."""
    weight, bias = torch.tensor([[1.0, -3.0]]), torch.tensor([0.5])
    rows = coefficient_rows(weight, bias, ["a", "b"], ["0", "1"])
    assert [(r["feature"], r["weight"]) for r in rows] == [
        (INTERCEPT, 0.5),
        ("b", -3.0),
        ("a", 1.0),
    ]
    assert "std_err" not in rows[0]
