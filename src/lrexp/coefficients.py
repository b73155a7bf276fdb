"""What a logistic-regression user reads first on a table: each feature's weight, odds ratio and
their Wald inference (lrexp.inference), and the fit's log-likelihood, AIC, BIC and pseudo-R².

Numeric features are standardised, so a weight is the change in log-odds per standard deviation
and exp(weight) the odds ratio per standard deviation; a one-hot feature's odds ratio compares
its category with a row of none of the column's categories (with data.onehot_drop=first: with
the column's first category). The intercept is the log-odds at the training means and the
reference categories. For K classes each class has its own weights (softmax); without a penalty
they are those of each class against the first class (the `reference` column), as statsmodels'
MNLogit reports them.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lrexp.inference import INTERCEPT, Fit, fit_inference

if TYPE_CHECKING:
    import lightning as L

    from lrexp.data.extras import Fitted

log = logging.getLogger(__name__)

COEFFICIENTS_FILE = "coefficients.csv"
COLUMNS = ["class", "feature", "weight", "odds_ratio", "std_err", "z", "p_value", "ci_low"]
COLUMNS += ["ci_high", "reference"]
Row = dict[str, str | float]


def table_fit(fitted: Fitted, datamodule: L.LightningDataModule) -> Fit | None:
    """Inference at the fitted weights on the training split's rows (None without them, e.g. a
    checkpoint tested on a separate test file). The singular or left-out case is logged."""
    if "train" not in datamodule.splits:
        return None
    raw, labels = datamodule.splits["train"]
    x = datamodule.preprocess(raw)
    # Each row's weight in the likelihood: its class weight times its sample weight.
    rows = datamodule.sample_weights("train")
    if fitted.class_weights is not None:
        by_class = fitted.class_weights[labels]
        rows = by_class if rows is None else by_class * rows
    fit = fit_inference(
        x, labels, fitted.weight, fitted.bias, fitted.l2, rows, datamodule.feature_names
    )
    if fitted.l1_ratio:
        why = (
            f"model.l1_ratio={fitted.l1_ratio}: no standard errors (an L1 penalty has no curvature)"
        )
        fit = replace(fit, std_err=None, singular=why)
    if fit.singular is not None:
        log.warning(f"coefficients.csv: {fit.singular}")
    return fit


def coefficient_rows(
    weight: Tensor,
    bias: Tensor,
    feature_names: Sequence[str],
    label_names: Sequence[str],
    fit: Fit | None = None,
    level: float = 0.95,
    reported: Sequence[int] | None = None,
) -> list[Row]:
    """One row per (class, feature), the intercept first, then the largest |weight| first
    within each class; binary models have one class, label 1. With `fit`, its parameters
    (contrasts with a reference class, centred intercepts) and inference at `level`;
    `reported`: the features listed (default all)."""
    if fit is None:
        coef = torch.cat([bias.detach().cpu()[:, None], weight.detach().cpu()], 1)
        classes = [len(label_names) - 1] if len(weight) == 1 else list(range(len(weight)))
        reference, stats = None, {}
    else:
        coef, classes, reference = fit.coef, fit.classes, fit.reference
        stats = fit.intervals(level) if fit.std_err is not None else {}
        if fit.std_err is not None:
            stats["std_err"] = fit.std_err
    rows = []
    for i, label in enumerate(classes):
        shown = range(len(feature_names)) if reported is None else reported
        magnitude = coef[i, 1:].abs().tolist()
        order = sorted(shown, key=lambda j: -magnitude[j])
        for j in [-1, *order]:
            w = float(coef[i, 1 + j])
            row: Row = {
                "class": label_names[label],
                "feature": INTERCEPT if j < 0 else feature_names[j],
                "weight": w,
                "odds_ratio": math.exp(w),
            }
            row |= {key: float(value[i, 1 + j]) for key, value in stats.items()}
            row["reference"] = "" if reference is None else label_names[reference]
            rows.append(row)
    return rows


def table_rows(
    fitted: Fitted, datamodule: L.LightningDataModule
) -> tuple[list[Row], dict[str, float]]:
    """coefficients.csv's rows and the fit statistics for metrics.json (train/aic, ...)."""
    fit = table_fit(fitted, datamodule)
    names = datamodule.feature_names, datamodule.label_names
    reported = datamodule.reported_features()
    rows = coefficient_rows(fitted.weight, fitted.bias, *names, fit, fitted.ci_level, reported)
    return rows, ({} if fit is None else fit.statistics)


def coefficients_csv(rows: list[Row]) -> bytes:
    """The rows as CSV; inference left empty where there is none (singular information)."""
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return table.getvalue().encode()
