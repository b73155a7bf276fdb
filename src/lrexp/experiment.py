"""A training run's pieces, shared by train and baseline: build the DataModule, LightningModule
and Trainer from the composed config, fit, and score the best checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from lrexp import solvers
from lrexp.checkpoints import CHECKPOINT_DIR
from lrexp.config import build, build_group, check_class_weight
from lrexp.data.toy import is_toy
from lrexp.errors import LrexpError, RunInterrupted
from lrexp.lightning_fast import fast_path, relaunches_command_line
from lrexp.model import LogisticRegression
from lrexp.path import path_values

log = logging.getLogger(__name__)


def build_trainer(cfg: DictConfig, with_callbacks: bool = True) -> tuple[L.Trainer, bool]:
    """The Trainer with its callbacks and loggers, and whether it runs lrexp's fast path."""
    settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    fast = fast_path(bool(settings.pop("fast", True)))
    callbacks = build_group(cfg, "callbacks") if with_callbacks else []
    if not settings.get("enable_progress_bar", True):
        # As in plain Lightning, this switch turns the bar off (Lightning would reject a bar
        # among the callbacks then).
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = build_group(cfg, "logger")
    trainer = build(
        OmegaConf.create(settings), "trainer", callbacks=callbacks, logger=loggers or False
    )
    return trainer, fast


def build_experiment(
    cfg: DictConfig,
) -> tuple[L.LightningDataModule, LogisticRegression, L.Trainer]:
    """Seed; instantiate the DataModule and Trainer; read the training split; then the model,
    whose width, classes and class counts come from the data."""
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build(cfg.data, "data")
    trainer, fast = build_trainer(cfg)
    if cfg.model.optimizer == "lbfgs" and trainer.world_size > 1:
        raise LrexpError(
            "model.optimizer=lbfgs runs in one process (full-batch steps): use trainer=cpu or "
            "trainer=gpu, or model.optimizer=sgd for DDP"
        )
    if trainer.is_global_zero:
        datamodule.prepare_data()  # the only step that may download
    datamodule.setup("fit")  # a bad file stops here, before the run dir is touched
    model = build_model(cfg, datamodule, trainer.world_size)
    model.fast = fast
    return datamodule, model, trainer


def build_model(
    cfg: DictConfig, datamodule: L.LightningDataModule, world_size: int = 1
) -> LogisticRegression:
    """The model, with the data's width, classes and rows per class. model.lr=auto is measured
    on the training split at the step's effective minibatch: DDP averages the gradients of
    `world_size` minibatches, so N ranks at batch B step like one process at N·B."""
    check_class_weight(cfg.model.get("class_weight"), datamodule.num_classes)
    rows = len(datamodule.splits["train"][1])
    optimizer, why = solvers.choose_optimizer(cfg.model, rows, datamodule.in_features, world_size)
    if why:
        log.info(f"model.optimizer=auto: {optimizer} ({why})")
    C = cfg.model.get("C")
    if C == "path":  # the path's first value; lrexp.path fits the others
        if world_size > 1:
            raise LrexpError("model.C=path runs in one process: use trainer=cpu or trainer=gpu")
        labels = datamodule.splits["train"][1]
        length = cfg.model.get("path_length", 20)
        features = _training_features(datamodule)
        C = path_values(features, labels, datamodule.num_classes, length)[0]
    lr = cfg.model.lr
    if lr == "auto":
        batch_size = (datamodule.hparams.get("batch_size") or rows) * world_size
        lr = solvers.resolve_lr(
            lr,
            optimizer,
            _training_features(datamodule),
            batch_size,
            datamodule.num_classes,
            cfg.model.get("momentum", 0.0),
        )
        log.info(f"model.lr=auto: {lr:.4g} for {optimizer}")
    return build(
        cfg.model,
        "model",
        in_features=datamodule.in_features,
        num_classes=datamodule.num_classes,
        class_counts=list(datamodule.class_counts),
        class_names=list(datamodule.label_names),
        lr=lr,
        optimizer=optimizer,
        C=C,
    )


def _training_features(datamodule: L.LightningDataModule) -> torch.Tensor:
    """The preprocessed training rows (what SGD's automatic step size is measured on)."""
    raw, _ = datamodule.splits["train"]
    return datamodule.preprocess(raw)


def check_launcher(trainer: L.Trainer) -> None:
    """Lightning's ddp starts the other processes by re-running the command line, with this run's
    dir: under -m, each of them would start the whole sweep again and the sweep would hang."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if (
        HydraConfig.initialized()
        and HydraConfig.get().mode == RunMode.MULTIRUN
        and relaunches_command_line(trainer.strategy.launcher)
    ):
        raise LrexpError(
            "-m (multirun) with trainer.strategy=ddp: Lightning's ddp re-runs the command line "
            "for each extra process, which a sweep cannot do. For sweeps use "
            "trainer.strategy=ddp_spawn, or hydra/launcher=slurm (one SLURM task per device)"
        )


def fit(
    trainer: L.Trainer,
    model: LogisticRegression,
    datamodule: L.LightningDataModule,
    ckpt_path: str | None,
    run_dir: Path,
) -> None:
    """trainer.fit; Ctrl-C (which Lightning turns into exit status 1) becomes RunInterrupted,
    naming the checkpoint to resume from."""
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit:
        if not trainer.interrupted:
            raise
        last = run_dir / CHECKPOINT_DIR / "last.ckpt"
        raise RunInterrupted(
            f"interrupted in epoch {trainer.current_epoch}; "
            + (
                f"resume with the same command plus hydra.run.dir={run_dir} ckpt_path=last"
                if last.is_file()
                else "no checkpoint was saved yet, so start again"
            )
        ) from None


def score_best(
    trainer: L.Trainer, model: LogisticRegression, datamodule: L.LightningDataModule
) -> tuple[dict[str, float], str]:
    """Validate and test the best checkpoint (the final weights without one); its metrics (with
    the convergence report on the training split, and the lecture's answer for the toy) and its
    path ("" without one)."""
    callback = trainer.checkpoint_callback
    best = callback.best_model_path if callback is not None else ""
    metrics: dict[str, float] = {}
    for stage, run_stage in (("val/", trainer.validate), ("test/", trainer.test)):
        run_stage(
            model, datamodule=datamodule, ckpt_path=best or None, verbose=False, weights_only=True
        )
        metrics |= {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith(stage)}
    raw, labels = datamodule.splits["train"]
    x = datamodule.preprocess(raw.to(model.device))
    metrics |= solvers.objective_report(model, x, labels.to(model.device))
    if is_toy(datamodule):
        metrics |= model.toy_summary()
    return metrics, best
