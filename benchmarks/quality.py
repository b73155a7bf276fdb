"""lrexp's default config against scikit-learn's LogisticRegression() (issue 3's quality bar).

For each class pair, `python -m lrexp.baseline` fits both on the same split: lrexp exactly as
`python -m lrexp.train` does with no tuning, scikit-learn with lbfgs and C=1 (conf/baseline.yaml)
on the same pixels/255, both tested on the official test split. The bar: lrexp's test accuracy
at most 1 percentage point below scikit-learn's. Prints one JSON document.

Usage: python benchmarks/quality.py [--data fashion_mnist|mnist] [--data-dir DIR] [--seeds 0 1]
Real MNIST needs its raw files under DIR/MNIST/raw; Fashion-MNIST is picked up from Debian's
dataset-fashion-mnist when DIR lacks it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAIRS = {
    "fashion_mnist": [("sandal", "sneaker"), ("t-shirt", "shirt")],
    "mnist": [("3", "8"), ("1,3,5,7,9", "0,2,4,6,8")],
}
BAR_PP = 1.0


def compare(data: str, positive: str, negative: str, data_dir: str, seed: int, run_dir: Path):
    """One `python -m lrexp.baseline` run; its metrics.json, timed."""
    command = [
        sys.executable,
        "-m",
        "lrexp.baseline",
        f"data={data}",
        f"data.positive=[{positive}]",
        f"data.negative=[{negative}]",
        f"seed={seed}",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    gap = 100 * (metrics["sklearn/test/acc"] - metrics["lrexp/test/acc"])
    return {
        "positive": positive,
        "negative": negative,
        "seed": seed,
        "lrexp_test_acc": metrics["lrexp/test/acc"],
        "sklearn_test_acc": metrics["sklearn/test/acc"],
        "gap_pp": round(gap, 2),
        "within_bar": gap <= BAR_PP,
        "lrexp_fit_s": metrics["lrexp/fit_s"],
        "sklearn_fit_s": metrics["sklearn/fit_s"],
        "process_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(PAIRS), default="fashion_mnist")
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "lrexp-data"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lrexp-quality-") as work:
        results = [
            compare(args.data, pos, neg, args.data_dir, seed, Path(work) / f"{i}-{seed}")
            for i, (pos, neg) in enumerate(PAIRS[args.data])
            for seed in args.seeds
        ]
    report = {
        "data": args.data,
        "bar_pp": BAR_PP,
        "pairs": results,
        "all_within_bar": all(r["within_bar"] for r in results),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
