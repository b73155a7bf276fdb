"""The callbacks lrexp configures (conf/callbacks/), fast or stock (lrexp.lightning_fast)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import callbacks

from lrexp.lightning_fast import FastCheckpoint, FastProgressBar, fast_path


def checkpoints(fast: bool = True, **kwargs: Any) -> list[callbacks.ModelCheckpoint]:
    """The best checkpoint (by `monitor`) and last.ckpt after every due epoch.

    `kwargs` are ModelCheckpoint's. On the fast path one FastCheckpoint does both; on the stock
    path two of Lightning's own: one keeps the best file, one (save_top_k=0) writes last.ckpt.
    """
    if fast_path(fast):
        return [FastCheckpoint(**kwargs)]
    best = callbacks.ModelCheckpoint(**{**kwargs, "save_last": False})
    last = callbacks.ModelCheckpoint(
        **{**kwargs, "save_last": kwargs.get("save_last", True), "save_top_k": 0, "monitor": None}
    )
    return [best, last]


def progress_bar(fast: bool = True, **kwargs: Any) -> callbacks.RichProgressBar:
    """Lightning's rich progress bar; on the fast path redrawn only by its refresh thread."""
    return FastProgressBar(**kwargs) if fast_path(fast) else callbacks.RichProgressBar(**kwargs)


def early_stopping(enabled: bool = False, **kwargs: Any) -> list[callbacks.EarlyStopping]:
    """Lightning's EarlyStopping when `enabled` (kwargs are its own: monitor, patience, ...);
    it checks at every validation, so patience counts validations."""
    return [callbacks.EarlyStopping(**kwargs)] if enabled else []
