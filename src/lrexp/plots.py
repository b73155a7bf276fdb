"""The pictures a run leaves in figures/ and TensorBoard; each function returns a Figure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

if TYPE_CHECKING:
    import lightning as L

    from lrexp.model import LogisticRegression

CHANNEL_NAMES = {1: ("",), 3: ("red", "green", "blue")}


def decision_curve(w: float, b: float, hours: Sequence[float], passed: Sequence[int]) -> Figure:
    """The lecture's result: P(pass | hours) over 0-10 h, the 0.5 line and the data points."""
    x = np.linspace(0, 10, 200)
    p = 1 / (1 + np.exp(-(w * x + b)))
    figure, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, p, label=f"sigmoid({w:.3f}·h {b:+.3f})")
    ax.axhline(0.5, color="red", linestyle="--", linewidth=1, label="P = 0.5")
    ax.scatter(hours, passed, color="black", zorder=3, label="data")
    ax.set_xlabel("Hours")
    ax.set_ylabel("Probability of pass")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    return figure


def weight_map(weight: Tensor, image_shape: tuple[int, int, int], names: tuple[str, str]) -> Figure:
    """The weight vector as an image per colour channel: what the model looks at.

    One symmetric colour scale for all channels, zero at its white centre: red pixels push
    towards label 1, blue ones towards label 0.
    """
    channels = weight.detach().cpu().reshape(image_shape).numpy()
    limit = float(np.abs(channels).max()) or 1.0
    figure, axes = plt.subplots(1, len(channels), figsize=(3.2 * len(channels) + 1, 3.4))
    axes = np.atleast_1d(axes)
    for ax, channel, name in zip(axes, channels, CHANNEL_NAMES[len(channels)], strict=True):
        image = ax.imshow(channel, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(name)
        ax.set_axis_off()
    figure.colorbar(image, ax=list(axes), shrink=0.8, label="weight")
    figure.suptitle(f"weights: red → 1 ({names[1]}), blue → 0 ({names[0]})")
    return figure


def roc_curve(probs: Tensor, labels: Tensor) -> Figure:
    """The test ROC curve with its AUROC (torchmetrics' BinaryROC)."""
    from torchmetrics.classification import BinaryROC

    roc = BinaryROC(sync_on_compute=False)  # drawn on rank 0 alone, from the whole test split
    roc.update(probs, labels.long())
    figure, ax = roc.plot(score=True)
    ax.set_title("test ROC")
    return figure


def confusion_matrix(probs: Tensor, labels: Tensor, names: tuple[str, str]) -> Figure:
    """Test counts by true and predicted label at P = 0.5 (torchmetrics' BinaryConfusionMatrix)."""
    from torchmetrics.classification import BinaryConfusionMatrix

    matrix = BinaryConfusionMatrix(sync_on_compute=False)  # rank 0 alone, whole test split
    matrix.update(probs, labels.long())
    figure, ax = matrix.plot(labels=[f"0: {names[0]}", f"1: {names[1]}"])
    ax.set_title("test confusion matrix")
    return figure


def confidently_wrong(
    images: Tensor, labels: Tensor, probs: Tensor, names: tuple[str, str], count: int = 16
) -> Figure:
    """The misclassified test images the model was surest about, with their P(label 1)."""
    wrong = ((probs >= 0.5).float() != labels).nonzero().squeeze(1)
    worst = wrong[(probs[wrong] - labels[wrong]).abs().argsort(descending=True)][:count]
    cols = min(max(len(worst), 1), 8)
    rows = max(math.ceil(len(worst) / cols), 1)
    figure, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, worst.tolist(), strict=False):
        image = images[i].permute(1, 2, 0).cpu().numpy()
        ax.imshow(image.squeeze(2) if image.shape[2] == 1 else image, cmap="gray")
        ax.set_title(f"P(1)={probs[i]:.2f}\nlabel {int(labels[i])}", fontsize=8)
    if not len(worst):
        axes[0, 0].text(0.5, 0.5, "no test image misclassified", ha="center", va="center")
    figure.suptitle(
        f"most confidently wrong test images ({len(wrong)} wrong in all; label 1: {names[1]})"
    )
    return figure


def run_figures(model: LogisticRegression, datamodule: L.LightningDataModule) -> dict[str, Figure]:
    """Every picture for a fitted (and tested) model: the decision curve for the toy data; for
    images the weight map and the test set's ROC, confusion matrix and worst mistakes."""
    from lrexp.data.toy import ToyDataModule

    if isinstance(datamodule, ToyDataModule):
        hours, passed = datamodule.hparams.hours, datamodule.hparams.passed
        return {"decision_curve": decision_curve(model.weight.item(), model.bias, hours, passed)}
    images, labels = datamodule.splits["test"]
    with torch.no_grad():
        probs = model(datamodule.preprocess(images.to(model.device))).cpu()
    names = label_names(datamodule)
    return {
        "weights": weight_map(model.weight, datamodule.image_shape, names),
        "roc": roc_curve(probs, labels),
        "confusion_matrix": confusion_matrix(probs, labels, names),
        "confidently_wrong": confidently_wrong(images, labels, probs, names),
    }


def label_names(datamodule: L.LightningDataModule) -> tuple[str, str]:
    """('names of label 0', 'names of label 1') from the classes the data module selected."""
    return tuple(  # type: ignore[return-value]
        "/".join(datamodule.class_names[i] for i in classes)
        for classes in (datamodule.negative, datamodule.positive)
    )
