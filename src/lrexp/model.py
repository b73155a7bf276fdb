"""The lecture's model as a LightningModule.

Two labels: P(label 1 | x) = sigmoid(w·x + b), binary cross-entropy. K classes:
P(class k | x) = softmax(W·x + b)_k, cross-entropy. Fitted with SGD (the lecture's), Adam or
full-batch L-BFGS on the objective

    loss(w) + (1 - l1_ratio)/2 · ‖w‖² / (C·n) + l1_ratio · ‖w‖₁ / (C·n)

with loss the class-weighted mean over the n training rows (model.reduction=sum: the sum,
and the penalty times n) — scikit-learn's LogisticRegression(C, l1_ratio, class_weight), the
intercept not penalised. How the steps are taken lives in lrexp.solvers; the epoch metrics in
lrexp.metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn

from lrexp import solvers
from lrexp.checkpoints import name_datamodule
from lrexp.data.batches import Minibatches
from lrexp.metrics import EpochMetrics, publish


def predicted_labels(probs: Tensor) -> Tensor:
    """The label the model predicts from its probabilities: label 1 where P(label 1) >= 0.5 (as
    the metrics threshold it) for two labels, the most probable class for K."""
    return (probs >= 0.5).long() if probs.dim() == 1 else probs.argmax(-1)


class LogisticRegression(L.LightningModule):
    def __init__(
        self,
        in_features: int,
        num_classes: int = 2,
        class_counts: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        lr: float = 0.01,
        reduction: str = "mean",
        optimizer: str = "sgd",
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        scheduler: str | None = None,
        C: float | None = None,
        l1_ratio: float = 0.0,
        class_weight: str | Sequence[float] | None = None,
        max_iter: int = 100,
        tol: float = 1e-7,
        seed: int | None = None,
        ci_level: float = 0.95,  # coefficients.csv's interval level (lrexp.coefficients)
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.automatic_optimization = False  # lrexp.solvers takes the steps
        with torch.random.fork_rng(devices=[]):  # seed: torch.manual_seed(seed); nn.Linear(...)
            if seed is not None:
                torch.manual_seed(seed)
            self.linear = nn.Linear(in_features, 1 if num_classes == 2 else num_classes)
        if C is not None and l1_ratio:  # the cumulative L1 penalty of lrexp.solvers.l1_prox
            self.register_buffer("l1_total", torch.zeros(()))
            self.register_buffer("l1_received", torch.zeros_like(self.linear.weight))
        weights = solvers.class_weights(class_weight, class_counts, num_classes)
        self.register_buffer("class_weights", weights, persistent=False)
        self.train_rows = sum(class_counts) if class_counts else None
        self.metrics = EpochMetrics(num_classes, class_names)
        self.fast = True  # lrexp.lightning_fast's pieces; the experiment builder sets it per run
        # Set per fit by lrexp.solvers: torch's own step calls allowed, SGD steps in the run,
        # L-BFGS' convergence report of the epoch.
        self.plain_steps, self.total_steps, self.solver_report = False, 1, None
        self.lbfgs_problem: solvers.CentredFloat64 | None = None  # during an lbfgs fit

    def logits(self, x: Tensor) -> Tensor:
        logits = self.linear(x.to(self.linear.weight.dtype))
        return logits.squeeze(-1) if self.hparams.num_classes == 2 else logits

    def forward(self, x: Tensor) -> Tensor:
        """P(label 1) per row for two labels; the (rows, K) class probabilities for K."""
        return self.probs(self.logits(x))

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """Class-weighted cross-entropy, averaged over the rows (or summed)."""
        reduction = self.hparams.reduction
        weight = None if self.class_weights is None else self.class_weights[y]
        if self.hparams.num_classes == 2:
            return F.binary_cross_entropy_with_logits(
                logits, y.to(logits.dtype), weight=weight, reduction=reduction
            )
        if weight is None:
            return F.cross_entropy(logits, y, reduction=reduction)
        # Per-row weights: torch's own `weight=` would divide the mean by their sum, not by
        # the rows (scikit-learn's objective).
        losses = F.cross_entropy(logits, y, reduction="none") * weight
        return losses.sum() if reduction == "sum" else losses.mean()

    def penalty(self, rows: int, weight: Tensor | None = None) -> Tensor | float:
        """The L2 part of the regulariser for a step over `rows` rows, at `weight` (default: the
        layer's); the L1 part is a proximal step after the update (solvers.l1_prox). The
        intercept is not penalised. SGD and Adam apply it as the weight's decay
        (solvers.configure)."""
        weight = self.linear.weight if weight is None else weight
        decay = solvers.l2_decay(self, rows)
        return decay / 2 * weight.pow(2).sum() if decay else 0.0

    def objective(self, x: Tensor, y: Tensor, float64: bool = False) -> Tensor:
        """What a step minimises on the rows (x, y): loss + L2 penalty; `float64` sums it in
        float64 (the matrix products stay in the parameters' dtype)."""
        logits = self.logits(x)
        if float64:
            logits = logits.double()
        return self.loss(logits, y) + self.penalty(len(y))

    def configure_optimizers(self) -> dict:
        return solvers.configure(self)

    # --- Lightning's loop ---------------------------------------------------------------------

    def training_step(self, batch: Minibatches | tuple[Tensor, Tensor], batch_idx: int) -> None:
        group = batch if isinstance(batch, Minibatches) else Minibatches.of(*batch)
        if self.hparams.optimizer == "lbfgs":
            solvers.full_batch_step(self, group)
        else:
            solvers.minibatch_steps(self, group)

    def validation_step(self, batch: Minibatches | tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate("val", batch)

    def test_step(self, batch: Minibatches | tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate("test", batch)

    def _evaluate(self, stage: str, batch: Minibatches | tuple[Tensor, Tensor]) -> None:
        group = batch if isinstance(batch, Minibatches) else Minibatches.of(*batch)
        for x, y in group:
            logits = self.logits(x)
            loss = self.loss(logits, y).reshape(1)
            self.metrics.update(stage, self.probs(logits), y, loss, torch.full_like(loss, len(y)))

    def probs(self, logits: Tensor) -> Tensor:
        """sigmoid for two labels, softmax for K classes."""
        return torch.sigmoid(logits) if self.hparams.num_classes == 2 else logits.softmax(-1)

    def on_train_start(self) -> None:
        solvers.on_train_start(self)

    def on_train_end(self) -> None:
        solvers.on_train_end(self)

    def on_train_batch_start(self, batch: object, batch_idx: int) -> int | None:
        """L-BFGS takes the epoch's step on its first group; -1 skips the rest of the epoch."""
        return -1 if self.hparams.optimizer == "lbfgs" and batch_idx > 0 else None

    def on_train_epoch_end(self) -> None:
        values = self.metrics.compute("train", scores=solvers.train_scores_due(self))
        publish(self, "train", values | solvers.epoch_report(self), self.fast)

    def on_validation_epoch_end(self) -> None:
        values = self.metrics.compute("val")
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        rows = solvers.training_rows(self) if fitting else None
        if rows is not None:
            values |= solvers.objective_report(self, *rows)
        publish(self, "val", values, self.fast)
        if fitting:
            solvers.after_validation(self, values)

    def on_test_epoch_end(self) -> None:
        publish(self, "test", self.metrics.compute("test"), self.fast)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Name the DataModule class, so that eval and predict rebuild the run's own data from the
        checkpoint alone; flush the loggers, which get no flush from Lightning
        (lrexp.metrics.publish): a run killed later resumes from this checkpoint with every
        curve point up to it on disk."""
        name_datamodule(checkpoint, self.trainer.datamodule)
        for logger in self.loggers:
            logger.save()

    # --- the lecture's question ---------------------------------------------------------------

    def toy_summary(self) -> dict[str, float]:
        """P(pass | 4 hours) and the 50 % boundary in hours, for the one-feature binary model."""
        w, b = self.linear.weight.item(), self.linear.bias.item()
        return {
            "w": w,
            "b": b,
            "p_pass_at_4h": torch.sigmoid(torch.tensor(4.0 * w + b)).item(),
            "boundary_h": -b / w if w != 0 else math.nan,
        }
