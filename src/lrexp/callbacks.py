"""Lightning callbacks as lrexp configures them (conf/callbacks/)."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
from lightning.pytorch import callbacks
from torch import Tensor


class ProgressBar(callbacks.RichProgressBar):
    """Lightning's rich progress bar, drawn only by its refresh thread (`refresh_rate` times a
    second, 10 in conf/callbacks/default.yaml; Lightning's default is 100).

    Lightning starts every epoch's bar with rich's `Progress.reset`, which redraws the whole
    display there and then, on the training thread. In the toy run (1000 one-batch epochs) those
    redraws and the 100-a-second thread took a quarter to a third of the fit; here the reset only
    asks the thread for its next redraw, as every other update of the bar does.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        progress = self.progress
        if progress is None:
            super().on_train_epoch_start(trainer, pl_module)
            return
        progress.refresh = progress.soft_refresh  # for this hook only: see the class docstring
        try:
            super().on_train_epoch_start(trainer, pl_module)
        finally:
            del progress.refresh


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint, with a `last.ckpt` that follows every save and costs no second
    write.

    - Lightning writes last.ckpt only on the epochs that also save a new top-k checkpoint, so
      after the best epoch it falls behind; lrexp resumes from it (ckpt_path=last), so here it is
      written on every epoch that is due (every_n_epochs), and at the end of the final epoch
      (max_epochs) when that one is not due, so that it always holds the finished run.
    - When that epoch also saved a new best, last.ckpt becomes a hard link to the best file
      instead of a second serialisation of the same state (about half the checkpoint time per
      epoch); the link is made beside last.ckpt and renamed over it, so last.ckpt is whole at
      every moment. Where the file system has no hard links, it is written as usual.
    - On the epochs that are not due it returns before Lightning deep-copies every logged
      metric (in the toy run, 1000 epochs, that copy alone took about a second).
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        every, epochs_done = self._every_n_epochs, trainer.current_epoch + 1
        due = every >= 1 and epochs_done % every == 0
        final = epochs_done == trainer.max_epochs
        if not (due or final) or not self._should_save_on_train_epoch_end(trainer):
            return
        if self._should_skip_saving_checkpoint(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        if due:
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def _save_last_checkpoint(self, trainer: L.Trainer, candidates: dict[str, Tensor]) -> None:
        newest = self._last_checkpoint_saved
        if not self.save_last or not newest or self._last_global_step_saved != trainer.global_step:
            super()._save_last_checkpoint(trainer, candidates)
            return
        path = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST)
        if trainer.is_global_zero and not _link_over(Path(newest), Path(path)):
            super()._save_last_checkpoint(trainer, candidates)
            return
        trainer.strategy.barrier()
        previous, self.last_model_path = self.last_model_path, path
        if previous and self._should_remove_checkpoint(trainer, previous, path):
            self._remove_checkpoint(trainer, previous)


def _link_over(source: Path, path: Path) -> bool:
    """Make `path` a hard link to `source`, atomically; False where links are not supported."""
    if source == path:
        return True
    staged = path.with_name(f".{path.name}.{os.getpid()}.link")
    try:
        staged.unlink(missing_ok=True)
        os.link(source, staged)
    except OSError:
        return False
    os.replace(staged, path)
    return True
