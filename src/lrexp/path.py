"""The regularisation path (model.C=path): one fit per value of C, each warm-started from the
previous value's optimum, and the best value chosen on validation.

The values: model.path_length values of C, log-spaced over four decades upwards from C_min,
where the L1 penalty would keep every weight at zero (scikit-learn's l1_min_c for the log
loss: 2 / max |Yᵀ X| with Y the ±1 one-vs-rest labels; glmnet's λ_max), so the path runs from
a nearly constant model to a nearly unpenalised one (glmnet's ratio of 1e-4). Each point is
fitted by the run's own solver from the previous optimum: L-BFGS on the in-memory rows
directly, the minibatch solvers on a bare Trainer (no logger, checkpoint or bar); the pipeline
then fits the best value once more with the run's own Trainer, from its optimum, so that the
run's checkpoints, curves and metrics are that model's.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch import Tensor

from lrexp import solvers
from lrexp.data.batches import Minibatches, preprocessed_split
from lrexp.data.wide_features import Features, transposed_product
from lrexp.errors import LrexpError

if TYPE_CHECKING:
    from lrexp.model import LogisticRegression

log = logging.getLogger(__name__)

PATH_FILE = "path.csv"
DECADES = 4.0


def path_values(
    x: Features, y: Tensor, num_classes: int, length: int, sample_weight: Tensor | None = None
) -> list[float]:
    """`length` values of C from C_min upwards over DECADES decades (module docstring); with
    sample weights, each row's label counts its weight's times."""
    labels = torch.nn.functional.one_hot(y, num_classes).to(torch.float64) * 2 - 1
    if num_classes == 2:
        labels = labels[:, 1:]
    if sample_weight is not None:
        labels = labels * sample_weight.double()[:, None]
    den = transposed_product(labels.t(), x.double()).abs().max().item()
    if den == 0:
        raise LrexpError(
            "model.C=path: every feature is zero on the training split, so no penalty changes "
            "the model: set model.C to a number"
        )
    start = 2.0 / den
    step = DECADES / max(length - 1, 1)
    return [start * 10 ** (step * k) for k in range(length)]


def bare_trainer(trainer: L.Trainer) -> L.Trainer:
    """A Trainer like the run's (device, precision, epochs) without its loggers, checkpoints
    and progress bar: a path point leaves no files."""
    return L.Trainer(
        accelerator=trainer.accelerator,
        devices=1,
        precision=trainer.precision,
        max_epochs=trainer.max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        # The next point trains the metrics' states that this one's validation resets: they
        # must not be inference tensors.
        inference_mode=False,
    )


def fit_path(
    model: LogisticRegression, datamodule: L.LightningDataModule, trainer: L.Trainer, key: str
) -> tuple[list[dict[str, float]], dict[float, Tensor], float]:
    """Fit every value of the path in turn, from the previous optimum; leave the model at the
    best value (lowest `key`: a loss; highest otherwise) and its optimum. Returns the rows of
    path.csv, the weights at each value (for the figure) and the best C."""
    model.to(trainer.strategy.root_device)
    training = preprocessed_split(datamodule, "train", model.device)
    x, y, sample_weight = training
    values = path_values(x, y, model.hparams.num_classes, model.hparams.path_length, sample_weight)
    if isinstance(model.solver, solvers.LBFGS):
        fit_point = _lbfgs_points(model, datamodule, trainer, training)
    else:
        fit_point = _trainer_points(model, datamodule, trainer, training)
    rows, weights = [], {}
    minimise = key.endswith("loss") or key.endswith("objective")
    best, best_score, best_state = None, math.inf, None
    for index, C in enumerate(values):
        model.set_C(C)
        report, scores = fit_point()
        if key not in scores:
            raise LrexpError(
                f"optimized_metric={key} is not a validation metric of a path point: use one of "
                f"{sorted(scores)} (and data.val_fraction > 0)"
            )
        weight = model.linear.weight.detach().clone().cpu()
        row = {"C": C, **report, **scores, "nonzero_weights": int((weight != 0).sum())}
        rows.append(row)
        weights[C] = weight
        score = scores[key] if minimise else -scores[key]
        log.info(
            f"model.C=path: {index + 1}/{len(values)} C={C:.4g} {key}={scores[key]:.4f} "
            f"train/grad_norm={report['train/grad_norm']:.2g}"
        )
        if score < best_score:
            best, best_score = C, score
            best_state = {k: v.clone() for k, v in model.linear.state_dict().items()}
    if isinstance(model.solver, solvers.LBFGS):
        model.solver.problem = None  # the centred copy every point shared
    model.linear.load_state_dict(best_state)
    model.set_C(best)
    log.info(f"model.C=path: best C={best:.4g} ({key}); the run fits it once more from there")
    return rows, weights, best


Point = Callable[[], tuple[dict[str, float], dict[str, float]]]


def _lbfgs_points(
    model: LogisticRegression,
    datamodule: L.LightningDataModule,
    trainer: L.Trainer,
    training: tuple[Tensor, Tensor, Tensor | None],
) -> Point:
    """Each point fitted by L-BFGS on the in-memory rows without a Trainer
    (solvers.LBFGS.fit_rows: the epochs a run would take, the same arithmetic, one centred copy
    for every point), then scored on the validation split by the model's own metrics. A
    Trainer per point costs several times the fit of a point."""
    validation = preprocessed_split(datamodule, "val", model.device)
    epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1000

    def point() -> tuple[dict[str, float], dict[str, float]]:
        report = model.solver.fit_rows(model, *training, epochs)
        if not len(validation[1]):
            return report, {}
        with torch.no_grad():
            model.evaluate("val", Minibatches.of(*validation))
        return report, model.metrics.compute("val")

    return point


def _trainer_points(
    model: LogisticRegression,
    datamodule: L.LightningDataModule,
    trainer: L.Trainer,
    training: tuple[Tensor, Tensor, Tensor | None],
) -> Point:
    """Each point fitted and validated by a bare Trainer (the minibatch solvers' epochs,
    schedules and L1 steps); the first point's loaders serve every later one, so no point
    preprocesses the splits again."""
    loaders: dict[str, Any] = {"datamodule": datamodule}

    def point() -> tuple[dict[str, float], dict[str, float]]:
        fitter = bare_trainer(trainer)
        fitter.fit(model, **loaders)
        loaders.clear()
        loaders["train_dataloaders"] = fitter.train_dataloader
        loaders["val_dataloaders"] = fitter.val_dataloaders
        fitter.validate(model, dataloaders=loaders["val_dataloaders"], verbose=False)
        metrics = fitter.callback_metrics
        scores = {k: v.item() for k, v in metrics.items() if k.startswith("val/")}
        return solvers.objective_report(model, *training), scores

    return point


def write_path(
    run_dir: Path,
    rows: list[dict[str, float]],
    weights: dict[float, Tensor],
    names: list[str] | None,
    best: float,
    loggers: list[Any],
) -> None:
    """path.csv and figures/regularisation_path.png (and its TensorBoard image)."""
    from lrexp.rundir import save_figures, write_atomic

    write_atomic(run_dir / PATH_FILE, path_csv(rows))
    save_figures(run_dir, {"regularisation_path": path_figure(weights, names, best)}, loggers)


def path_csv(rows: list[dict[str, float]]) -> bytes:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def path_figure(weights: dict[float, Tensor], names: list[str] | None, best: float, top: int = 12):
    """The coefficients against log C: the `top` largest at the path's end, labelled."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    values = sorted(weights)
    stacked = torch.stack([weights[C].flatten() for C in values]).double()  # (points, weights)
    order = stacked[-1].abs().argsort(descending=True)[:top].tolist()
    labels = _weight_names(weights[values[0]].shape, names)
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    for j in order:
        axes.plot(values, stacked[:, j].numpy(), label=labels[j])
    axes.set_xscale("log")
    axes.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"best C={best:.3g}")
    axes.set_xlabel("C (inverse regularisation strength)")
    axes.set_ylabel("weight")
    axes.set_title("Regularisation path")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return figure


def _weight_names(shape: torch.Size, names: list[str] | None) -> list[str]:
    outputs, features = shape
    named = names is not None and len(names) == features
    base = names if named else [str(j) for j in range(features)]
    if outputs == 1:
        return list(base)
    return [f"{k}:{name}" for k in range(outputs) for name in base]
