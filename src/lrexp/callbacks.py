"""Lightning callbacks as lrexp configures them (conf/callbacks/)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch import callbacks


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint, minus the work it throws away on epochs it does not save.

    With save_on_train_epoch_end, Lightning deep-copies every logged metric at the end of each
    training epoch before it looks at every_n_epochs: in the toy run (1000 epochs, checkpoints
    every 50, two ModelCheckpoints) that cost about a second. This skips exactly the epochs on
    which Lightning's on_train_epoch_end saves nothing: the top-k is not due and there is no
    save_last to write or link.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        every = self._every_n_epochs
        due = every >= 1 and (trainer.current_epoch + 1) % every == 0
        if due or self.save_last:
            super().on_train_epoch_end(trainer, pl_module)
