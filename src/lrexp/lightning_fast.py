"""Every use of a library or interpreter internal in lrexp, behind one switch.

lrexp steps around a few parts of Lightning that cost more than a logistic regression's whole
epoch. Each piece below names the stock behaviour it replaces, the invariant it keeps, and the
test that fails when a Lightning release breaks it. They are used only where `fast_path(...)`
says so: the Lightning versions in TESTED_LIGHTNING (the window CI runs the fast-path tests on)
and `trainer.fast=true`. Anywhere else lrexp builds stock Lightning parts — two ModelCheckpoints
(best and last), RichProgressBar, LightningOptimizer.step, `LightningModule.log_dict` — with the
same results, only slower.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch import callbacks
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from packaging.version import Version
from torch import Tensor

log = logging.getLogger(__name__)

# Lightning releases whose internals the pieces below were read against and tested on (CI runs
# tests/test_lightning_fast.py on the floor and on the newest release inside the window).
TESTED_LIGHTNING = (Version("2.6.1"), Version("2.7"))  # [floor, ceiling)
# What Lightning calls around each manual backward and optimizer step.
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def lightning_in_tested_window(version: str | None = None) -> bool:
    floor, ceiling = TESTED_LIGHTNING
    return floor <= Version(version or L.__version__) < ceiling


def fast_path(requested: bool) -> bool:
    """Whether this run uses the pieces below: asked for, and a tested Lightning release. Outside
    the window one line says that the stock (slower) path runs."""
    if not requested:
        return False
    if lightning_in_tested_window():
        return True
    floor, ceiling = TESTED_LIGHTNING
    log.warning(
        f"lightning {L.__version__} is outside the versions lrexp's fast path is tested on "
        f"(>={floor}, <{ceiling}): using Lightning's stock loop parts (same results, slower)"
    )
    return False


# --- the optimizer step ---------------------------------------------------------------------


def step_hooks_idle(trainer: L.Trainer) -> bool:
    """Whether LightningOptimizer.step would do nothing but call empty hooks around the
    optimizer's update: one process (no gradient sync), 32-bit precision (no loss scaling),
    no profiler, and no callback or module method on the step hooks. Anything else keeps
    Lightning's wrappers."""
    module = trainer.lightning_module
    owners = [(module, L.LightningModule), *((c, Callback) for c in trainer.callbacks)]
    listened = any(
        getattr(type(owner), hook) is not getattr(base, hook)
        for owner, base in owners
        for hook in STEP_HOOKS
    )
    return (
        type(trainer.strategy) is SingleDeviceStrategy
        and type(trainer.precision_plugin) is Precision
        and type(trainer.profiler) is PassThroughProfiler
        and type(module).backward is L.LightningModule.backward
        and not listened
    )


def count_step(optimizer: LightningOptimizer, update: Callable[..., None], *args: Any) -> None:
    """Run `update(*args)` (the torch optimizer's update from the gradients already in .grad)
    as a step of `optimizer`, where step_hooks_idle holds.

    Replaces: LightningOptimizer.step (~300 Python calls through the strategy and precision
    plugin, which would only call the update and empty hooks).
    Keeps: the step is counted as LightningOptimizer.step counts it (its private
    `_on_before_step`/`_on_after_step` advance trainer.global_step), so checkpoints, resume and
    max_steps see the same step numbers.
    Test: tests/test_lightning_fast.py::test_plain_steps_update_exactly_like_lightnings_wrappers.
    """
    optimizer._on_before_step()
    update(*args)
    optimizer._on_after_step()


# --- epoch metrics ----------------------------------------------------------------------------


def publish_to_trainer(
    trainer: L.Trainer, values: dict[str, float], shown: dict[str, float]
) -> None:
    """Hand an epoch's metric values to the trainer without `LightningModule.log`.

    Replaces: `log_dict`, whose per-key bookkeeping on every call outweighs a small model's
    epoch. Keeps: `trainer.callback_metrics` holds CPU tensors (ModelCheckpoint and
    EarlyStopping read and deep-copy them) and the progress bar shows `shown`, as log_dict
    with prog_bar=True would.
    Test: tests/test_lightning_fast.py::test_fast_and_stock_paths_give_the_same_run.
    """
    import torch

    trainer.callback_metrics.update({k: torch.tensor(v) for k, v in values.items()})
    trainer.progress_bar_metrics.update(shown)


# --- callbacks ------------------------------------------------------------------------------


