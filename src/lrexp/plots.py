"""The pictures a run leaves in figures/ and TensorBoard; each function returns a Figure. Which
pictures a run gets is its data's choice (lrexp.data.extras.RunExtras.run_figures).

Figures are made with matplotlib's object-oriented API (matplotlib.figure.Figure), which needs
no GUI backend and keeps no global figure registry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

CHANNEL_NAMES = {1: ("",), 3: ("red", "green", "blue")}


def decision_curve(w: float, b: float, hours: Sequence[float], passed: Sequence[int]) -> Figure:
    """The lecture's result: P(pass | hours) over 0-10 h, the 0.5 line and the data points."""
    x = np.linspace(0, 10, 200)
    p = 1 / (1 + np.exp(-(w * x + b)))
    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    ax.plot(x, p, label=f"sigmoid({w:.3f}·h {b:+.3f})")
    ax.axhline(0.5, color="red", linestyle="--", linewidth=1, label="P = 0.5")
    ax.scatter(hours, passed, color="black", zorder=3, label="data")
    ax.set_xlabel("Hours")
    ax.set_ylabel("Probability of pass")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    return figure


def weight_map(weight: Tensor, image_shape: tuple[int, int, int], names: Sequence[str]) -> Figure:
    """The binary model's weight vector as an image per colour channel: what the model looks at.

    One symmetric colour scale for all channels, zero at its white centre: red pixels push
    towards label 1, blue ones towards label 0.
    """
    channels = weight.detach().cpu().reshape(image_shape).numpy()
    limit = float(np.abs(channels).max()) or 1.0
    figure = Figure(figsize=(3.2 * len(channels) + 1, 3.4))
    axes = np.atleast_1d(figure.subplots(1, len(channels)))
    for ax, channel, name in zip(axes, channels, CHANNEL_NAMES[len(channels)], strict=True):
        image = ax.imshow(channel, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(name)
        ax.set_axis_off()
    figure.colorbar(image, ax=list(axes), shrink=0.8, label="weight")
    figure.suptitle(f"weights: red → 1 ({names[1]}), blue → 0 ({names[0]})")
    return figure


def weight_templates(
    weight: Tensor, image_shape: tuple[int, int, int], names: Sequence[str]
) -> Figure:
    """The softmax model's K weight vectors, one image per class, on one scale centred at 0.

    Grey images: red pixels raise the class's logit, blue ones lower it. Colour images (CIFAR-10)
    are shown as RGB, each channel mapped from [-limit, limit] to [0, 1]: mid-grey is zero.
    """
    templates = weight.detach().cpu().reshape(len(weight), *image_shape).numpy()
    limit = float(np.abs(templates).max()) or 1.0
    cols = min(len(templates), 5)
    rows = math.ceil(len(templates) / cols)
    figure = Figure(figsize=(2.2 * cols + 1, 2.4 * rows + 0.4))
    axes = np.atleast_2d(figure.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    image = None
    for ax, template, name in zip(axes.flat, templates, names, strict=False):
        if template.shape[0] == 1:
            image = ax.imshow(template[0], cmap="RdBu_r", vmin=-limit, vmax=limit)
        else:
            ax.imshow(np.clip(0.5 + template.transpose(1, 2, 0) / (2 * limit), 0, 1))
        ax.set_title(name, fontsize=9)
    if image is not None:
        figure.colorbar(image, ax=list(axes.flat), shrink=0.8, label="weight")
    figure.suptitle(f"weight templates (one colour scale, |w| ≤ {limit:.3g})")
    return figure


def roc_curve(probs: Tensor, labels: Tensor) -> Figure:
    """The test ROC curve with its AUROC (torchmetrics' BinaryROC)."""
    from torchmetrics.classification import BinaryROC

    roc = BinaryROC(sync_on_compute=False)  # drawn on rank 0 alone, from the whole test split
    roc.update(probs, labels)
    figure = Figure(figsize=(5, 5))
    ax = figure.subplots()
    roc.plot(score=True, ax=ax)
    ax.set_title("test ROC")
    return figure


def confusion_matrix(probs: Tensor, labels: Tensor, names: Sequence[str]) -> Figure:
    """Test counts by true and predicted label (torchmetrics' confusion matrices; two labels:
    predicted at P = 0.5)."""
    from torchmetrics.classification import BinaryConfusionMatrix, MulticlassConfusionMatrix

    if probs.dim() == 1:
        matrix = BinaryConfusionMatrix(sync_on_compute=False)  # rank 0 alone, whole test split
        ticks = [f"0: {names[0]}", f"1: {names[1]}"]
    else:
        matrix = MulticlassConfusionMatrix(len(names), sync_on_compute=False)
        ticks = list(names)
    matrix.update(probs, labels)
    size = max(4.5, 0.6 * len(ticks) + 2)
    figure = Figure(figsize=(size, size))
    ax = figure.subplots()
    matrix.plot(ax=ax, labels=ticks)
    ax.tick_params(axis="x", labelrotation=45 if len(ticks) > 2 else 0)
    ax.set_title("test confusion matrix")
    return figure


def confidently_wrong(
    images: Tensor,
    labels: Tensor,
    probs: Tensor,
    predicted: Tensor,
    names: Sequence[str],
    count: int = 16,
) -> Figure:
    """The misclassified test images the model was surest about, with the true and predicted
    label names and the predicted one's probability."""
    if probs.dim() == 1:
        confidence = torch.where(predicted == 1, probs, 1 - probs)
    else:
        confidence = probs.max(1).values
    wrong = (predicted != labels).nonzero().squeeze(1)
    worst = wrong[confidence[wrong].argsort(descending=True)][:count]
    cols = min(max(len(worst), 1), 8)
    rows = max(math.ceil(len(worst) / cols), 1)
    figure = Figure(figsize=(1.7 * cols, 2.0 * rows + 0.4))
    axes = np.atleast_2d(figure.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, worst.tolist(), strict=False):
        image = images[i].permute(1, 2, 0).cpu().numpy()
        ax.imshow(image.squeeze(2) if image.shape[2] == 1 else image, cmap="gray")
        true, guess = names[int(labels[i])], names[int(predicted[i])]
        title = f"true {true}\npred {guess} {confidence[i]:.2f}"
        ax.set_title(title, fontsize=7)
    if not len(worst):
        axes[0, 0].text(0.5, 0.5, "no test image misclassified", ha="center", va="center")
    figure.suptitle(f"most confidently wrong test images ({len(wrong)} wrong in all)")
    return figure


def coefficients(rows: Sequence[dict], top: int = 20) -> Figure:
    """The largest weights of each class as horizontal bars, with their odds ratios and, where
    coefficients.csv has them, their confidence intervals as error bars (the intercept left out:
    it is no feature's effect)."""
    from lrexp.inference import INTERCEPT

    rows = [r for r in rows if r["feature"] != INTERCEPT]
    classes = list(dict.fromkeys(r["class"] for r in rows))
    figure = Figure(figsize=(6 * min(len(classes), 3), 0.3 * top + 1.5), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, min(len(classes), 3)))
    for ax, name in zip(axes, classes, strict=False):
        shown = [r for r in rows if r["class"] == name][:top][::-1]
        weights = np.array([r["weight"] for r in shown])
        intervals = all("ci_low" in r for r in shown)
        errors = (
            np.array([[r["weight"] - r["ci_low"], r["ci_high"] - r["weight"]] for r in shown]).T
            if intervals
            else None
        )
        ax.barh(
            [r["feature"] for r in shown],
            weights,
            xerr=errors,
            error_kw={"ecolor": "black", "capsize": 2, "linewidth": 0.8},
            color=["tab:red" if w > 0 else "tab:blue" for w in weights],
        )
        for i, r in enumerate(shown):
            # Beyond the interval's outer end, where no bar or error bar lies.
            right = r["weight"] >= 0
            end = r.get("ci_high" if right else "ci_low", r["weight"])
            ax.annotate(
                f" ×{r['odds_ratio']:.3g} ",
                (end, i),
                va="center",
                ha="left" if right else "right",
                fontsize=7,
            )
        ax.axvline(0, color="black", linewidth=0.8)
        ax.margins(x=0.15)  # room for the odds ratios
        against = f" vs {shown[0]['reference']}" if shown and shown[0].get("reference") else ""
        ax.set_title(f"{name}{against}: largest weights (odds ratio per unit)")
        unit = "weight (log-odds per standardised unit)"
        ax.set_xlabel(f"{unit}, bars: confidence interval" if intervals else unit)
    return figure


def reliability_bins(probs: Tensor, labels: Tensor, bins: int = 15) -> dict[str, Tensor]:
    """Equal-width bins of the predicted probability (two labels: P(label 1); K classes: the
    top label's) with each bin's mean prediction, observed frequency (of label 1, or of the top
    label being right) and count: torchmetrics' calibration-error binning (15 bins), so
    Σ count·|frequency - confidence| / n is its ECE."""
    probs, labels = probs.detach().double().cpu(), labels.cpu()
    if probs.dim() == 1:
        confidence, hit = probs, labels.double()
    else:
        confidence, top = probs.max(1)
        hit = (top == labels).double()
    index = (confidence * bins).floor().long().clamp(0, bins - 1)
    counts = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(hit))
    seen = counts.clamp_min(1)
    return {
        "confidence": torch.zeros(bins, dtype=torch.float64).index_add_(0, index, confidence)
        / seen,
        "frequency": torch.zeros(bins, dtype=torch.float64).index_add_(0, index, hit) / seen,
        "count": counts,
    }


