"""lrexp's solvers against scikit-learn on real Fashion-MNIST; prints one JSON document.

Each figure is measured side by side with scikit-learn in one process, on the features lrexp's
DataModule serves (pixels / 255):

- exact optimum: `model.optimizer=lbfgs model.C=1 data.val_fraction=0` on sandal vs sneaker
  (classes 5 vs 7) against LogisticRegression(C=1, tol=1e-10) on the whole training split:
  the largest weight and intercept difference, and both fit times (float32, and float64 with
  trainer.precision=64-true);
- L1: `model.l1_ratio=1 trainer.max_epochs=40` (SGD with the proximal step) at C=0.05 against
  saga at the same C:
  non-zero weights and test accuracy;
- class weights: `model.class_weight=balanced` on sandal vs rest (10 % positives) against
  class_weight='balanced': balanced test accuracy.

Usage: python benchmarks/solvers.py [--data-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from sklearn.linear_model import LogisticRegression as SklearnLR
from sklearn.metrics import balanced_accuracy_score

from lrexp.cli import CONFIG_DIR
from lrexp.experiment import build_experiment
from lrexp.model import predicted_labels
from lrexp.solvers import objective_report


def build(overrides: list[str], data_dir: str, run_dir: Path):
    """lrexp's DataModule, model and Trainer as `python -m lrexp.train OVERRIDES` builds them
    (no logger, checkpoint or bar: the fit alone is timed)."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "data=fashion_mnist",
                f"paths.data_dir={data_dir}",
                "logger=none",
                "callbacks=none",
                "trainer.enable_progress_bar=false",
                "+trainer.enable_model_summary=false",
                *overrides,
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    cfg.paths.output_dir = str(run_dir)
    return build_experiment(cfg)


def arrays(datamodule, split: str) -> tuple[np.ndarray, np.ndarray]:
    raw, labels = datamodule.splits[split]
    return datamodule.preprocess(raw).double().numpy(), labels.numpy()


def fit_lrexp(overrides: list[str], data_dir: str, work: Path):
    datamodule, model, trainer = build(overrides, data_dir, work)
    datamodule.setup("test")
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    return datamodule, model, time.perf_counter() - start


def predictions(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        probs = model(torch.from_numpy(x))
    return predicted_labels(probs).numpy()


def exact_optimum(data_dir: str, work: Path) -> dict:
    common = ["model.optimizer=lbfgs", "model.C=1", "model.tol=1e-7", "data.val_fraction=0"]
    rows = {}
    for precision in ("32-true", "64-true"):
        datamodule, model, fit_s = fit_lrexp(
            [*common, f"trainer.precision={precision}", "trainer.max_epochs=30"], data_dir, work
        )
        x, y = arrays(datamodule, "train")
        start = time.perf_counter()
        reference = SklearnLR(C=1.0, tol=1e-10, max_iter=10_000).fit(x, y)
        sklearn_s = time.perf_counter() - start
        weight = model.linear.weight.detach().double().numpy()
        bias = model.linear.bias.detach().double().numpy()
        rows[precision] = {
            "max_abs_weight_diff": float(np.abs(weight - reference.coef_).max()),
            "abs_intercept_diff": float(np.abs(bias - reference.intercept_).max()),
            "lrexp_fit_s": fit_s,
            "sklearn_fit_s": sklearn_s,
            "fit_time_ratio": fit_s / sklearn_s,
            "sklearn_iterations": int(reference.n_iter_[0]),
            "train_rows": len(y),
        }
        print(f"exact optimum {precision}: {json.dumps(rows[precision])}", file=sys.stderr)
    return rows


def l1(data_dir: str, work: Path, C: float = 0.05) -> dict:
    datamodule, model, fit_s = fit_lrexp(
        [f"model.C={C}", "model.l1_ratio=1", "trainer.max_epochs=40"], data_dir, work
    )
    x, y = arrays(datamodule, "train")
    x_test, y_test = arrays(datamodule, "test")
    start = time.perf_counter()
    reference = SklearnLR(C=C, l1_ratio=1.0, solver="saga", tol=1e-4, max_iter=2000).fit(x, y)
    sklearn_s = time.perf_counter() - start
    ours = int((model.linear.weight != 0).sum())
    theirs = int((reference.coef_ != 0).sum())
    test_acc = float((predictions(model, x_test) == y_test).mean())
    rows = torch.from_numpy(x).float(), torch.from_numpy(y)
    objective = objective_report(model, *rows)["train/objective"]
    with torch.no_grad():  # the same objective at saga's solution
        model.linear.weight.copy_(torch.from_numpy(reference.coef_))
        model.linear.bias.copy_(torch.from_numpy(reference.intercept_))
    saga_objective = objective_report(model, *rows)["train/objective"]
    return {
        "lrexp_objective": objective,
        "saga_objective": saga_objective,
        "C": C,
        "lrexp_nonzero": ours,
        "saga_nonzero": theirs,
        "nonzero_ratio": ours / max(theirs, 1),
        "lrexp_test_acc": test_acc,
        "saga_test_acc": float(reference.score(x_test, y_test)),
        "lrexp_fit_s": fit_s,
        "saga_fit_s": sklearn_s,
    }


def balanced(data_dir: str, work: Path) -> dict:
    task = ["data.positive=[sandal]", "model.class_weight=balanced"]
    datamodule, model, fit_s = fit_lrexp(task, data_dir, work)
    x, y = arrays(datamodule, "train")
    x_test, y_test = arrays(datamodule, "test")
    reference = SklearnLR(C=1.0, class_weight="balanced", max_iter=1000).fit(x, y)
    ours = balanced_accuracy_score(y_test, predictions(model, x_test))
    theirs = balanced_accuracy_score(y_test, reference.predict(x_test))
    return {
        "task": "sandal vs rest",
        "positives": float(y.mean()),
        "lrexp_balanced_acc": float(ours),
        "sklearn_balanced_acc": float(theirs),
        "gap_pp": 100 * float(theirs - ours),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "lrexp-data"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lrexp-solvers-") as work:
        report = {
            "exact_optimum_sandal_vs_sneaker": exact_optimum(args.data_dir, Path(work)),
            "l1_sandal_vs_sneaker": l1(args.data_dir, Path(work)),
            "class_weight_balanced": balanced(args.data_dir, Path(work)),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
