"""Labelled splits shared by the DataModules: the seeded stratified split, the check that every
split holds every label (AUROC and F1 cannot be measured on a split without one), and the log
line that says each split's class balance (it tells what an accuracy is worth)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from lrexp.errors import LrexpError

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


def rows_needed(fractions: Sequence[float]) -> int:
    """The fewest rows of a label for which `stratified_split` with each of `fractions` in turn
    (held out of what the one before kept) leaves some rows in every part."""
    n = 1
    while True:
        rest, every = n, True
        for fraction in fractions:
            held = round(fraction * rest)
            every &= held >= 1
            rest -= held
        if every and rest >= 1:
            return n
        n += 1


def split_label_check(
    labels: Tensor,
    parts: dict[str, Tensor],
    names: Sequence[str],
    source: str,
    fractions: dict[str, float],
) -> None:
    """Stop where a label that `labels` holds is absent from a part of its split (a class of one
    row leaves validation without it); `parts` maps each part's name to its labels, `fractions`
    the keys of the shares held out in turn (data.test_fraction, data.val_fraction) to theirs."""
    total = torch.bincount(labels, minlength=len(names))
    for name, part in parts.items():
        present = torch.bincount(part, minlength=len(names))
        for label in ((total > 0) & (present == 0)).nonzero().flatten().tolist():
            shares = " and ".join(f"{key}={value}" for key, value in fractions.items())
            raise LrexpError(
                f"{source}: label {label} ({names[label]}) has {int(total[label])} row(s), so the "
                f"{name} split gets none; {shares} need at least "
                f"{rows_needed(list(fractions.values()))} rows of every label. Add rows of that "
                "label, or choose the labels with data.positive or data.classes"
            )


def log_balance(split: str, labels: Tensor, names: Sequence[str]) -> None:
    """One line per split: its size and each label's share (it tells what an accuracy is worth)."""
    log_counts(split, torch.bincount(labels, minlength=len(names)).tolist(), names)


@rank_zero_only
def log_counts(split: str, counts: Sequence[int], names: Sequence[str]) -> None:
    """log_balance's line from the rows of each label (a streamed split's, counted)."""
    n = sum(counts)
    shares = ", ".join(
        f"{c} ({100 * c / max(n, 1):.1f} %) label {i} ({name})"
        for i, (name, c) in enumerate(zip(names, counts, strict=True))
    )
    log.info(f"{split} split: {n} samples, {shares}")
