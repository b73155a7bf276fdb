"""What a logistic-regression user reads first on a table: each feature's weight and odds ratio.

Numeric features are standardised, so a weight is the change in log-odds per standard deviation
and exp(weight) the odds ratio per standard deviation; a one-hot feature's odds ratio compares
its category with a row of none of the column's categories. For K classes each class has its
own weights (softmax: log-odds of that class against the others' reference).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

from torch import Tensor

COEFFICIENTS_FILE = "coefficients.csv"


def coefficient_rows(
    weight: Tensor, feature_names: Sequence[str], label_names: Sequence[str]
) -> list[dict[str, str | float]]:
    """One row per (class, feature), largest |weight| first within each class; binary models
    have one class, label 1."""
    classes = [label_names[-1]] if len(weight) == 1 else list(label_names)
    rows = []
    for name, weights in zip(classes, weight.detach().cpu().tolist(), strict=True):
        ranked = sorted(zip(feature_names, weights, strict=True), key=lambda p: -abs(p[1]))
        rows += [
            {"class": name, "feature": f, "weight": w, "odds_ratio": math.exp(w)} for f, w in ranked
        ]
    return rows


def coefficients_csv(rows: list[dict[str, str | float]]) -> bytes:
    table = io.StringIO()
    writer = csv.DictWriter(
        table, fieldnames=["class", "feature", "weight", "odds_ratio"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return table.getvalue().encode()
