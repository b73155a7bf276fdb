"""Which DataModule class a checkpoint was trained with, recorded in the checkpoint itself, so
that eval and predict rebuild the run's own data from the checkpoint alone (lrexp.checkpoints
reads it; the model writes it when Lightning saves)."""

from __future__ import annotations

from typing import Any

import lightning as L

# Checkpoint key naming the DataModule class ("lrexp.data.toy.ToyDataModule").
DATAMODULE_CLASS_KEY = "lrexp_datamodule"


def name_datamodule(checkpoint: dict[str, Any], datamodule: L.LightningDataModule | None) -> None:
    """Record the DataModule's class beside its hyper-parameters (which Lightning stores)."""
    if datamodule is not None:
        cls = type(datamodule)
        checkpoint[DATAMODULE_CLASS_KEY] = f"{cls.__module__}.{cls.__qualname__}"
