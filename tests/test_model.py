"""lrexp.model: the epoch's train/loss, a mean over the samples of the epoch."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from lrexp.data.batches import epoch_permutation, tensor_loader
from lrexp.model import LogisticRegression
from tests.conftest import RecordingLogger

# 100 samples in minibatches of 8: 12 full ones and a short last one of 4, which groups of 5
# minibatches per step put inside the epoch's last group (5, 5, 3 minibatches).
N, FEATURES, BATCH, PER_STEP, EPOCHS, SEED, LR = 100, 3, 8, 5, 2, 5, 0.5


def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(N, FEATURES, generator=generator)
    return x, (x[:, 0] + torch.randn(N, generator=generator) > 0).long()


def hand_computed_epoch_losses() -> list[tuple[list[float], list[int]]]:
    """Each epoch's minibatch losses and sizes, from the textbook loop over the same orders."""
    x, y = data()
    torch.manual_seed(SEED)
    linear = torch.nn.Linear(FEATURES, 1)
    optimizer = torch.optim.SGD(linear.parameters(), lr=LR)
    epochs = []
    for epoch in range(EPOCHS):
        losses, sizes = [], []
        for idx in epoch_permutation(N, SEED, epoch).split(BATCH):
            logits = linear(x[idx]).squeeze(-1)
            loss = F.binary_cross_entropy_with_logits(logits, y[idx].float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            sizes.append(len(idx))
        epochs.append((losses, sizes))
    return epochs


def test_train_loss_weights_each_minibatch_by_its_size() -> None:
    """train/loss of an epoch is sum(loss_i * n_i) / sum(n_i) over its minibatches: the mean
    loss per sample, with the short last minibatch (4 samples, inside a group) counted as 4.
    Epoch 0 computes the loss alone, epoch 1 (the last) with the classification metrics."""
    x, y = data()
    curves = RecordingLogger()
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        check_val_every_n_epoch=EPOCHS,
        accelerator="cpu",
        logger=curves,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = LogisticRegression(FEATURES, lr=LR, seed=SEED)
    loader = tensor_loader(x, y, BATCH, PER_STEP, shuffle=True, seed=SEED)
    trainer.fit(model, train_dataloaders=loader)
    logged = {step: m["train/loss"] for step, m in curves.points if "train/loss" in m}
    assert list(logged) == list(range(EPOCHS))
    for epoch, (losses, sizes) in enumerate(hand_computed_epoch_losses()):
        assert sizes[-1] == N % BATCH and len(sizes) % PER_STEP != 1  # short, inside a group
        weighted = sum(loss * n for loss, n in zip(losses, sizes, strict=True)) / sum(sizes)
        unweighted = sum(losses) / len(losses)
        assert abs(weighted - unweighted) > 1e-4  # the check below can tell them apart
        assert logged[epoch] == pytest.approx(weighted, rel=1e-6, abs=0)
