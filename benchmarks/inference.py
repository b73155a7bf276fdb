"""coefficients.csv's inference against statsmodels on every real table at hand; prints one JSON
document.

Each table is fitted by one `python -m lrexp.train data=table model.C=null
model.optimizer=lbfgs model.tol=1e-7` process on all its rows (data.test_path is the same file,
data.val_fraction=0), and by statsmodels' Logit (two labels) or MNLogit (K classes, against the
first) on the same standardised rows (float32 values, population std, as lrexp standardises).
Reported per table: the largest relative difference of the standard errors, the largest
absolute difference of the p-values and of AIC, and the seconds of statsmodels' fit beside the
lrexp process's (start-up, fit, inference, figures: a whole run).

Goal: standard errors to 1e-3 relative and p-values to 1e-3 on every table.

Usage: python benchmarks/inference.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
from sklearn.datasets import load_breast_cancer, load_wine
from throughput import emit, log, machine


def tables() -> dict[str, tuple[pd.DataFrame, str]]:
    """The real tables statsmodels and scikit-learn ship, as (frame, target)."""
    cancer = load_breast_cancer(as_frame=True).frame
    cancer = cancer[["mean radius", "mean texture", "mean smoothness", "mean symmetry", "target"]]
    fair = sm.datasets.fair.load_pandas().data
    fair["affair"] = (fair.pop("affairs") > 0).astype(int)
    anes = sm.datasets.anes96.load_pandas().data
    wine = load_wine(as_frame=True).frame
    return {
        "spector (Logit)": (sm.datasets.spector.load_pandas().data, "GRADE"),
        "breast cancer, 4 columns (Logit)": (cancer, "target"),
        "fair, affairs > 0 (Logit)": (fair, "affair"),
        "anes96, 7 parties (MNLogit)": (
            anes[["logpopul", "selfLR", "age", "educ", "income", "PID"]],
            "PID",
        ),
        "wine, 3 columns (MNLogit)": (
            wine[["alcohol", "malic_acid", "alcalinity_of_ash", "target"]],
            "target",
        ),
    }


def standardised(frame: pd.DataFrame) -> np.ndarray:
    values = frame.to_numpy(np.float32)
    mean, std = values.astype(np.float64).mean(0), values.astype(np.float64).std(0)
    return ((values - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float64)


def lrexp_run(frame: pd.DataFrame, target: str, work: Path) -> tuple[float, pd.DataFrame, dict]:
    path = work / "table.csv"
    frame.to_csv(path, index=False)
    run = work / "run"
    command = [
        sys.executable, "-m", "lrexp.train", "data=table", f"data.path={path}",
        f"data.test_path={path}", f"data.target={target}", "data.val_fraction=0",
        "model.C=null", "model.optimizer=lbfgs", "model.tol=1e-7", "logger=none",
        "trainer.enable_progress_bar=false", f"hydra.run.dir={run}",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    coefficients = pd.read_csv(run / "coefficients.csv", keep_default_na=False, na_values=[""])
    return seconds, coefficients, json.loads((run / "metrics.json").read_text())


def compare(frame: pd.DataFrame, target: str, work: Path) -> dict:
    features = [c for c in frame if c != target]
    x = sm.add_constant(standardised(frame[features]), prepend=True)
    labels = frame[target].to_numpy()
    classes = sorted(set(labels))
    start = time.perf_counter()
    if len(classes) == 2:
        result = sm.Logit((labels == classes[1]).astype(float), x).fit(disp=0, tol=1e-12)
        params, errors, pvalues = (
            np.asarray(a)[:, None] for a in (result.params, result.bse, result.pvalues)
        )
    else:
        codes = np.searchsorted(classes, labels)
        result = sm.MNLogit(codes, x).fit(disp=0, method="newton", tol=1e-12, maxiter=200)
        params, errors, pvalues = (
            np.asarray(a) for a in (result.params, result.bse, result.pvalues)
        )
    statsmodels_s = time.perf_counter() - start
    lrexp_s, coefficients, metrics = lrexp_run(frame, target, work)
    names = ["(intercept)", *features]
    worst_se = worst_p = 0.0
    for column, label in enumerate(coefficients["class"].unique()):
        rows = coefficients[coefficients["class"] == label].set_index("feature").loc[names]
        worst_se = max(worst_se, float(np.max(np.abs(rows["std_err"] / errors[:, column] - 1))))
        worst_p = max(worst_p, float(np.max(np.abs(rows["p_value"] - pvalues[:, column]))))
    return {
        "rows": len(frame),
        "parameters": int(params.size),
        "max_rel_std_err_diff": worst_se,
        "max_abs_p_value_diff": worst_p,
        "aic_diff": abs(metrics["train/aic"] - float(result.aic)),
        "statsmodels_fit_s": statsmodels_s,
        "lrexp_process_s": lrexp_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    report: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (frame, target) in tables().items():
            work = Path(tmp) / str(len(report))
            work.mkdir()
            report[name] = compare(frame, target, work)
            log(f"{name}: {report[name]}")
    emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
