"""lrexp's defaults against scikit-learn's LogisticRegression(C=1) on every Fashion-MNIST task.

Each task is one `python -m lrexp.baseline` process: scikit-learn (lbfgs, the objective lrexp's
model config states: C=1) and lrexp exactly as `python -m lrexp.train` runs with no tuning, fit
on the same split and tested on the official test split. Tasks: the 45 class pairs, the 10
one-vs-rest tasks, and all ten classes (softmax). The bar: lrexp's test accuracy at most 0.3
percentage points below scikit-learn's on every task. Prints one JSON document (and writes it
to --out); the worst gap is `worst`.

The ten-class task also gets a time-to-accuracy ladder (`--ladder`): lrexp's fit time and test
accuracy after 1, 2, 5 and 10 epochs, against scikit-learn's fit time on the same split.

Usage: python benchmarks/quality.py [--tasks pairs ovr all] [--limit N] [--ladder] [--out F]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]
BAR_PP = 0.3


def tasks(kinds: list[str]) -> list[tuple[str, list[str]]]:
    out = []
    if "pairs" in kinds:
        for pos, neg in itertools.combinations(CLASSES, 2):
            out.append((f"{pos} vs {neg}", [f"data.positive=[{pos}]", f"data.negative=[{neg}]"]))
    if "ovr" in kinds:
        out += [(f"{c} vs rest", [f"data.positive=[{c}]"]) for c in CLASSES]
    if "all" in kinds:
        out.append(("all ten classes", ["data.classes=all"]))
    return out


def run(command: str, overrides: list[str], run_dir: Path, data_dir: str) -> dict[str, float]:
    argv = [
        sys.executable,
        "-m",
        f"lrexp.{command}",
        "data=fashion_mnist",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        "logger=none",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics | {"process_s": time.perf_counter() - start}


def compare(name: str, overrides: list[str], work: Path, data_dir: str) -> dict:
    metrics = run("baseline", overrides, work / name.replace(" ", "_"), data_dir)
    gap = 100 * (metrics["sklearn/test/acc"] - metrics["lrexp/test/acc"])
    return {
        "task": name,
        "lrexp_test_acc": metrics["lrexp/test/acc"],
        "sklearn_test_acc": metrics["sklearn/test/acc"],
        "gap_pp": round(gap, 3),
        "within_bar": gap <= BAR_PP,
        "lrexp_objective": metrics.get("lrexp/train/objective"),
        "lrexp_grad_norm": metrics.get("lrexp/train/grad_norm"),
        "lrexp_fit_s": metrics["lrexp/fit_s"],
        "sklearn_fit_s": metrics["sklearn/fit_s"],
    }


def ladder(work: Path, data_dir: str, sklearn: dict) -> list[dict]:
    """Ten classes: lrexp after E epochs (its schedule set for E epochs) against sklearn."""
    target = sklearn["sklearn_test_acc"] - BAR_PP / 100
    rows = []
    for epochs in (1, 2, 5, 10):
        overrides = ["data.classes=all", f"trainer.max_epochs={epochs}"]
        overrides.append(f"trainer.check_val_every_n_epoch={min(epochs, 5)}")
        metrics = run("baseline", overrides, work / f"ladder-{epochs}", data_dir)
        rows.append(
            {
                "epochs": epochs,
                "lrexp_fit_s": metrics["lrexp/fit_s"],
                "lrexp_test_acc": metrics["lrexp/test/acc"],
                "reaches_target": metrics["lrexp/test/acc"] >= target,
                "fit_time_ratio": metrics["lrexp/fit_s"] / metrics["sklearn/fit_s"],
                "sklearn_fit_s": metrics["sklearn/fit_s"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["pairs", "ovr", "all"])
    parser.add_argument("--limit", type=int, default=None, help="the first N tasks only")
    parser.add_argument("--ladder", action="store_true")
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "lrexp-data"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    chosen = tasks(args.tasks)[: args.limit]
    with tempfile.TemporaryDirectory(prefix="lrexp-quality-") as tmp:
        work = Path(tmp)
        results = []
        for i, (name, overrides) in enumerate(chosen, 1):
            results.append(compare(name, overrides, work, args.data_dir))
            print(f"[{i}/{len(chosen)}] {json.dumps(results[-1])}", file=sys.stderr)
        report = {
            "bar_pp": BAR_PP,
            "tasks": results,
            "worst": max(results, key=lambda r: r["gap_pp"]) if results else None,
            "all_within_bar": all(r["within_bar"] for r in results),
        }
        ten = next((r for r in results if r["task"] == "all ten classes"), None)
        if args.ladder and ten is not None:
            report["ten_class_time_to_accuracy"] = ladder(work, args.data_dir, ten)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
