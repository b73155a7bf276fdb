"""Epoch metrics: torchmetrics' values, for two labels and for K classes."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_calibration_error,
    binary_f1_score,
    multiclass_accuracy,
    multiclass_auroc,
    multiclass_calibration_error,
    multiclass_f1_score,
)

from lrexp.metrics import EpochMetrics


def test_unchecked_binary_metrics_equal_torchmetrics_checked_ones() -> None:
    """The stage metrics skip torchmetrics' input checks (validate_args=False); same values."""
    generator = torch.Generator().manual_seed(0)
    probs, labels = (
        torch.rand(96, generator=generator),
        torch.randint(2, (96,), generator=generator),
    )
    metrics = EpochMetrics(2)
    for half in (slice(0, 48), slice(48, 96)):  # two updates, as two groups would
        metrics.update("val", probs[half], labels[half], torch.tensor([0.5]), torch.tensor([48.0]))
    values = metrics.compute("val")
    assert values["val/acc"] == binary_accuracy(probs, labels).item()
    assert values["val/auroc"] == binary_auroc(probs, labels).item()
    assert values["val/f1"] == binary_f1_score(probs, labels).item()
    assert values["val/ece"] == binary_calibration_error(probs, labels).item()
    assert values["val/loss"] == 0.5


def test_k_class_metrics_are_macro_with_top_label_ece_and_per_class_accuracy() -> None:
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(90, 3, generator=generator).softmax(1)
    labels = torch.randint(3, (90,), generator=generator)
    metrics = EpochMetrics(3, ["cat", "dog", "frog"])
    metrics.update("test", probs, labels, torch.tensor([1.0, 3.0]), torch.tensor([30.0, 60.0]))
    values = metrics.compute("test")
    assert values["test/acc"] == multiclass_accuracy(probs, labels, 3, average="micro").item()
    assert values["test/f1"] == multiclass_f1_score(probs, labels, 3, average="macro").item()
    assert values["test/auroc"] == multiclass_auroc(probs, labels, 3, average="macro").item()
    assert values["test/ece"] == multiclass_calibration_error(probs, labels, 3).item()
    per_class = multiclass_accuracy(probs, labels, 3, average="none").tolist()
    assert [values[f"test/acc/{n}"] for n in ("cat", "dog", "frog")] == per_class
    assert values["test/loss"] == pytest.approx((1.0 * 30 + 3.0 * 60) / 90)  # by minibatch size
