"""Epoch metrics of each stage (torchmetrics), computed once per epoch and handed to the loggers.

Names are the same for two labels and for K classes: <stage>/acc, auroc, f1 (macro for K),
ece (top-label for K), loss; for K classes also <stage>/acc/<class>, the per-class accuracy.
torchmetrics' compute() syncs the states across DDP ranks, so every rank publishes the metrics
of the whole split.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric, MetricCollection, classification

from lrexp.lightning_fast import publish_to_trainer

STAGES = ("train", "val", "test")


def classification_metrics(num_classes: int) -> dict[str, Metric]:
    """validate_args=False: the inputs are probabilities and label indices by construction, so
    torchmetrics' per-update input checks (a torch.unique per metric) would only cost time."""
    unchecked = {"validate_args": False}
    if num_classes == 2:
        return {
            "acc": classification.BinaryAccuracy(**unchecked),
            "auroc": classification.BinaryAUROC(**unchecked),
            "f1": classification.BinaryF1Score(**unchecked),
            "ece": classification.BinaryCalibrationError(**unchecked),
        }
    k = {"num_classes": num_classes, **unchecked}
    return {
        "acc": classification.MulticlassAccuracy(average="micro", **k),
        "auroc": classification.MulticlassAUROC(average="macro", **k),
        "f1": classification.MulticlassF1Score(average="macro", **k),
        "ece": classification.MulticlassCalibrationError(**k),
        "class_acc": classification.MulticlassAccuracy(average="none", **k),
    }


class EpochMetrics(nn.Module):
    """Per stage: the classification metrics and the size-weighted mean loss of the epoch."""

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.class_names = list(class_names or range(num_classes))
        # Keyed "train/", "val/", "test/": nn.ModuleDict refuses "train" (a Module method).
        self.scores = nn.ModuleDict(
            {f"{s}/": MetricCollection(classification_metrics(num_classes)) for s in STAGES}
        )
        self.losses = nn.ModuleDict({f"{s}/": MeanMetric() for s in STAGES})

    def update(self, stage: str, probs: Tensor, y: Tensor, losses: Tensor, sizes: Tensor) -> None:
        self.scores[f"{stage}/"].update(probs, y)
        self.update_loss(stage, losses, sizes)

    def update_loss(self, stage: str, losses: Tensor, sizes: Tensor) -> None:
        """Minibatch mean losses, weighted by their sizes (the last minibatch may be short)."""
        self.losses[f"{stage}/"].update(losses, sizes)

    def compute(self, stage: str, scores: bool = True) -> dict[str, float]:
        """The epoch's values (and a reset); `scores=False`: the loss alone."""
        losses, collection = self.losses[f"{stage}/"], self.scores[f"{stage}/"]
        values = {f"{stage}/loss": losses.compute()}
        losses.reset()
        per_class = None
        if scores:
            computed = collection.compute()
            collection.reset()
            per_class = computed.pop("class_acc", None)
            values |= {f"{stage}/{name}": value for name, value in computed.items()}
        # One device-to-host copy for all values.
        floats = dict(zip(values, torch.stack(list(values.values())).tolist(), strict=True))
        if per_class is not None:
            accs = per_class.tolist()
            floats |= {f"{stage}/acc/{n}": a for n, a in zip(self.class_names, accs, strict=True)}
        return floats


def publish(module: L.LightningModule, stage: str, values: dict[str, float], fast: bool) -> None:
    """Give an epoch's values to the trainer (checkpoint, early stopping, progress bar) and to
    the loggers, with the epoch as x axis. A stand-alone validate() (the best checkpoint
    re-scored for metrics.json) adds no point to the curves."""
    trainer = module.trainer
    # The bar shows the stage's headline values, not the per-class ones (<stage>/acc/<class>).
    shown = {k: v for k, v in values.items() if stage != "test" and k.count("/") == 1}
    if fast:
        publish_to_trainer(trainer, values, shown)
    else:
        module.log_dict({k: v for k, v in values.items() if k not in shown}, logger=False)
        module.log_dict(shown, prog_bar=True, logger=False)
    if trainer.state.fn == TrainerFn.VALIDATING:
        return
    for logger in module.loggers:
        logger.log_metrics(values, step=module.current_epoch)
