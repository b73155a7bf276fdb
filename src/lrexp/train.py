"""`python -m lrexp.train`: compose → instantiate → fit → test the best checkpoint → run dir."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lrexp.cli import entry_point, run_as_command
from lrexp.config import build, build_group, check_config
from lrexp.errors import LrexpError
from lrexp.model import LogisticRegression
from lrexp.run import (
    check_checkpoint_fits,
    continues_run,
    load_checkpoint,
    print_summary,
    resolve_ckpt_path,
    save_figures,
    save_run_config,
    start_run,
    write_metrics,
)
from lrexp.tracking import check_tracking, log_artifacts

log = logging.getLogger(__name__)

# lrexp's loaders serve in-memory tensors: worker processes would only add overhead.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
# lrexp logs whole epochs, not steps, so Trainer(log_every_n_steps) changes no curve.
warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
# Lightning's own use of an API that torch deprecates; nothing a run can change.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def build_experiment(
    cfg: DictConfig,
) -> tuple[L.LightningDataModule, LogisticRegression, L.Trainer]:
    """Seed, then instantiate the DataModule, model and Trainer (with callbacks and loggers)."""
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build(cfg.data, "data")
    model = build(cfg.model, "model")
    callbacks = build_group(cfg, "callbacks")
    if not cfg.trainer.get("enable_progress_bar", True):
        # As in plain Lightning, this switch turns the bar off (Lightning would reject a bar
        # among the callbacks then).
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = build_group(cfg, "logger")
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    return datamodule, model, trainer


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, validate and test the best checkpoint; return the final metrics."""
    check_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, run_dir)
    datamodule, model, trainer = build_experiment(cfg)
    _check_launcher(trainer)
    check_tracking(trainer.loggers)
    continuing = continues_run(ckpt_path, run_dir)
    if trainer.is_global_zero:
        # Read the data and the checkpoint before the run dir is touched: a bad file stops here.
        datamodule.prepare_data()
        datamodule.setup("fit")
        if ckpt_path is not None:
            check_checkpoint_fits(load_checkpoint(ckpt_path), model, ckpt_path)
        start_run(run_dir, cfg, continuing)

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    tested = best or None
    metrics: dict[str, float] = {}
    for stage, run_stage in (("val/", trainer.validate), ("test/", trainer.test)):
        run_stage(model, datamodule=datamodule, ckpt_path=tested, verbose=False, weights_only=True)
        metrics |= {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith(stage)}
    if model.hparams.in_features == 1:
        metrics |= model.toy_summary()
    if continuing and trainer.is_global_zero:
        save_run_config(run_dir, cfg)  # the resumed run's config replaces the earlier one now
    _finish(cfg, trainer, model, datamodule, metrics, run_dir)
    return metrics


def _check_launcher(trainer: L.Trainer) -> None:
    """Lightning's ddp starts the other processes by re-running the command line, with this run's
    dir: under -m, each of them would start the whole sweep again and the sweep would hang."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = trainer.strategy.launcher
    if (
        HydraConfig.initialized()
        and HydraConfig.get().mode == RunMode.MULTIRUN
        and isinstance(launcher, _SubprocessScriptLauncher)
        and launcher.num_processes > 1
        and not launcher.cluster_environment.creates_processes_externally
    ):
        raise LrexpError(
            "-m (multirun) with trainer.strategy=ddp: Lightning's ddp re-runs the command line "
            "for each extra process, which a sweep cannot do. For sweeps use "
            "trainer.strategy=ddp_spawn, or hydra/launcher=slurm (one SLURM task per device)"
        )


@rank_zero_only
def _finish(cfg, trainer, model, datamodule, metrics: dict[str, float], run_dir: Path) -> None:
    from lrexp import plots

    save_figures(run_dir, plots.run_figures(model, datamodule), trainer.loggers)
    path = write_metrics(run_dir, metrics)
    best = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    log_artifacts(trainer.loggers, run_dir, best.best_model_path if best else None)
    for logger in trainer.loggers:
        params = OmegaConf.to_container(cfg, resolve=True)
        if hasattr(logger.experiment, "add_figure"):
            # HPARAMS-tab columns; the hp/ prefix keeps them off the training curves (step 0).
            logger.log_hyperparams(params, {f"hp/{key}": value for key, value in metrics.items()})
        else:
            logger.log_hyperparams(params)
        logger.finalize("success")
    print_summary(
        "lrexp.train",
        metrics,
        {
            "run dir:": str(run_dir),
            "metrics:": str(path),
            "best checkpoint:": (best.best_model_path or "-") if best else "-",
            "tensorboard:": f"tensorboard --logdir {run_dir}",
        },
    )


def task(cfg: DictConfig) -> dict[str, float] | float:
    """Hydra's task: train, then return the metrics — or, with `optimized_metric` set (as
    hparams_search=optuna does), the one number a sweeper optimises."""
    metrics = train(cfg)
    key = cfg.get("optimized_metric")
    if key is None:
        return metrics
    if key not in metrics:
        raise LrexpError(
            f"optimized_metric={key} is not a metric of this run: use one of {sorted(metrics)}"
        )
    return metrics[key]


main = entry_point("config")(task)

if __name__ == "__main__":
    run_as_command(main)
