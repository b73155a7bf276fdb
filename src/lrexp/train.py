"""`python -m lrexp.train`: compose → build → fit → test the best checkpoint → run dir."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from lrexp.checkpoints import (
    check_checkpoint_fits,
    continues_run,
    load_checkpoint,
    resolve_ckpt_path,
)
from lrexp.cli import entry_point, run_as_command
from lrexp.config import check_config
from lrexp.errors import LrexpError
from lrexp.experiment import build_experiment, check_trainer, finish, fit, score_best
from lrexp.path import fit_path, write_path
from lrexp.rundir import save_run_config, start_run


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, validate and test the best checkpoint; return the final metrics."""
    check_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, run_dir)
    if cfg.model.get("C") == "path" and ckpt_path is not None:
        raise LrexpError(
            "model.C=path fits its values from scratch: leave ckpt_path out, or continue the "
            "path's best model with model.C=<its path/best_C> ckpt_path=..."
        )
    datamodule, model, trainer = build_experiment(cfg)
    check_trainer(trainer)  # a tracking server that is down stops the run here
    continuing = continues_run(ckpt_path, run_dir)
    if trainer.is_global_zero:
        # The checkpoint is read before the run dir is touched: a bad file stops here.
        if ckpt_path is not None:
            check_checkpoint_fits(load_checkpoint(ckpt_path), model, ckpt_path, datamodule)
        start_run(run_dir, cfg, continuing)

    path = None
    if cfg.model.get("C") == "path":
        path = fit_path(model, datamodule, trainer, cfg.get("optimized_metric") or "val/loss")
    fit(trainer, model, datamodule, ckpt_path, run_dir)
    metrics, best = score_best(trainer, model, datamodule)
    if path is not None and trainer.is_global_zero:
        rows, weights, best_C = path
        metrics["path/best_C"] = best_C
        write_path(run_dir, rows, weights, datamodule.weight_names(), best_C, trainer.loggers)
    if continuing and trainer.is_global_zero:
        save_run_config(run_dir, cfg)  # the resumed run's config replaces the earlier one now
    lines = {"best checkpoint:": best or "-"}
    finish("lrexp.train", run_dir, trainer, model, datamodule, metrics, lines, cfg, best or None)
    return metrics


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
