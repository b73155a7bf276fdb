"""The pipeline that train, eval and baseline share: build the DataModule, LightningModule and
Trainer from the composed config; check the Trainer's loggers and launcher; fit; score (the
stages' metrics, and what the data adds: lrexp.data.extras); and leave the run's files
(lrexp.rundir.finish)."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from lrexp import rundir, solvers
from lrexp.checkpoints import CHECKPOINT_DIR
from lrexp.config import build, build_group, check_class_weight, rename_keys
from lrexp.data.batches import preprocessed_split
from lrexp.data.extras import Fitted
from lrexp.errors import LrexpError, RunInterrupted
from lrexp.lightning_fast import fast_path, relaunches_command_line
from lrexp.model import LogisticRegression, predicted_labels
from lrexp.path import path_values
from lrexp.tracking import check_tracking

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
    rename_keys(cfg)  # done by check_config already, unless a caller skipped it
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build(cfg.data, "data")
    trainer, fast = build_trainer(cfg)
    if cfg.model.optimizer == "lbfgs" and trainer.world_size > 1 and not datamodule.streamed:
        raise LrexpError(
            "model.optimizer=lbfgs runs in one process (full-batch steps): use trainer=cpu or "
            "trainer=gpu, data.stream=true (one pass per evaluation, over the ranks), or "
            "model.optimizer=sgd for DDP"
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
    streamed = datamodule.streamed
    # A stream's training rows are counted, not held; a wide table's features are mostly not
    # stored (lrexp.data.wide_features).
    rows = int(sum(datamodule.class_counts)) if streamed else len(datamodule.splits["train"][1])
    width = datamodule.stored_width
    optimizer, why = solvers.choose_optimizer(cfg.model, rows, width, world_size, streamed)
    if why:
        log.info(f"model.optimizer=auto: {optimizer} ({why})")
    C = cfg.model.get("C")
    if streamed and (C == "path" or (cfg.model.lr == "auto" and optimizer == "sgd")):
        raise LrexpError(
            "data.stream=true: model.C=path and model.lr=auto for sgd measure the training "
            "split in memory; give model.C=NUMBER and model.lr=NUMBER, or model.optimizer=lbfgs"
        )
    if C == "path":  # the path's first value; lrexp.path fits the others
        if world_size > 1:
            raise LrexpError("model.C=path runs in one process: use trainer=cpu or trainer=gpu")
        length = cfg.model.get("path_length", 20)
        x, labels, weight = preprocessed_split(datamodule, "train")
        C = path_values(x, labels, datamodule.num_classes, length, weight)[0]
    lr = cfg.model.lr
    if lr == "auto":
        batch_size = (datamodule.hparams.get("batch_size") or rows) * world_size
        # sgd measures its step on the training split (never streamed here: checked above)
        x, _, sample_weight = (
            (None, None, None) if streamed else preprocessed_split(datamodule, "train")
        )
        momentum = cfg.model.get("momentum", 0.0)
        classes = datamodule.num_classes
        lr = solvers.resolve_lr(lr, optimizer, x, batch_size, classes, momentum, sample_weight)
        log.info(f"model.lr=auto: {lr:.4g} for {optimizer}")
    model = build(
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
    # A wide table's one-hot and hashed columns start at weight 0: one that no training row
    # holds then stays 0, instead of keeping its random initial weight.
    if (start := datamodule.sparse_start) is not None:
        with torch.no_grad():
            model.linear.weight[:, start:] = 0.0
    return model


def check_trainer(trainer: L.Trainer) -> None:
    """What the Trainer needs from outside, checked before the run dir is claimed: its launcher
    can run here, and its tracking server is an MLflow server that answers
    (lrexp.tracking.check_tracking)."""
    check_launcher(trainer)
    check_tracking(trainer.loggers)


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


def fitted(model: LogisticRegression, datamodule: L.LightningDataModule) -> Fitted:
    """The model as the data's extras see it: its weights and its test-split predictions."""
    raw, _ = datamodule.splits["test"]
    with torch.no_grad():
        probs = model(datamodule.preprocess(raw.to(model.device))).cpu()
    weight, bias = (p.detach().cpu() for p in (model.linear.weight, model.linear.bias))
    hp = model.hparams
    class_weights = model.objective.class_weights
    return Fitted(
        weight,
        bias,
        test_probs=probs,
        test_predicted=predicted_labels(probs),
        class_weights=None if class_weights is None else class_weights.cpu(),
        l2=0.0 if hp.C is None else (1 - hp.l1_ratio) / hp.C,
        l1_ratio=0.0 if hp.C is None else hp.l1_ratio,
        ci_level=hp.get("ci_level", 0.95),
    )


def score(
    trainer: L.Trainer,
    model: LogisticRegression,
    datamodule: L.LightningDataModule,
    stages: tuple[str, ...],
    ckpt_path: str | None = None,
) -> dict[str, float]:
    """Run the stages ("validate", "test") on the checkpoint (the model's weights without one);
    their metrics and the data's own (run_metrics)."""
    metrics: dict[str, float] = {}
    for stage in stages:
        getattr(trainer, stage)(
            model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True
        )
        prefix = "val/" if stage == "validate" else "test/"
        metrics |= {
            k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith(prefix)
        }
    return metrics | datamodule.run_metrics(fitted(model, datamodule))


def score_best(
    trainer: L.Trainer, model: LogisticRegression, datamodule: L.LightningDataModule
) -> tuple[dict[str, float], str]:
    """Validate and test the best checkpoint (the final weights without one); its metrics (with
    the convergence report on the training split, and the data's own) and its path ("" without
    one)."""
    callback = trainer.checkpoint_callback
    best = callback.best_model_path if callback is not None else ""
    metrics = score(trainer, model, datamodule, ("validate", "test"), best or None)
    if "train" not in datamodule.splits:  # streamed: one pass over this rank's share
        passes = partial(
            datamodule.train_passes, trainer.global_rank, trainer.world_size, model.device
        )
        return metrics | solvers.streamed_report(model, passes), best
    training = preprocessed_split(datamodule, "train", model.device)
    return metrics | solvers.objective_report(model, *training), best


def finish(
    title: str,
    run_dir: Path,
    trainer: L.Trainer,
    model: LogisticRegression,
    datamodule: L.LightningDataModule,
    metrics: dict[str, float],
    lines: dict[str, str],
    cfg: DictConfig | None = None,
    best_checkpoint: str | None = None,
) -> Path | None:
    """On rank 0: the run's files, the data's figures and files among them
    (lrexp.rundir.finish); metrics.json's path."""
    if not trainer.is_global_zero:
        return None
    fit = fitted(model, datamodule)
    figures, files = datamodule.run_figures(fit), datamodule.run_files(fit)
    return rundir.finish(
        title, run_dir, trainer.loggers, figures, files, metrics, lines, cfg, best_checkpoint
    )