def reliability_diagram(probs: Tensor, labels: Tensor, bins: int = 15) -> Figure:
    """Predicted against observed frequency per bin (the diagonal is perfect calibration), the
    rows in each bin below, and the expected calibration error in the title."""
    binned = reliability_bins(probs, labels, bins)
    count, used = binned["count"].numpy(), binned["count"].numpy() > 0
    confidence, frequency = binned["confidence"].numpy(), binned["frequency"].numpy()
    ece = float((count * np.abs(frequency - confidence)).sum() / count.sum())
    binary = probs.dim() == 1
    figure = Figure(figsize=(5, 6))
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    top.plot(confidence[used], frequency[used], marker="o", label="test bins")
    top.set_ylabel("observed frequency of label 1" if binary else "accuracy of the top label")
    top.set_ylim(-0.02, 1.02)
    top.grid(True, alpha=0.3)
    top.legend(loc="upper left")
    top.set_title(f"test reliability ({bins} bins), ECE {ece:.4f}")
    edges = np.linspace(0, 1, bins + 1)
    bottom.bar(edges[:-1], count, width=1 / bins, align="edge", color="tab:grey")
    for left, n in zip(edges[:-1], count, strict=True):
        if n:
            bottom.annotate(
                f"{int(n)}", (left + 0.5 / bins, n), ha="center", va="bottom", fontsize=6
            )
    bottom.set_ylabel("rows")
    bottom.set_xlabel("predicted P(label 1)" if binary else "top-label confidence")
    bottom.set_xlim(0, 1)
    return figure
