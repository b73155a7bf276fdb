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


def scored(metrics: EpochMetrics, probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    metrics.update("test", probs, labels, torch.tensor([0.3]), torch.tensor([float(len(labels))]))
    return metrics.compute("test")


def test_a_metric_a_split_cannot_measure_is_left_out_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No positive rows: AUROC is undefined, and F1 too when nothing is predicted positive
    (torchmetrics would report 0.0 for both); accuracy, ECE and the loss are measured."""
    metrics = EpochMetrics(2)
    negatives = torch.zeros(8, dtype=torch.long)
    values = scored(metrics, torch.full((8,), 0.2), negatives)
    assert sorted(values) == ["test/acc", "test/ece", "test/loss"]
    assert values["test/acc"] == 1.0
    assert "test/auroc is left out of the metrics: the split has no rows of label(s) [1]" in (
        caplog.text
    )
    assert "test/f1 is left out" in caplog.text
    scored(metrics, torch.full((8,), 0.2), negatives)  # the next epoch: no second warning
    assert caplog.text.count("test/auroc is left out") == 1
    # A positive prediction makes F1 measurable: 0 (one false positive, no true one).
    values = scored(metrics, torch.tensor([0.9, 0.2]), torch.tensor([0, 0]))
    assert values["test/f1"] == 0.0 and "test/auroc" not in values


def test_k_classes_leave_out_auroc_and_the_accuracy_of_a_class_without_rows() -> None:
    metrics = EpochMetrics(3, ["a", "b", "c"])
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    values = scored(metrics, probs, torch.tensor([0, 1, 0]))
    assert "test/auroc" not in values and "test/acc/c" not in values
    assert values["test/acc/a"] == 1.0 and values["test/acc/b"] == 1.0
    assert (
        values["test/f1"]
        == multiclass_f1_score(
            probs, torch.tensor([0, 1, 0]), num_classes=3, average="macro"
        ).item()
    )


def test_a_split_without_rows_has_no_scores_and_no_finite_loss() -> None:
    metrics = EpochMetrics(2)
    values = metrics.compute("val")
    assert list(values) == ["val/loss"]  # NaN: kept for the fitting callbacks only
    assert metrics.finite(values) == {}
    assert metrics.finite({"val/loss": float("inf"), "val/acc": 0.5}) == {"val/acc": 0.5}
