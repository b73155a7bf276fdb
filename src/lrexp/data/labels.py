"""Labelled splits shared by the DataModules: the seeded stratified split and the log line that
says each split's class balance (it tells what an accuracy is worth)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

log = logging.getLogger(__name__)


def stratified_split(labels: Tensor, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(kept, held-out) indices, each sorted: a `val_fraction` share of every label is held
    out, drawn with a generator seeded by `seed`."""
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in labels.unique(sorted=True).tolist():
        idx = (labels == label).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_val = round(val_fraction * len(idx))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


@rank_zero_only
def log_balance(split: str, labels: Tensor, names: Sequence[str]) -> None:
    """One line per split: its size and each label's share (it tells what an accuracy is worth)."""
    n = len(labels)
    counts = torch.bincount(labels, minlength=len(names)).tolist()
    shares = ", ".join(
        f"{c} ({100 * c / max(n, 1):.1f} %) label {i} ({name})"
        for i, (name, c) in enumerate(zip(names, counts, strict=True))
    )
    log.info(f"{split} split: {n} samples, {shares}")
