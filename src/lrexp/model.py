"""The lecture's model as a LightningModule: sigmoid(Linear(in_features, 1)), BCE loss, SGD.

Training uses manual optimisation so that one Lightning step can run a whole group of SGD
minibatches (see lrexp.data.batches): the updates are exactly those of one minibatch per step,
but Lightning's per-step bookkeeping is paid once per group instead of once per minibatch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryCalibrationError,
    BinaryF1Score,
)

from lrexp.errors import LrexpError

if TYPE_CHECKING:
    from lrexp.data.batches import Minibatches

STAGES = ("train", "val", "test")
# What Lightning calls around each manual backward and optimizer step.
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
# Checkpoint key naming the DataModule class ("lrexp.data.toy.ToyDataModule").
DATAMODULE_CLASS_KEY = "lrexp_datamodule"


def plain_steps_allowed(trainer: L.Trainer) -> bool:
    """Whether manual_backward and LightningOptimizer.step would do nothing but call empty hooks
    around loss.backward() and optimizer.step(): one process (no DDP gradient sync), 32-bit
    precision (no loss scaling or autocast step), no profiler, and no callback or module method
    on the backward/step hooks. Anything else keeps Lightning's wrappers."""
    module = trainer.lightning_module
    owners = [(module, L.LightningModule), *((c, Callback) for c in trainer.callbacks)]
    listened = any(
        getattr(type(owner), hook) is not getattr(base, hook)
        for owner, base in owners
        for hook in STEP_HOOKS
    )
    return (
        type(trainer.strategy) is SingleDeviceStrategy
        and type(trainer.precision_plugin) is Precision
        and type(trainer.profiler) is PassThroughProfiler
        and type(module).backward is L.LightningModule.backward
        and not listened
    )


def _stage_metrics(stage: str) -> MetricCollection:
    """validate_args=False: the inputs are sigmoid outputs and 0/1 labels by construction, so
    torchmetrics' per-update input checks (a torch.unique per metric) would only cost time."""
    unchecked = {"validate_args": False}
    return MetricCollection(
        {
            "acc": BinaryAccuracy(**unchecked),
            "auroc": BinaryAUROC(**unchecked),
            "f1": BinaryF1Score(**unchecked),
            "ece": BinaryCalibrationError(**unchecked),
        },
        prefix=f"{stage}/",
    )