class FastProgressBar(callbacks.RichProgressBar):
    """RichProgressBar drawn only by its refresh thread.

    Replaces: the epoch-start `Progress.reset`, which redraws the whole display on the training
    thread, once per epoch. Keeps: the bar's task states (description,
    completed, total, visible) end as Lightning's do; the reset asks the refresh thread for its
    next redraw (`soft_refresh`, Lightning >= 2.6.1), as every other update of the bar does.
    Test: tests/test_lightning_fast.py::test_progress_bar_ends_like_lightnings.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        progress = self.progress
        if progress is None:
            super().on_train_epoch_start(trainer, pl_module)
            return
        progress.refresh = progress.soft_refresh  # for this hook only
        try:
            super().on_train_epoch_start(trainer, pl_module)
        finally:
            del progress.refresh


class FastCheckpoint(callbacks.ModelCheckpoint):
    """One ModelCheckpoint that keeps the best file and a last.ckpt following every save.

    Replaces: two stock callbacks (best; last every `every_n_epochs`). Lightning's own
    `save_last` writes last.ckpt only on epochs that save a new top-k file, and deep-copies every
    logged metric on every epoch end.
    Keeps: last.ckpt holds the state after every due epoch and after the final epoch; when that
    epoch also saved a new best, last.ckpt is a hard link to it (made beside it and renamed
    over it, so it is whole at every moment; written as usual where links are unsupported).
    Uses ModelCheckpoint's private `_every_n_epochs`, `_should_save_on_train_epoch_end`,
    `_should_skip_saving_checkpoint`, `_monitor_candidates`, `_save_topk_checkpoint`,
    `_save_last_checkpoint`, `_last_checkpoint_saved`, `_last_global_step_saved`,
    `_should_remove_checkpoint`, `_remove_checkpoint`.
    Test: tests/test_lightning_fast.py::test_checkpoint_saves_what_two_stock_callbacks_save.
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


def checkpoint_this_epoch(trainer: L.Trainer) -> None:
    """Make this epoch, which the solver found converged and ends the run, a checkpointing one
    for every ModelCheckpoint, whatever its `every_n_epochs`.

    Replaces: nothing stock can do it: a run that stops between two due epochs leaves its
    final (here: optimal) weights in no best checkpoint. Keeps: the callbacks' other settings;
    the epoch is also made a validating one (check_val_every_n_epoch, public), so the best
    checkpoint is chosen on a fresh val/loss. Uses ModelCheckpoint's private `_every_n_epochs`
    (Lightning releases in TESTED_LIGHTNING only; elsewhere the best checkpoint may be an
    earlier epoch's).
    Test: tests/test_lightning_fast.py::test_fast_and_stock_paths_give_the_same_run[lbfgs].
    """
    trainer.check_val_every_n_epoch = 1
    if not lightning_in_tested_window():
        return
    for callback in trainer.checkpoint_callbacks:
        if callback._every_n_epochs >= 1:
            callback._every_n_epochs = 1


# --- the launcher ---------------------------------------------------------------------------


def relaunches_command_line(launcher: Any) -> bool:
    """Whether Lightning starts the other DDP processes by re-running this command line
    (`strategy=ddp` without an external cluster), which a Hydra sweep cannot survive.

    Uses: the private launcher class `_SubprocessScriptLauncher` (no public way to ask). Where a
    release renames it, the check says False and a sweep with strategy=ddp is not stopped early.
    Test: tests/test_train_scale.py::test_multirun_with_subprocess_ddp_stops_before_any_run_starts.
    """
    try:
        from lightning.pytorch.strategies.launchers.subprocess_script import (
            _SubprocessScriptLauncher,
        )
    except ImportError:
        return False
    return (
        isinstance(launcher, _SubprocessScriptLauncher)
        and launcher.num_processes > 1
        and not launcher.cluster_environment.creates_processes_externally
    )


# --- the interpreter ------------------------------------------------------------------------


def exit_now(code: int) -> None:
    """End the process as a normal exit would, minus the interpreter's module teardown.

    Replaces: the teardown of every module after torch and Lightning were imported, which
    takes seconds and changes nothing anyone can see. Keeps: other threads are joined by the caller,
    atexit handlers run (logging, TensorBoard and Hydra close their files; `atexit._run_exitfuncs`
    is CPython's private runner of them), the standard streams are flushed.
    Test: tests/test_cli.py::test_run_as_command_ends_like_a_normal_exit.
    """
    import sys

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
