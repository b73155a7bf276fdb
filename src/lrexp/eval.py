"""`python -m lrexp.eval ckpt_path=PATH`: test a saved checkpoint, in a run dir of its own.

The model and, by default, the DataModule are rebuilt from the checkpoint alone: the DataModule's
class, hyper-parameters (classes, split, seed, normalize) and state (the training split's
standardisation statistics) are the training run's, so the test metrics are the run's own.
`data=NAME` (with any data.* overrides) tests on that data config instead; the preprocessing
state still comes from the checkpoint, and the data must give the features the model takes.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lrexp.cli import entry_point, run_as_command
from lrexp.config import build, build_group, check_config
from lrexp.errors import LrexpError
from lrexp.model import DATAMODULE_CLASS_KEY, LogisticRegression
from lrexp.run import load_checkpoint, print_summary, save_figures, start_run, write_metrics

DATAMODULE_HPARAMS_KEY = L.LightningDataModule.CHECKPOINT_HYPER_PARAMS_KEY


def checkpoint_path(cfg: DictConfig, command: str) -> Path:
    """The existing file that cfg.ckpt_path names."""
    if OmegaConf.is_missing(cfg, "ckpt_path") or cfg.ckpt_path is None:
        raise LrexpError(
            f"ckpt_path is missing: python -m lrexp.{command} "
            "ckpt_path=outputs/DATE/TIME/checkpoints/last.ckpt"
        )
    path = Path(cfg.ckpt_path)
    if not path.is_file():
        raise LrexpError(f"ckpt_path={cfg.ckpt_path}: no such file; give the path of a .ckpt file")
    return path


def restore(cfg: DictConfig, path: Path) -> tuple[LogisticRegression, L.LightningDataModule]:
    """The checkpoint's model, and its DataModule (or cfg.data's, when `data=NAME` was given)."""
    checkpoint = load_checkpoint(str(path))
    try:
        model = LogisticRegression(**checkpoint["hyper_parameters"])
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError) as err:
        raise LrexpError(f"ckpt_path={path} is not an lrexp checkpoint ({err!r})") from None
    saved = checkpoint.get(DATAMODULE_HPARAMS_KEY, {})
    if cfg.get("data") is None:
        datamodule = _datamodule_class(checkpoint, path)(**saved)
    else:
        datamodule = build(cfg.data, "data")
        _check_compatible(datamodule, model, saved, path)
    if state := checkpoint.get(type(datamodule).__qualname__):
        datamodule.load_state_dict(state)
    return model, datamodule


def _datamodule_class(checkpoint: dict[str, Any], path: Path) -> type[L.LightningDataModule]:
    """The run's DataModule class; only lrexp's own are imported, whatever the file says."""
    name = checkpoint.get(DATAMODULE_CLASS_KEY)
    module, _, qualname = (name or "").rpartition(".")
    if not module.startswith("lrexp.data."):
        raise LrexpError(
            f"ckpt_path={path} does not name lrexp data ({name!r}): choose them with data=NAME"
        )
    try:
        cls = getattr(importlib.import_module(module), qualname, None)
    except ImportError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, L.LightningDataModule)):
        raise LrexpError(
            f"ckpt_path={path} names unknown data {name!r}: choose them with data=NAME"
        )
    return cls


def _check_compatible(
    datamodule: L.LightningDataModule, model: LogisticRegression, saved: dict, path: Path
) -> None:
    """Given data must give the model's features, preprocessed as in training."""
    if datamodule.in_features != model.hparams.in_features:
        raise LrexpError(
            f"ckpt_path={path} takes {model.hparams.in_features} features but this data config "
            f"gives {datamodule.in_features}: choose the data it was trained on, or leave data= out"
        )
    normalize = datamodule.hparams.get("normalize")
    if normalize != saved.get("normalize"):
        raise LrexpError(
            f"data.normalize={normalize} but ckpt_path={path} was trained with "
            f"data.normalize={saved.get('normalize')}: set it the same"
        )


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint as its training run did; write metrics.json to this run dir."""
    path = checkpoint_path(cfg, "eval")
    check_config(cfg)
    model, datamodule = restore(cfg, path)
    run_dir = Path(cfg.paths.output_dir)
    loggers = build_group(cfg, "logger")
    trainer = build(cfg.trainer, "trainer", logger=loggers or False)
    if trainer.is_global_zero:
        # Read the test data before the run dir is touched: a bad file stops here.
        datamodule.prepare_data()
        datamodule.setup("test")
        start_run(run_dir, cfg, continuing=False)
    trainer.test(model, datamodule=datamodule, verbose=False)
    metrics = {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    if model.hparams.in_features == 1:
        metrics |= model.toy_summary()
    _finish(cfg, trainer, model, datamodule, metrics, run_dir)
    return metrics


@rank_zero_only
def _finish(cfg, trainer, model, datamodule, metrics: dict[str, float], run_dir: Path) -> None:
    from lrexp import plots

    save_figures(run_dir, plots.run_figures(model, datamodule), trainer.loggers)
    for logger in trainer.loggers:
        logger.finalize("success")
    path = write_metrics(run_dir, metrics)
    print_summary(
        "lrexp.eval",
        metrics,
        {
            "checkpoint:": str(cfg.ckpt_path),
            "run dir:": str(run_dir),
            "metrics:": str(path),
            "tensorboard:": f"tensorboard --logdir {run_dir}",
        },
    )


main = entry_point("eval")(evaluate)

if __name__ == "__main__":
    run_as_command(main)
