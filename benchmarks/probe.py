"""A linear probe: softmax regression on generated dense embeddings, lrexp against
scikit-learn on the same split; prints one JSON document.

The table: n rows × d float32 features, K classes; each class a Gaussian centre (N(0, 1/d) per
feature, so centres are about √2 apart whatever d) and each row its class's centre plus
N(0, σ²) noise per feature (--noise σ, default 0.4: along the line between two centres the
classes overlap, so accuracy is neither 0 nor 1), as one .npz (a column per feature, and the
label `y`).

For each lrexp config (its defaults; `model.optimizer=lbfgs`) one `python -m lrexp.baseline
data=table data.classes=all` process: it splits the table as lrexp does, fits scikit-learn's
LogisticRegression (C=1, lbfgs, its default tol) and lrexp on the same training rows and
scores both on the same test rows (metrics.json: lrexp/test/acc, sklearn/test/acc,
lrexp/fit_s, sklearn/fit_s).

Goals (50 000 × 256 × 50 and other shapes): defaults within 0.3 pp of scikit-learn's test
accuracy in ≤ 1× its fit time; lbfgs within 0.1 pp in ≤ 1×.

Usage: python benchmarks/probe.py [--rows N] [--features D] [--classes K] [--noise S]
[--config NAME=OVERRIDES ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from throughput import emit, log, machine

CONFIGS = {"defaults": [], "lbfgs": ["model.optimizer=lbfgs"]}


def write_probe(path: Path, rows: int, features: int, classes: int, noise: float) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1 / math.sqrt(features), (classes, features)).astype(np.float32)
    labels = rng.integers(classes, size=rows)
    x = centres[labels] + rng.normal(0, noise, (rows, features)).astype(np.float32)
    np.savez(path, y=labels, **{f"e{j}": x[:, j] for j in range(features)})


def run_baseline(table: Path, work: Path, name: str, overrides: list[str]) -> dict:
    run_dir = work / name
    command = [
        sys.executable,
        "-m",
        "lrexp.baseline",
        "data=table",
        f"data.path={table}",
        "data.target=y",
        "data.classes=all",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    keys = ("lrexp/test/acc", "sklearn/test/acc", "lrexp/fit_s", "sklearn/fit_s")
    row = {k: metrics[k] for k in keys}
    row["acc_diff_pp"] = 100 * (metrics["lrexp/test/acc"] - metrics["sklearn/test/acc"])
    row["fit_time_ratio"] = metrics["lrexp/fit_s"] / metrics["sklearn/fit_s"]
    for key in ("train/grad_norm", "train/objective"):
        if key in metrics or f"lrexp/{key}" in metrics:
            row[key] = metrics.get(key, metrics.get(f"lrexp/{key}"))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--noise", type=float, default=0.4, help="noise std per feature")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        help="NAME=OVERRIDE[,OVERRIDE...]: an lrexp config to add (default: defaults, lbfgs)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    configs = dict(CONFIGS)
    for spec in args.config:
        name, _, overrides = spec.partition("=")
        configs[name] = [o for o in overrides.split(",") if o]
    noise = args.noise
    shape = {"rows": args.rows, "features": args.features, "classes": args.classes}
    report = {"machine": machine(), "probe": shape | {"noise": noise}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        table = work / "probe.npz"
        write_probe(table, args.rows, args.features, args.classes, noise)
        for name, overrides in configs.items():
            report[name] = run_baseline(table, work, name, overrides)
            log(f"{name}: {report[name]}")
    emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
