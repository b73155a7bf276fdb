"""Checkpoints written atomically, so that a run killed at any moment can resume from them.

Lightning's TorchCheckpointIO stages a checkpoint in the system's temp folder and then moves it
into place: where that folder is on another file system than the run dir (a tmpfs /tmp, a
cluster's scratch), the move is a copy into the final path, and a kill during the copy leaves a
truncated last.ckpt that `ckpt_path=last` would then load. This plugin writes the file beside
its final path, fsyncs it and renames it over the old one (lrexp.rundir.write_atomic): the path
holds either the old or the new checkpoint, never part of one.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lrexp.rundir import write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose saves are atomic on local file systems."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(Path(path), buffer.getvalue())
