"""Every piece of lrexp.lightning_fast gives the stock Lightning path's results, bit for bit.

CI runs this file on the floor of the tested Lightning window too."""

from __future__ import annotations

import threading

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from lrexp.data.batches import epoch_permutation, tensor_loader
from lrexp.model import LogisticRegression
from tests.conftest import RecordingLogger as Recorder

N, FEATURES, BATCH, EPOCHS, SEED, LR = 96, 5, 8, 3, 7, 0.3


def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N, FEATURES, generator=generator)
    return x, (x[:, 0] + 0.5 * torch.randn(N, generator=generator) > 0).long()


class ListensToSteps(Callback):
    """A callback on Lightning's optimizer-step hook: lrexp must keep Lightning's wrappers."""

    def __init__(self) -> None:
        self.calls = 0

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module, optimizer) -> None:
        self.calls += 1


def fit(
    minibatches_per_step: int, callbacks: list[Callback] | None = None, **trainer_args
) -> tuple[LogisticRegression, L.Trainer]:
    x, y = data()
    model = LogisticRegression(FEATURES, lr=LR, seed=SEED)
    quiet = {
        "max_epochs": EPOCHS,
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    trainer = L.Trainer(callbacks=callbacks or [], **(quiet | trainer_args))
    loader = tensor_loader(x, y, BATCH, minibatches_per_step, shuffle=True, seed=SEED)
    trainer.fit(model, train_dataloaders=loader)
    return model, trainer


def plain_torch_loop() -> torch.Tensor:
    """The textbook loop over the same epoch orders: one SGD step per minibatch, autograd's
    gradient."""
    x, y = data()
    torch.manual_seed(SEED)
    linear = torch.nn.Linear(FEATURES, 1)
    optimizer = torch.optim.SGD(linear.parameters(), lr=LR)
    for epoch in range(EPOCHS):
        for idx in epoch_permutation(N, SEED, epoch).split(BATCH):
            loss = F.binary_cross_entropy_with_logits(linear(x[idx]).squeeze(-1), y[idx].float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return torch.cat([linear.weight.flatten(), linear.bias])


def params(model: LogisticRegression) -> torch.Tensor:
    return torch.cat([model.linear.weight.detach().flatten(), model.linear.bias.detach()])


def test_grouped_minibatches_update_exactly_like_one_minibatch_per_step() -> None:
    one, trainer_one = fit(minibatches_per_step=1)
    grouped, trainer_grouped = fit(minibatches_per_step=5)
    assert torch.equal(params(one), params(grouped))
    assert trainer_one.global_step == trainer_grouped.global_step == EPOCHS * N // BATCH


def test_plain_steps_update_exactly_like_lightnings_wrappers() -> None:
    fast, fast_trainer = fit(minibatches_per_step=4)
    listener = ListensToSteps()
    wrapped, wrapped_trainer = fit(minibatches_per_step=4, callbacks=[listener])
    assert fast.solver.plain_steps and not wrapped.solver.plain_steps
    assert listener.calls == EPOCHS * N // BATCH  # Lightning's wrappers ran, hooks included
    assert torch.equal(params(fast), params(wrapped))
    # The closed-form gradient against autograd's, with torch's own SGD.
    torch.testing.assert_close(params(fast), plain_torch_loop(), rtol=0, atol=1e-6)
    # Steps are counted alike: global_step drives checkpoints, resume and max_steps.
    assert fast_trainer.global_step == wrapped_trainer.global_step == EPOCHS * N // BATCH


@pytest.mark.parametrize(
    "trainer_args", [{"precision": "bf16-mixed"}, {"profiler": "simple"}], ids=str
)
def test_lightnings_wrappers_stay_where_they_do_work(trainer_args: dict) -> None:
    """Mixed precision (autocast, scaling) and profilers need manual_backward/step."""
    model, _ = fit(minibatches_per_step=4, **trainer_args)
    assert not model.solver.plain_steps


def test_train_classification_metrics_follow_the_validation_cadence() -> None:
    """train/acc, auroc, f1, ece on the epochs that validate and the last; train/loss every
    epoch; the values and the weights are those of a run that computes them every epoch."""
    every, sparse = Recorder(), Recorder()
    dense_model, _ = fit(4, logger=every, max_epochs=7)
    sparse_model, _ = fit(4, logger=sparse, max_epochs=7, check_val_every_n_epoch=3)
    assert list(sparse.curve("train/loss")) == list(range(7))
    assert sparse.curve("train/loss") == every.curve("train/loss")
    for key in ("train/acc", "train/auroc", "train/f1", "train/ece"):
        assert list(every.curve(key)) == list(range(7))
        assert sparse.curve(key) == {e: every.curve(key)[e] for e in (2, 5, 6)}
    assert torch.equal(params(dense_model), params(sparse_model))


def test_lightnings_transfer_moves_a_group_in_one_call() -> None:
    """Lightning moves a loader item through its `to`: the same group for tensors already on
    the device, a real move otherwise."""
    x, y = data()
    model = LogisticRegression(FEATURES)
    (group,) = list(tensor_loader(x, y, BATCH, minibatches_per_step=N))
    assert model.transfer_batch_to_device(group, torch.device("cpu"), 0) is group
    moved = model.transfer_batch_to_device(group, torch.device("meta"), 0)
    assert len(moved) == len(group)
    moved_tensors = [t for x, y, _ in moved for t in (x, y)]
    assert [t.device.type for t in moved_tensors] == ["meta"] * 2 * (N // BATCH)


@pytest.mark.parametrize(
    ("mode", "epochs", "best_epoch"),
    [("min", 9, 8), ("max", 9, 2), ("min", 8, 5)],  # saves every 3rd epoch: 2, 5, 8 (0-based)
)
def test_checkpoint_saves_what_two_stock_callbacks_save(
    tmp_path, mode: str, epochs: int, best_epoch: int
) -> None:
    """One FastCheckpoint (monitor + save_last) leaves the best file that Lightning's
    best-k callback leaves and a last.ckpt of the finished run, like a second callback saving
    every epoch; last.ckpt is a hard link to the best file exactly when the final save improved.
    train/loss falls every epoch, so with mode=max only the first save is a best."""
    from lightning.pytorch.callbacks import ModelCheckpoint as LightningCheckpoint

    from lrexp.lightning_fast import FastCheckpoint as ModelCheckpoint

    best = {"filename": "best-{epoch}", "monitor": "train/loss", "mode": mode}
    ours, theirs = tmp_path / "ours", tmp_path / "lightning"
    every_3rd = {"save_on_train_epoch_end": True, "every_n_epochs": 3}
    ours_callback = ModelCheckpoint(dirpath=ours, save_last=True, **best, **every_3rd)
    fit(4, callbacks=[ours_callback], max_epochs=epochs, enable_checkpointing=True)
    reference = [
        LightningCheckpoint(dirpath=theirs, **best, **every_3rd),
        LightningCheckpoint(dirpath=theirs, filename="last", save_on_train_epoch_end=True),
    ]
    fit(4, callbacks=reference, max_epochs=epochs, enable_checkpointing=True)

    best_file = f"best-epoch={best_epoch}.ckpt"
    assert sorted(p.name for p in ours.iterdir()) == [best_file, "last.ckpt"]
    assert sorted(p.name for p in theirs.iterdir()) == [best_file, "last.ckpt"]
    for name in (best_file, "last.ckpt"):
        mine, lightnings = (torch.load(d / name, weights_only=False) for d in (ours, theirs))
        assert mine["global_step"] == lightnings["global_step"]
        for key, value in mine["state_dict"].items():
            assert torch.equal(value, lightnings["state_dict"][key])
    assert (ours / "last.ckpt").samefile(ours / best_file) == (best_epoch == epochs - 1)


def test_progress_bar_ends_like_lightnings(
    monkeypatch,
) -> None:
    """FastProgressBar leaves the bars Lightning's RichProgressBar leaves, but the training
    thread no longer redraws the display at every epoch start (Lightning's: at least once an
    epoch); its refresh thread draws instead."""
    from lightning.pytorch.callbacks import RichProgressBar
    from rich.live import Live

    from lrexp.lightning_fast import FastProgressBar as ProgressBar

    redraws = {"training thread": 0}
    draw = Live.refresh

    def counted(live: Live) -> None:
        if threading.current_thread() is threading.main_thread():
            redraws["training thread"] += 1
        draw(live)

    monkeypatch.setattr(Live, "refresh", counted)
    epochs, ends = 30, {}
    for bar_type in (RichProgressBar, ProgressBar):
        redraws["training thread"] = 0
        bar = bar_type(refresh_rate=10)
        fit(N // BATCH, callbacks=[bar], enable_progress_bar=True, max_epochs=epochs)
        tasks = [(t.description, t.completed, t.total, t.visible) for t in bar.progress.tasks]
        ends[bar_type] = tasks, redraws["training thread"]
    (lightnings, lightnings_redraws), (ours, our_redraws) = ends.values()
    assert ours == lightnings
    assert lightnings[0][:3] == (f"Epoch {epochs - 1}/{epochs - 1}", 1, 1)
    assert lightnings_redraws >= epochs
    assert our_redraws <= 3


@pytest.mark.parametrize(
    ("version", "inside"),
    [("2.6.0", False), ("2.6.1", True), ("2.6.6", True), ("2.6.99", True), ("2.7.0", False)],
)
def test_the_fast_path_runs_only_inside_the_tested_window(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, version: str, inside: bool
) -> None:
    from lrexp import lightning_fast

    monkeypatch.setattr(lightning_fast.L, "__version__", version)
    assert lightning_fast.lightning_in_tested_window() is inside
    with caplog.at_level("WARNING", logger="lrexp.lightning_fast"):
        assert lightning_fast.fast_path(True) is inside
        assert lightning_fast.fast_path(False) is False
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == (0 if inside else 1)
    if not inside:
        assert f"lightning {version} is outside" in said[0] and "stock" in said[0]


@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs"])
def test_fast_and_stock_paths_give_the_same_run(tmp_path, run_main, optimizer: str) -> None:
    """trainer.fast=false builds Lightning's own parts throughout (two ModelCheckpoints,
    RichProgressBar, LightningOptimizer.step, log_dict): same weights, same metrics, same best
    checkpoint; only last.ckpt is no hard link."""
    import json

    from lrexp.callbacks import checkpoints, progress_bar
    from lrexp.lightning_fast import FastCheckpoint, FastProgressBar
    from lrexp.train import main
    from tests.conftest import write_mnist_like

    assert [type(c) for c in checkpoints(fast=False, monitor="val/loss")] == [
        L.pytorch.callbacks.ModelCheckpoint
    ] * 2
    assert type(progress_bar(fast=False)) is L.pytorch.callbacks.RichProgressBar
    assert [type(c) for c in checkpoints(fast=True, monitor="val/loss")] == [FastCheckpoint]
    assert type(progress_bar(fast=True)) is FastProgressBar

    write_mnist_like(tmp_path / "data" / "MNIST" / "raw")
    runs = {}
    for fast in ("true", "false"):
        run_dir = tmp_path / f"fast-{fast}"
        overrides = [
            "data=mnist",
            f"paths.data_dir={tmp_path / 'data'}",
            f"model.optimizer={optimizer}",
            "trainer.max_epochs=4",
            "trainer.check_val_every_n_epoch=2",
            f"trainer.fast={fast}",
            "logger=csv",
            f"hydra.run.dir={run_dir}",
        ]
        assert run_main(main, *overrides) == 0
        best = next((run_dir / "checkpoints").glob("best-*.ckpt"))
        state = torch.load(best, weights_only=True)["state_dict"]
        runs[fast] = json.loads((run_dir / "metrics.json").read_text()), best.name, state
    (fast_metrics, fast_best, fast_state), (stock_metrics, stock_best, stock_state) = runs.values()
    assert fast_metrics == stock_metrics
    assert fast_best == stock_best
    assert fast_state.keys() == stock_state.keys()
    assert all(torch.equal(fast_state[k], stock_state[k]) for k in fast_state)
