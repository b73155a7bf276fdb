"""The regularisation path (model.C=path) against one fit and against scikit-learn's
LogisticRegressionCV; prints one JSON document.

The table: n rows × d float32 features from a known logistic model (weights N(0, 1) on the
first d/4 features, 0 on the rest, so the best C is neither end of the path), binary labels,
as one .npz. Three measurements, side by side in one run:

- whole processes: `python -m lrexp.train data=table` with model.C=1, and with model.C=path
  (model.path_length values, default 20), both at the defaults otherwise (the path's runs use
  the solver model.optimizer=auto picks), wall-clock including start-up, scoring and figures;
- the fitting alone, in process: lrexp.path.fit_path on the composed experiment (the path,
  without the pipeline's final refit of the best C) and one trainer.fit at C=1;
- scikit-learn's LogisticRegressionCV(Cs=the same values, cv=the same train/validation split,
  scoring=neg_log_loss — lrexp's optimized_metric default val/loss — refit=False), in process
  on lrexp's own preprocessed features, the fitting alone.

The in-process pair runs at each of --tols (model.tol and LogisticRegressionCV's tol alike;
default 1e-4, both defaults, and 1e-5): at a looser tolerance the two may choose neighbouring
values of C, whose validation losses differ by less than the fits' own error; the validation
log-loss of scikit-learn's exact optimum (tol 1e-8) at each chosen C says which is better.

Goals: the path in ≤ 3× one C=1 fit (whole processes); faster than LogisticRegressionCV at the
same best C.

Usage: python benchmarks/path.py [--rows N] [--features D] [--length L] [--tols T,T]
[--out FILE]
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
from throughput import emit, log, machine


def write_table(path: Path, rows: int, features: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    true = np.zeros(features)
    true[: max(features // 4, 1)] = rng.normal(size=max(features // 4, 1))
    p = 1 / (1 + np.exp(-(x @ true)))
    y = (rng.random(rows) < p).astype(int)
    np.savez(path, y=y, **{f"x{j}": x[:, j] for j in range(features)})


def run_train(table: Path, run_dir: Path, overrides: list[str]) -> tuple[float, dict]:
    command = [
        sys.executable,
        "-m",
        "lrexp.train",
        "data=table",
        f"data.path={table}",
        "data.target=y",
        "logger=none",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return seconds, json.loads((run_dir / "metrics.json").read_text())


def lrexp_fits(table: Path, work: Path, tol: float) -> tuple[float, float, float]:
    """In process, the fitting alone: (path seconds, its best C, one C=1 fit's seconds)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from lrexp.cli import CONFIG_DIR
    from lrexp.experiment import build_experiment
    from lrexp.path import fit_path

    common = ["data=table", f"data.path={table}", "data.target=y", "logger=none"]
    common += ["trainer.enable_progress_bar=false", "callbacks=none", f"model.tol={tol}"]
    seconds = {}
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        for name in ("path", "one"):
            overrides = [*common, f"hydra.run.dir={work / name}"]
            overrides.append("model.C=" + ("path" if name == "path" else "1"))
            cfg = compose("config", overrides, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            datamodule, model, trainer = build_experiment(cfg)
            start = time.perf_counter()
            if name == "path":
                _, _, best = fit_path(model, datamodule, trainer, "val/loss")
            else:
                trainer.fit(model, datamodule=datamodule)
            seconds[name] = time.perf_counter() - start
    return seconds["path"], best, seconds["one"]


def exact_val_losses(table: Path, values: list[float]) -> dict[str, float]:
    """The validation log-loss of scikit-learn's exact optimum (tol 1e-8) at each C: which of
    two chosen values is the better one, whatever either solver's tolerance."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    from lrexp.data.table import TableDataModule

    datamodule = TableDataModule(path=str(table), target="y")
    datamodule.setup("fit")
    (x, y), (xv, yv) = (
        (datamodule.preprocess(datamodule.splits[s][0]).numpy(), datamodule.splits[s][1].numpy())
        for s in ("train", "val")
    )
    losses = {}
    for C in values:
        model = LogisticRegression(C=C, tol=1e-8, max_iter=10_000).fit(x, y)
        losses[f"{C:.6g}"] = float(log_loss(yv, model.predict_proba(xv)))
    return losses


def sklearn_path(table: Path, values: list[float], tol: float) -> tuple[float, float]:
    """LogisticRegressionCV on lrexp's own train/validation split and features: (fit seconds,
    best C)."""
    import torch
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import PredefinedSplit

    from lrexp.data.table import TableDataModule

    datamodule = TableDataModule(path=str(table), target="y")
    datamodule.setup("fit")
    parts = [datamodule.splits[s] for s in ("train", "val")]
    x = torch.cat([datamodule.preprocess(raw) for raw, _ in parts]).numpy()
    y = torch.cat([labels for _, labels in parts]).numpy()
    fold = np.concatenate([np.full(len(parts[0][1]), -1), np.zeros(len(parts[1][1]))])
    model = LogisticRegressionCV(
        Cs=values,
        cv=PredefinedSplit(fold),
        scoring="neg_log_loss",
        refit=False,
        max_iter=10_000,
        tol=tol,
    )
    start = time.perf_counter()
    model.fit(x, y)
    return time.perf_counter() - start, float(model.C_[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--tols", default="1e-4,1e-5")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    report = {"machine": machine(), "table": {"rows": args.rows, "features": args.features}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        table = work / "table.npz"
        write_table(table, args.rows, args.features)
        one_s, _ = run_train(table, work / "one", ["model.C=1"])
        log(f"one C=1 fit: {one_s:.1f} s")
        path_s, metrics = run_train(
            table, work / "path", ["model.C=path", f"model.path_length={args.length}"]
        )
        log(f"the path: {path_s:.1f} s")
        with (work / "path" / "path.csv").open() as rows:
            values = [float(line.split(",")[0]) for line in list(rows)[1:]]
        best = metrics["path/best_C"]
        in_process = {}
        for tol in (float(t) for t in args.tols.split(",")):
            sklearn_s, sklearn_best = sklearn_path(table, values, tol)
            path_fit_s, fit_best, one_fit_s = lrexp_fits(table, work / f"in_process_{tol:g}", tol)
            log(
                f"tol {tol:g}: the path {path_fit_s:.2f} s (best C {fit_best:.3g}), one fit "
                f"{one_fit_s:.2f} s, LogisticRegressionCV {sklearn_s:.2f} s ({sklearn_best:.3g})"
            )
            in_process[f"{tol:g}"] = {
                "one_fit_s": one_fit_s,
                "path_fit_s": path_fit_s,
                "path_over_one_fit": path_fit_s / one_fit_s,
                "sklearn_cv_fit_s": sklearn_s,
                "path_fit_over_sklearn_cv": path_fit_s / sklearn_s,
                "best_C": fit_best,
                "sklearn_best_C": sklearn_best,
                "same_best_C": bool(np.isclose(fit_best, sklearn_best, rtol=1e-9)),
            }
        chosen = {best} | {
            c for r in in_process.values() for c in (r["best_C"], r["sklearn_best_C"])
        }
        exact = exact_val_losses(table, sorted(chosen))
    report |= {
        "path_length": args.length,
        "one_fit_process_s": one_s,
        "path_process_s": path_s,
        "path_over_one_fit_processes": path_s / one_s,
        "best_C": best,
        "in_process": in_process,
        "exact_val_loss_at": exact,
    }
    emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
