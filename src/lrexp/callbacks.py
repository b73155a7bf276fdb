"""The callbacks lrexp configures (conf/callbacks/), fast or stock (lrexp.lightning_fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch import callbacks

from lrexp.errors import LrexpError
from lrexp.lightning_fast import FastCheckpoint, FastProgressBar, fast_path


def checkpoints(
    fast: bool = True, every_n_train_steps: int | None = None, **kwargs: Any
) -> list[callbacks.Callback]:
    """The best checkpoint (by `monitor`) and last.ckpt after every due epoch; with
    `every_n_train_steps`, last.ckpt inside epochs too (StepCheckpoint).

    `kwargs` are ModelCheckpoint's. On the fast path one FastCheckpoint does both; on the stock
    path two of Lightning's own: one keeps the best file, one (save_top_k=0) writes last.ckpt.
    """
    steps = []
    if every_n_train_steps is not None:
        if not (isinstance(every_n_train_steps, int) and every_n_train_steps > 0):
            raise LrexpError(
                f"callbacks.model_checkpoint.every_n_train_steps={every_n_train_steps!r}: give a "
                "number of training steps > 0, or null for checkpoints at epoch ends only"
            )
        steps = [StepCheckpoint(kwargs["dirpath"], every_n_train_steps)]
    if fast_path(fast):
        return [FastCheckpoint(**kwargs), *steps]
    best = callbacks.ModelCheckpoint(**{**kwargs, "save_last": False})
    last = callbacks.ModelCheckpoint(
        **{**kwargs, "save_last": kwargs.get("save_last", True), "save_top_k": 0, "monitor": None}
    )
    return [best, last, *steps]


class StepCheckpoint(callbacks.Callback):
    """last.ckpt after the loader item in which the run's training step count passes a multiple
    of `every` (an item holds several SGD steps: data.minibatches_per_step), inside an epoch.

    The checkpoint holds the train loader's position (lrexp.data.batches.ResumableGroups), so
    a run resumed from it with ckpt_path=last takes the uninterrupted run's steps. Written
    through the trainer (every rank takes part under DDP) and its atomic checkpoint IO: a run
    killed while writing keeps the previous last.ckpt whole.
    """

    def __init__(self, dirpath: str, every: int) -> None:
        self.path, self.every = Path(dirpath) / "last.ckpt", every
        self._saved = 0  # the step count of the last save (or of the start)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._saved = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        step = trainer.global_step
        if step // self.every > self._saved // self.every and not trainer.sanity_checking:
            trainer.save_checkpoint(self.path)
            self._saved = step


def progress_bar(fast: bool = True, **kwargs: Any) -> callbacks.RichProgressBar:
    """Lightning's rich progress bar; on the fast path redrawn only by its refresh thread."""
    return FastProgressBar(**kwargs) if fast_path(fast) else callbacks.RichProgressBar(**kwargs)


def early_stopping(enabled: bool = False, **kwargs: Any) -> list[callbacks.EarlyStopping]:
    """Lightning's EarlyStopping when `enabled` (kwargs are its own: monitor, patience, ...);
    it checks at every validation, so patience counts validations."""
    return [callbacks.EarlyStopping(**kwargs)] if enabled else []
