"""Epoch metrics of each stage (torchmetrics), computed once per epoch and handed to the loggers.

Names are the same for two labels and for K classes: <stage>/acc, auroc, f1 (macro for K),
ece (top-label for K), loss; for K classes also <stage>/acc/<class>, the per-class accuracy.
torchmetrics' compute() syncs the states across DDP ranks, so every rank publishes the metrics
of the whole split.

A metric that the split cannot measure is left out, never reported as a number, and the run
logs one warning saying why: on a split without rows, all of them; AUROC needs every label among
the split's rows (both, for two); F1 needs a positive row or prediction (two labels); a class's
accuracy needs rows of that class. A score that comes out inf or NaN is left out too; a loss
that overflows (the weights of a diverging run) stays in what the checkpoint and early-stopping
callbacks see while fitting, where inf compares as the worst, and is left out of the loggers
and of the stand-alone validate and test that give metrics.json, so that file stays strict JSON.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric, MetricCollection, classification
from torchmetrics.utilities import dim_zero_sum

from lrexp.lightning_fast import publish_to_trainer

log = logging.getLogger(__name__)

NOT_FINITE = "its value is not finite (inf or NaN)"

STAGES = ("train", "val", "test")
# Rows a weighted minibatch may expand to in the scores (whole-number frequency weights).
MAX_REPEATED_ROWS = 2**24


class LabelCounts(Metric):
    """Rows of each label, and predictions of each label, seen in the epoch (summed over ranks):
    what says whether AUROC, F1 and per-class accuracy can be measured."""

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        zeros = torch.zeros(num_classes, dtype=torch.long)
        self.add_state("targets", default=zeros.clone(), dist_reduce_fx=dim_zero_sum)
        self.add_state("predicted", default=zeros.clone(), dist_reduce_fx=dim_zero_sum)

    def update(self, probs: Tensor, y: Tensor) -> None:
        # Label 1 where P(label 1) > 0.5, as torchmetrics' binary threshold; else the argmax.
        predicted = (probs > 0.5).long() if probs.dim() == 1 else probs.argmax(-1)
        self.targets += torch.bincount(y, minlength=self.num_classes)
        self.predicted += torch.bincount(predicted, minlength=self.num_classes)

    def compute(self) -> Tensor:
        return torch.stack([self.targets, self.predicted])


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
        self.counts = nn.ModuleDict({f"{s}/": LabelCounts(num_classes) for s in STAGES})
        # (metric, reason) already logged: one warning each, not one per epoch.
        self.warned: set[tuple[str, str]] = set()

    def update(
        self,
        stage: str,
        probs: Tensor,
        y: Tensor,
        losses: Tensor,
        sizes: Tensor,
        sample_weight: Tensor | None = None,
    ) -> None:
        """Scores of the rows' probabilities and the losses of their minibatches; with sample
        weights (frequency weights) each row counts `sample_weight` times in the scores:
        torchmetrics' classification metrics take no weights, so whole-number weights repeat
        the row. Other weights count each row once in the scores (logged once); the loss and
        the fit use them as they are."""
        if sample_weight is not None:
            probs, y = self._repeated(stage, probs, y, sample_weight)
        self.scores[f"{stage}/"].update(probs, y)
        self.counts[f"{stage}/"].update(probs, y)
        self.update_loss(stage, losses, sizes)

    def update_loss(self, stage: str, losses: Tensor, sizes: Tensor) -> None:
        """Minibatch mean losses, weighted by their sizes (their rows' total sample weight;
        the last minibatch may be short)."""
        self.losses[f"{stage}/"].update(losses, sizes)

    def _repeated(
        self, stage: str, probs: Tensor, y: Tensor, sample_weight: Tensor
    ) -> tuple[Tensor, Tensor]:
        counts = sample_weight.round()
        if torch.equal(counts, sample_weight) and counts.sum() <= MAX_REPEATED_ROWS:
            counts = counts.long()
            return probs.repeat_interleave(counts, 0), y.repeat_interleave(counts)
        why = ("data.weight", "not whole numbers (or a minibatch's total above 2^24)")
        if (stage, why) not in self.warned:
            self.warned.add((stage, why))
            log.warning(
                f"{stage}: the sample weights are {why[1]}: acc, auroc, f1 and ece count each "
                "row once; the loss and the fit use the weights"
            )
        return probs, y

    def compute(self, stage: str, scores: bool = True) -> dict[str, float]:
        """The epoch's values (and a reset); `scores=False`: the loss alone."""
        losses, collection = self.losses[f"{stage}/"], self.scores[f"{stage}/"]
        values = {f"{stage}/loss": losses.compute()}
        losses.reset()
        per_class = None
        unmeasurable: dict[str, str] = {}
        if scores:
            counts = self.counts[f"{stage}/"]
            targets, predicted = counts.compute().tolist()
            counts.reset()
            unmeasurable = self._unmeasurable(targets, predicted)
            if unmeasurable.keys() >= {"acc", "auroc", "f1", "ece"}:  # no rows: nothing to compute
                collection.reset()
            else:
                with warnings.catch_warnings():
                    if unmeasurable:  # this module's warning says why; torchmetrics' adds a 0
                        warnings.simplefilter("ignore", UserWarning)
                    computed = collection.compute()
                collection.reset()
                per_class = computed.pop("class_acc", None)
                values |= {f"{stage}/{name}": value for name, value in computed.items()}
        # One device-to-host copy for all values.
        floats = dict(zip(values, torch.stack(list(values.values())).tolist(), strict=True))
        if per_class is not None:
            accs = per_class.tolist()
            floats |= {f"{stage}/acc/{n}": a for n, a in zip(self.class_names, accs, strict=True)}
        left_out = {f"{stage}/{name}": why for name, why in unmeasurable.items()}
        loss = f"{stage}/loss"
        left_out |= {k: NOT_FINITE for k, v in floats.items() if k != loss and not math.isfinite(v)}
        return self._without(floats, left_out)

    def finite(self, values: dict[str, float]) -> dict[str, float]:
        """`values` without those that are inf or NaN (a warning each, once)."""
        return self._without(
            values, {k: NOT_FINITE for k, v in values.items() if not math.isfinite(v)}
        )

    def _without(self, values: dict[str, float], left_out: dict[str, str]) -> dict[str, float]:
        for key, why in left_out.items():
            if (key, why) not in self.warned:
                self.warned.add((key, why))
                log.warning(f"{key} is left out of the metrics: {why}")
        return {k: v for k, v in values.items() if k not in left_out}

    def _unmeasurable(self, targets: list[int], predicted: list[int]) -> dict[str, str]:
        """The metrics (and per-class accuracies) the split cannot measure, and why."""
        rows = sum(targets)
        if rows == 0:
            return dict.fromkeys(["acc", "auroc", "f1", "ece"], "the split has no rows")
        absent = [n for n, count in zip(self.class_names, targets, strict=True) if count == 0]
        why: dict[str, str] = {}
        if absent:
            why["auroc"] = f"the split has no rows of label(s) {absent}"
        if len(targets) == 2 and targets[1] == 0 and predicted[1] == 0:
            why["f1"] = "the split has no positive rows and none was predicted positive"
        if len(targets) > 2:
            why |= {f"acc/{n}": "the split has no rows of that class" for n in absent}
        return why


def publish(module: L.LightningModule, stage: str, values: dict[str, float], fast: bool) -> None:
    """Give an epoch's values to the trainer (checkpoint, early stopping, progress bar) and to
    the loggers, with the epoch as x axis. A stand-alone validate() (the best checkpoint
    re-scored for metrics.json) adds no point to the curves."""
    trainer = module.trainer
    finite = module.metrics.finite(values)
    if trainer.state.fn != TrainerFn.FITTING:
        values = finite
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
        logger.log_metrics(finite, step=module.current_epoch)
