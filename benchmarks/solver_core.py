"""The solver core's speed goals, side by side in one process; prints one JSON document.

On binary Fashion-MNIST (sandal vs sneaker, lrexp's own seeded training split, pixels / 255)
and on all ten classes, medians over repeats:

- lrexp's training epoch as a user runs it (`python -m lrexp.train data=fashion_mnist`, its real
  entry point; the mean epoch over whole validation periods, so validation, checkpoints and
  logging are included), with the fast path (default) and the stock one (`trainer.fast=false`);
- the closed-form loop: the same arithmetic (gradient by hand, momentum 0.9) over a preloaded
  tensor, no framework;
- scikit-learn's SGDClassifier(loss="log_loss"): one epoch of its per-sample SGD written in C
  (`partial_fit` over the same rows, float64 as it converts them; ten classes: one-vs-rest);
- the two-pass floor: X·w and Xᵀr over the whole training matrix, the least any epoch of
  first-order steps must read;
- L-BFGS: benchmarks/solvers.py's exact-optimum figure (weights within 1e-3 of
  LogisticRegression(C=1, tol=1e-10), both fit times).

Goals (batch 64): lrexp ≤ 0.5× SGDClassifier's epoch, binary and ten classes; batch 1024:
≤ 1.5× the two-pass floor; lbfgs ≤ 0.15× scikit-learn's fit time.

Usage: python benchmarks/solver_core.py [--data-dir DIR] [--repeats N] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from throughput import FASHION, clocks, emit, fashion_split, log, lrexp_run, machine, median

from lrexp.objective import Objective

BATCH_SIZES = (64, 1024)


def closed_form_epochs(split: dict, batch_size: int, epochs: int) -> list[float]:
    """The hand-written loop: minibatch gradient Xᵀ(p - y)/B + l2·w by hand into reused
    buffers (Objective.step_gradient_, each epoch's labels prepared once and its losses taken
    in one pass, as lrexp's step does), momentum 0.9; wall seconds of each epoch."""
    x, y = split["train_x"], split["train_y"]
    k = split["num_classes"]
    objective = Objective.of(k, len(y), C=1.0)
    out = 1 if k == 2 else k
    weight, bias = torch.zeros(out, x.shape[1]), torch.zeros(out)
    grad_w, grad_b = torch.zeros_like(weight), torch.zeros_like(bias)
    buf_w, buf_b = torch.zeros_like(weight), torch.zeros_like(bias)
    staging = torch.empty(batch_size, x.shape[1])
    logits, scratch = torch.empty(len(y), out), torch.empty(batch_size, out)
    generator = torch.Generator().manual_seed(0)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(y), generator=generator).split(batch_size)
        labels = objective.labels(y[torch.cat(order)], sizes=[len(idx) for idx in order])
        for t, idx in enumerate(order):
            xb = torch.index_select(x, 0, idx, out=staging[: len(idx)])
            rows = labels.rows(t)
            objective.step_gradient_(
                xb, labels, t, weight, bias, grad_w, grad_b, logits[rows], scratch[: len(idx)]
            )
            buf_w.mul_(0.9).add_(grad_w)
            buf_b.mul_(0.9).add_(grad_b)
            weight.add_(buf_w, alpha=-0.01)
            bias.add_(buf_b, alpha=-0.01)
        objective.losses(logits, labels)
        seconds.append(time.perf_counter() - start)
    return seconds


def sgdclassifier_epochs(split: dict, epochs: int) -> list[float]:
    """One partial_fit pass each: scikit-learn's per-sample SGD epoch (the input converted to
    float64 once, outside the clock, as fit would)."""
    from sklearn.linear_model import SGDClassifier

    x = split["train_x"].double().numpy()
    y = split["train_y"].numpy()
    model = SGDClassifier(loss="log_loss", alpha=1.0 / len(y), random_state=0)
    classes = np.arange(split["num_classes"])
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.partial_fit(x, y, classes=classes)
        seconds.append(time.perf_counter() - start)
    return seconds


def two_pass_floor(split: dict, repeats: int) -> float:
    """X·w and Xᵀr over the whole training matrix (float32, as lrexp serves it)."""
    x = split["train_x"]
    k = 1 if split["num_classes"] == 2 else split["num_classes"]
    w, r = torch.zeros(x.shape[1], k), torch.zeros(len(x), k)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(x, w)
        torch.mm(x.t(), r)
        seconds.append(time.perf_counter() - start)
    return median(seconds)


def lrexp_epoch(work: Path, data_dir: str, split: dict, batch: int, fast: bool, repeats: int):
    """The mean epoch (wall, CPU) of lrexp's last `repeats` validation periods."""
    overrides = [
        *split["overrides"],
        "model.optimizer=sgd",  # the minibatch epoch (auto takes L-BFGS on data this size)
        f"data.batch_size={batch}",
        f"trainer.fast={str(fast).lower()}",
        f"trainer.max_epochs={5 * (repeats + 1)}",
        "logger=none",
    ]
    tag = f"{'fast' if fast else 'stock'}-{batch}-{split['num_classes']}"
    run = lrexp_run(work, data_dir, overrides, tag, steady=5 * repeats)
    return run["epoch"][0]


def epoch_table(work: Path, data_dir: str, split: dict, repeats: int, stock: bool) -> dict:
    sgdc = median(sgdclassifier_epochs(split, repeats + 1)[1:])
    floor = two_pass_floor(split, repeats + 1)
    table = {"sgdclassifier_epoch_s": sgdc, "two_pass_floor_s": floor}
    for batch in BATCH_SIZES if split["num_classes"] == 2 else (64,):
        closed = median(closed_form_epochs(split, batch, repeats + 1)[1:])
        fast = lrexp_epoch(work, data_dir, split, batch, True, repeats)
        row = {
            "lrexp_epoch_s": fast,
            "closed_form_loop_s": closed,
            "lrexp_vs_sgdclassifier": fast / sgdc,
            "lrexp_vs_two_pass_floor": fast / floor,
            "lrexp_vs_closed_form_loop": fast / closed,
        }
        if stock:
            slow = lrexp_epoch(work, data_dir, split, batch, False, repeats)
            row |= {"stock_epoch_s": slow, "stock_vs_sgdclassifier": slow / sgdc}
        table[f"batch_{batch}"] = row
        log(f"{split['num_classes']} classes, batch {batch}: {row}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="paths.data_dir (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir = args.data_dir or str(work / "data")
        report = {"machine": machine(), "data": FASHION, "torch_threads": torch.get_num_threads()}
        binary = fashion_split(data_dir)
        report["binary"] = epoch_table(work, data_dir, binary, args.repeats, stock=True)
        ten = fashion_split(data_dir, classes="all")
        report["ten_classes"] = epoch_table(work, data_dir, ten, args.repeats, stock=False)
        from solvers import exact_optimum

        start = clocks()
        report["lbfgs"] = exact_optimum(data_dir, work)
        log(f"lbfgs: {report['lbfgs']} ({clocks()[0] - start[0]:.1f} s)")
    emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
