"""`python -m lrexp.baseline [overrides]`: scikit-learn's LogisticRegression next to lrexp's fit.

Both models see exactly what the configured DataModule serves: they fit its train split's
features and labels and are scored on its val and test splits. Both minimise the same objective:
scikit-learn gets the model's C (null: no penalty), l1_ratio (with the saga solver, which L1
needs) and class_weight; sklearn.KEY=VALUE overrides any of its arguments. lrexp's side is the
fit that `python -m lrexp.train` runs with the same overrides (tested, like there, with the best
checkpoint). Fit times count the fitting only: the data are read before either clock starts.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from omegaconf import DictConfig, OmegaConf

from lrexp.cli import entry_point, run_as_command
from lrexp.config import check_config
from lrexp.data.batches import preprocessed_split
from lrexp.data.wide_features import WideFeatures
from lrexp.errors import LrexpError
from lrexp.experiment import build_experiment, check_trainer, finish, fit, fitted, score_best
from lrexp.rundir import show, start_run


def sklearn_arguments(cfg: DictConfig) -> dict[str, Any]:
    """LogisticRegression's arguments for the objective cfg.model states, then cfg.sklearn."""
    model = cfg.model
    l1_ratio = model.get("l1_ratio") or 0.0
    weight = model.get("class_weight")
    arguments: dict[str, Any] = {
        "C": math.inf if model.get("C") is None else float(model.C),
        "l1_ratio": float(l1_ratio),
        "class_weight": OmegaConf.to_container(weight) if OmegaConf.is_list(weight) else weight,
    }
    if l1_ratio:
        arguments["solver"] = "saga"
    return arguments | OmegaConf.to_container(cfg.sklearn)


def _sklearn_model(arguments: dict[str, Any]) -> Any:
    """LogisticRegression(**arguments); scikit-learn is the optional `baseline` extra."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise LrexpError(
            "python -m lrexp.baseline needs scikit-learn: pip install 'lrexp[baseline]'"
        ) from None
    weight = arguments.get("class_weight")
    if isinstance(weight, list):  # lrexp: one weight per label; scikit-learn: a dict
        arguments = arguments | {"class_weight": dict(enumerate(weight))}
    if arguments["C"] == math.inf and not arguments.get("l1_ratio"):
        arguments = {k: v for k, v in arguments.items() if k != "l1_ratio"}
    try:
        return LogisticRegression(**arguments)
    except TypeError as err:
        raise LrexpError(f"sklearn: {err}") from None


def balanced_accuracy(
    labels: np.ndarray, predicted: np.ndarray, sample_weight: np.ndarray | None = None
) -> float:
    """The mean of the per-class recalls (scikit-learn's balanced_accuracy_score)."""
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(labels, predicted, sample_weight=sample_weight))


def split_arrays(
    datamodule: L.LightningDataModule, split: str
) -> tuple[Any, np.ndarray, np.ndarray | None]:
    """A split's model features, labels and sample weights (None without), as arrays; a wide
    table's features as one scipy.sparse CSR matrix (scikit-learn's sparse input: the same
    encoding, never made dense)."""
    x, y, weight = preprocessed_split(datamodule, split)
    features = sparse_matrix(x) if isinstance(x, WideFeatures) else x.numpy()
    return features, y.numpy(), None if weight is None else weight.numpy()


def sparse_matrix(x: WideFeatures) -> Any:
    """The features as a scipy.sparse CSR matrix: the dense block, then the sparse one."""
    from scipy import sparse

    x = x.cpu()
    block = sparse.csr_matrix(
        (x.values.numpy(), x.indices.numpy(), x.indptr.numpy()), shape=(len(x), x.sparse_width)
    )
    block.sum_duplicates()
    return sparse.hstack([sparse.csr_matrix(x.dense.numpy()), block], format="csr")


def baseline(cfg: DictConfig) -> dict[str, float]:
    """Fit both models on one split; return their accuracies and fit times."""
    check_config(cfg)
    if cfg.ckpt_path is not None:
        raise LrexpError("ckpt_path: the baseline compares fits from scratch; leave it out")
    run_dir = Path(cfg.paths.output_dir)
    datamodule, model, trainer = build_experiment(cfg)
    sklearn_model = _sklearn_model(sklearn_arguments(cfg))
    if trainer.world_size > 1:
        raise LrexpError("the baseline runs in one process: use trainer=cpu or trainer=gpu")
    if datamodule.streamed:
        raise LrexpError(
            "data.stream=true: the baseline fits scikit-learn on the training split in memory; "
            "use data.stream=false (a table that fits)"
        )
    check_trainer(trainer)
    datamodule.setup("test")
    splits = {split: split_arrays(datamodule, split) for split in ("train", "val", "test")}
    metrics: dict[str, float] = {}
    start = time.perf_counter()
    x, y, weight = splits["train"]
    try:
        sklearn_model.fit(x, y, sample_weight=weight)
    except ValueError as err:  # scikit-learn checks its parameters (sklearn.*) in fit
        raise LrexpError(f"sklearn: {err}") from None
    metrics["sklearn/fit_s"] = time.perf_counter() - start
    for split in ("val", "test"):
        x, y, weight = splits[split]
        if len(y):  # data.val_fraction=0 leaves no validation rows: nothing to score
            metrics[f"sklearn/{split}/acc"] = float(sklearn_model.score(x, y, sample_weight=weight))
    x, y, weight = splits["test"]
    metrics["sklearn/test/balanced_acc"] = balanced_accuracy(y, sklearn_model.predict(x), weight)
    start_run(run_dir, cfg, continuing=False)  # after every check, before the first file

    start = time.perf_counter()
    fit(trainer, model, datamodule, None, run_dir)
    metrics["lrexp/fit_s"] = time.perf_counter() - start
    scores, best = score_best(trainer, model, datamodule)
    metrics |= {f"lrexp/{k}": v for k, v in scores.items() if "/acc/" not in k}
    predicted = fitted(model, datamodule).test_predicted.numpy()
    metrics["lrexp/test/balanced_acc"] = balanced_accuracy(y, predicted, weight)

    _print_side_by_side(metrics)
    lines = {"best checkpoint:": best or "-"}
    finish("lrexp.baseline", run_dir, trainer, model, datamodule, metrics, lines, cfg, best or None)
    return metrics


def _print_side_by_side(metrics: dict[str, float]) -> None:
    from rich.table import Table

    table = Table(title="lrexp.baseline", header_style="bold")
    for column in ("", "lrexp", "scikit-learn"):
        table.add_column(column, justify="right" if column else "left")
    for key in ("val/acc", "test/acc", "test/balanced_acc", "fit_s"):
        pair = [metrics.get(f"{fit}/{key}") for fit in ("lrexp", "sklearn")]
        if None not in pair:  # a metric the split cannot measure is left out (lrexp.metrics)
            table.add_row(key, *(f"{value:.4f}" for value in pair))
    show([table])


main = entry_point("baseline")(baseline)

if __name__ == "__main__":
    run_as_command(main)
