"""The lecture's model as a LightningModule.

Two labels: P(label 1 | x) = sigmoid(w·x + b), binary cross-entropy. K classes:
P(class k | x) = softmax(W·x + b)_k, cross-entropy. The objective — the class-weighted loss plus
scikit-learn's penalty ‖w‖²/(2·C·n) (and its L1 part) — and its closed-form gradient are
lrexp.objective's; the solver that minimises it (SGD, Adam or full-batch L-BFGS) is
lrexp.solvers'; the epoch metrics are lrexp.metrics'.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn

from lrexp import solvers
from lrexp.data.batches import Minibatches
from lrexp.data.checkpoint_name import name_datamodule
from lrexp.errors import LrexpError
from lrexp.metrics import EpochMetrics, publish
from lrexp.objective import Objective, class_weights


def predicted_labels(probs: Tensor) -> Tensor:
    """The label the model predicts from its probabilities: label 1 where P(label 1) >= 0.5 (as
    the metrics threshold it) for two labels, the most probable class for K."""
    return (probs >= 0.5).long() if probs.dim() == 1 else probs.argmax(-1)


class LogisticRegression(L.LightningModule):
    def __init__(
        self,
        in_features: int,
        num_classes: int = 2,
        class_counts: Sequence[float] | None = None,
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
        tol: float = 1e-4,
        path_length: int = 20,  # model.C=path: how many values (lrexp.path)
        seed: int | None = None,
        ci_level: float = 0.95,  # coefficients.csv's interval level (lrexp.coefficients)
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.automatic_optimization = False  # the solver takes the steps
        with torch.random.fork_rng(devices=[]):  # seed: torch.manual_seed(seed); nn.Linear(...)
            if seed is not None:
                torch.manual_seed(seed)
            self.linear = nn.Linear(in_features, 1 if num_classes == 2 else num_classes)
        try:
            weights = class_weights(class_weight, class_counts, num_classes)
        except ValueError as err:
            raise LrexpError(
                f"model.class_weight=balanced needs rows of every label in the training split "
                f"({err})"
            ) from None
        # The penalty's n: the training rows, counted by their sample weights.
        self.train_rows = sum(class_counts) if class_counts else None
        self.objective = Objective.of(num_classes, self.train_rows, C, l1_ratio, reduction, weights)
        self.solver = solvers.make_solver(self.hparams, self.linear.weight)
        self.metrics = EpochMetrics(num_classes, class_names)
        self.fast = True  # lrexp.lightning_fast's pieces; the experiment builder sets it per run

    def set_C(self, C: float) -> None:
        """Another penalty strength (the regularisation path): the objective anew, the solver's
        running state reset; the weights stay, as the next fit's start."""
        hp = self.hparams
        hp.C = C
        weights = self.objective.class_weights
        self.objective = Objective.of(
            hp.num_classes, self.train_rows, C, hp.l1_ratio, hp.reduction, weights
        )
        self.solver.reset()

    def logits(self, x: Tensor) -> Tensor:
        return self.objective.logits(x.to(self.linear.weight.dtype), *self.linear.parameters())

    def forward(self, x: Tensor) -> Tensor:
        """P(label 1) per row for two labels; the (rows, K) class probabilities for K."""
        return self.objective.probs(self.logits(x))

    def loss(self, logits: Tensor, y: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """Class- (and sample-) weighted cross-entropy, averaged over the rows (or summed)."""
        return self.objective.loss(logits, y, sample_weight)

    def configure_optimizers(self) -> dict:
        return self.solver.configure(self)

    # --- Lightning's loop ---------------------------------------------------------------------

    @torch.no_grad()
    def training_step(self, batch: Minibatches | tuple[Tensor, Tensor], batch_idx: int) -> None:
        """The solver's steps, in the parameters' dtype whatever the precision plugin's autocast
        (closed-form gradients have no activations to keep in half precision)."""
        group = batch if isinstance(batch, Minibatches) else Minibatches.of(*batch)
        with torch.autocast(self.device.type, enabled=False):
            self.solver.training_step(self, group)

    def validation_step(self, batch: Minibatches | tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate("val", batch)

    def test_step(self, batch: Minibatches | tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate("test", batch)

    def evaluate(self, stage: str, batch: Minibatches | tuple[Tensor, Tensor]) -> None:
        """The metrics' update for a batch of the stage (val, test): loss, probabilities."""
        group = batch if isinstance(batch, Minibatches) else Minibatches.of(*batch)
        for x, y, sample_weight in group:
            logits = self.logits(x)
            loss = self.loss(logits, y, sample_weight).reshape(1)
            probs = self.objective.probs(logits)
            rows = torch.full_like(loss, self.objective.rows(y, sample_weight))
            self.metrics.update(stage, probs, y, loss, rows, sample_weight)

    def on_train_start(self) -> None:
        self.solver.on_train_start(self)

    def on_train_end(self) -> None:
        solvers.warn_unconverged(self)
        self.solver.on_train_end(self)

    def on_train_batch_start(self, batch: object, batch_idx: int) -> int | None:
        """-1 skips the rest of the epoch (L-BFGS takes the epoch's step on its first group)."""
        return -1 if self.solver.skips_rest_of_epoch(batch_idx) else None

    def on_train_epoch_end(self) -> None:
        values = self.metrics.compute("train", scores=solvers.train_scores_due(self))
        publish(self, "train", values | self.solver.epoch_report(), self.fast)

    def on_validation_epoch_end(self) -> None:
        values = self.metrics.compute("val")
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        rows = solvers.training_rows(self) if fitting else None
        if fitting and self.solver.report:  # L-BFGS' step has just measured it
            values |= self.solver.report
        elif rows is not None:
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