class LogisticRegression(L.LightningModule):
    """P(label 1 | x) = sigmoid(w·x + b), fitted with SGD on binary cross-entropy.

    The loss is computed from the logits (`binary_cross_entropy_with_logits`): the same function
    as the lecture's sigmoid + BCELoss, but finite when the sigmoid saturates. With `seed` set,
    the initial parameters are exactly those of `torch.manual_seed(seed); nn.Linear(n, 1)`,
    whatever else has drawn random numbers before.
    """

    def __init__(
        self,
        in_features: int,
        lr: float = 0.01,
        reduction: str = "mean",
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.automatic_optimization = False
        self._plain_steps = False  # set per fit by on_train_start
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.linear = nn.Linear(in_features, 1)
        for stage in STAGES:  # train_metrics, train_loss, val_metrics, ...
            setattr(self, f"{stage}_metrics", _stage_metrics(stage))
            setattr(self, f"{stage}_loss", MeanMetric())

    def logits(self, x: Tensor) -> Tensor:
        return self.linear(x).squeeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        """P(label 1) for each row of x."""
        return torch.sigmoid(self.logits(x))

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, y, reduction=self.hparams.reduction)

    def training_step(self, batches: Minibatches, batch_idx: int) -> None:
        optimizer = self.optimizers()
        all_logits, all_targets, losses = [], [], []
        for x, y in batches.sharing_one_buffer():  # x: valid until the next minibatch is drawn
            logits = self.logits(x)
            loss = self.loss(logits, y)
            self._sgd_step(optimizer, loss)
            all_logits.append(logits.detach())
            all_targets.append(y)
            losses.append(loss.detach())
        losses = torch.stack(losses)
        self._check_finite(losses)
        # Only the epoch's last minibatch can be short; made on the device, these weights cost
        # no host-to-device copy (on a GPU, a wait for every queued kernel).
        sizes = torch.full_like(losses, len(all_targets[0]))
        sizes[-1] = len(all_targets[-1])
        if self._train_metrics_due():
            self._update("train", torch.cat(all_logits), torch.cat(all_targets), losses, sizes)
        else:
            self.train_loss.update(losses, sizes)

    def _train_metrics_due(self) -> bool:
        """Whether this epoch computes train/acc, auroc, f1 and ece: on the epochs that validate
        (every check_val_every_n_epoch-th, so train and val curves share their points) and the
        last; train/loss is computed every epoch. In the toy run (1000 epochs, validation every
        50) computing all four every epoch took half the fit time, for 3 samples; vision
        configs validate every epoch and so compute them every epoch."""
        every = self.trainer.check_val_every_n_epoch or 1
        epoch = self.current_epoch + 1
        return epoch % every == 0 or epoch == self.trainer.max_epochs

    def on_train_start(self) -> None:
        self._plain_steps = plain_steps_allowed(self.trainer)

    def _sgd_step(self, optimizer: LightningOptimizer, loss: Tensor) -> None:
        """zero_grad, backward, step. Where Lightning's wrappers would only pass through (see
        plain_steps_allowed), torch's own calls do the same update without their ~300 Python
        calls per step; the step is still counted as LightningOptimizer.step counts it, so
        trainer.global_step, checkpoints and resume are unchanged."""
        if not self._plain_steps:
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            return
        torch_optimizer = optimizer.optimizer
        torch_optimizer.zero_grad()
        loss.backward()
        optimizer._on_before_step()
        torch_optimizer.step()
        optimizer._on_after_step()

    def _check_finite(self, losses: Tensor) -> None:
        """Stop as soon as the loss or the updated weights are inf/NaN — before a checkpoint could
        store them, so the last checkpoint on disk stays a finite one."""
        weights = torch.cat([p.detach().flatten() for p in self.linear.parameters()])
        if torch.isfinite(torch.cat([losses, weights])).all():
            return
        lr = self.hparams.lr
        raise LrexpError(
            f"training diverged in epoch {self.current_epoch}: the training loss (max "
            f"{losses.max().item():.3g}) or the weights became inf/nan. Lower model.lr "
            f"(now {lr:g}, e.g. model.lr={lr / 10:g}); checkpoints/ keeps the last finite one"
        )

    def validation_step(self, batches: Minibatches, batch_idx: int) -> None:
        self._evaluate("val", batches)

    def test_step(self, batches: Minibatches, batch_idx: int) -> None:
        self._evaluate("test", batches)

    def _evaluate(self, stage: str, batches: Minibatches) -> None:
        for x, y in batches:
            logits = self.logits(x)
            loss = self.loss(logits, y).reshape(1)
            self._update(stage, logits, y, loss, torch.full_like(loss, len(y)))

    def _update(self, stage: str, logits: Tensor, y: Tensor, losses: Tensor, sizes: Tensor) -> None:
        getattr(self, f"{stage}_metrics").update(torch.sigmoid(logits), y.long())
        getattr(self, f"{stage}_loss").update(losses, sizes)

    def _log_epoch(self, stage: str) -> None:
        """Publish the epoch's metrics once, straight to the loggers (x axis: epoch).

        `self.log` costs about a millisecond per key and call — more than a whole epoch of the
        toy run — so lrexp hands epoch values to the loggers itself, and to the trainer's
        callback/progress-bar metrics, which ModelCheckpoint and the progress bar read.
        torchmetrics' compute() syncs the values across DDP ranks. A stand-alone validate()
        (train.py re-scores the best checkpoint for metrics.json) adds no point to the curves.
        """
        metrics, loss = getattr(self, f"{stage}_metrics"), getattr(self, f"{stage}_loss")
        values = {f"{stage}/loss": loss.compute()}
        loss.reset()
        if stage != "train" or self._train_metrics_due():
            values |= metrics.compute()
            metrics.reset()
        # One device-to-host copy for all values; the trainer gets CPU tensors, which
        # ModelCheckpoint deep-copies at every save.
        floats = dict(zip(values, torch.stack(list(values.values())).tolist(), strict=True))
        self.trainer.callback_metrics.update({k: torch.tensor(v) for k, v in floats.items()})
        if stage != "test":
            self.trainer.progress_bar_metrics.update(floats)
        if self.trainer.state.fn == TrainerFn.VALIDATING:
            return
        for logger in self.loggers:
            logger.log_metrics(floats, step=self.current_epoch)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            self.parameters(),
            lr=self.hparams.lr,
            momentum=self.hparams.momentum,
            weight_decay=self.hparams.weight_decay,
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Name the DataModule class beside its hyper-parameters (which Lightning stores), so that
        eval and predict rebuild the run's own data from the checkpoint alone. Also flush the
        loggers, which get no flush from Lightning (see _log_epoch): a run killed later resumes
        from this checkpoint with every curve point up to it on disk."""
        datamodule = self.trainer.datamodule
        if datamodule is not None:
            checkpoint[DATAMODULE_CLASS_KEY] = (
                f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"
            )
        for logger in self.loggers:
            logger.save()

    @property
    def weight(self) -> Tensor:
        return self.linear.weight.detach().squeeze(0)

    @property
    def bias(self) -> float:
        return self.linear.bias.detach().item()

    def toy_summary(self) -> dict[str, float]:
        """The lecture's question answered: P(pass | 4 hours) and the 50 % boundary in hours."""
        w, b = self.weight.item(), self.bias
        return {
            "w": w,
            "b": b,
            "p_pass_at_4h": torch.sigmoid(torch.tensor(4.0 * w + b)).item(),
            "boundary_h": -b / w if w != 0 else math.nan,
        }
