"""`python -m lrexp.baseline [overrides]`: scikit-learn's LogisticRegression next to lrexp's fit.

Both models see exactly what the configured DataModule serves: they fit its train split's
features and labels and are scored on its val and test splits. lrexp's side is the fit that
`python -m lrexp.train` runs with the same overrides (tested, like there, with the best
checkpoint). Fit times count the fitting only: the data are read before either clock starts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from lrexp.cli import entry_point, run_as_command
from lrexp.config import check_config
from lrexp.errors import LrexpError
from lrexp.run import print_summary, start_run, write_metrics
from lrexp.train import build_experiment


def _sklearn_model(cfg: DictConfig) -> Any:
    """LogisticRegression(**cfg.sklearn); scikit-learn is the optional `baseline` extra."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise LrexpError(
            "python -m lrexp.baseline needs scikit-learn: pip install 'lrexp[baseline]'"
        ) from None
    try:
        return LogisticRegression(**OmegaConf.to_container(cfg.sklearn))
    except TypeError as err:
        raise LrexpError(f"sklearn: {err}") from None


def split_arrays(loader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
    """Every (features, label) a loader serves, as arrays (it yields groups of minibatches)."""
    pairs = [pair for group in loader for pair in group]
    x, y = (torch.cat(part).cpu().numpy() for part in zip(*pairs, strict=True))
    return x, y


def baseline(cfg: DictConfig) -> dict[str, float]:
    """Fit both models on one split; return their accuracies and fit times."""
    check_config(cfg)
    if cfg.ckpt_path is not None:
        raise LrexpError("ckpt_path: the baseline compares fits from scratch; leave it out")
    sklearn_model = _sklearn_model(cfg)
    run_dir = Path(cfg.paths.output_dir)
    datamodule, model, trainer = build_experiment(cfg)
    if trainer.world_size > 1:
        raise LrexpError("the baseline runs in one process: use trainer=cpu or trainer=gpu")
    datamodule.prepare_data()
    for stage in ("fit", "test"):
        datamodule.setup(stage)
    splits = {
        "train": split_arrays(datamodule.train_dataloader()),
        "val": split_arrays(datamodule.val_dataloader()),
        "test": split_arrays(datamodule.test_dataloader()),
    }
    metrics: dict[str, float] = {}
    start = time.perf_counter()
    try:
        sklearn_model.fit(*splits["train"])
    except ValueError as err:  # scikit-learn checks its parameters (sklearn.*) in fit
        raise LrexpError(f"sklearn: {err}") from None
    metrics["sklearn/fit_s"] = time.perf_counter() - start
    for split in ("val", "test"):
        metrics[f"sklearn/{split}/acc"] = float(sklearn_model.score(*splits[split]))
    start_run(run_dir, cfg, continuing=False)  # after every check, before the first file

    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    metrics["lrexp/fit_s"] = time.perf_counter() - start
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    for split, run_split in (("val", trainer.validate), ("test", trainer.test)):
        run_split(
            model, datamodule=datamodule, ckpt_path=best or None, verbose=False, weights_only=True
        )
        metrics[f"lrexp/{split}/acc"] = trainer.callback_metrics[f"{split}/acc"].item()
    for logger in trainer.loggers:
        logger.finalize("success")

    path = write_metrics(run_dir, metrics)
    _print_side_by_side(metrics)
    print_summary(
        "lrexp.baseline",
        {},
        {
            "run dir:": str(run_dir),
            "metrics:": str(path),
            "best checkpoint:": best or "-",
            "tensorboard:": f"tensorboard --logdir {run_dir}",
        },
    )
    return metrics


def _print_side_by_side(metrics: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lrexp.baseline", header_style="bold")
    for column in ("", "lrexp", "scikit-learn"):
        table.add_column(column, justify="right" if column else "left")
    for key in ("val/acc", "test/acc", "fit_s"):
        table.add_row(key, f"{metrics[f'lrexp/{key}']:.4f}", f"{metrics[f'sklearn/{key}']:.4f}")
    Console().print(table)


main = entry_point("baseline")(baseline)

if __name__ == "__main__":
    run_as_command(main)
