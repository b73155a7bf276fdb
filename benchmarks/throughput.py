"""How much lrexp costs on top of the arithmetic (issue 7); prints one JSON document.

Measured side by side in one process, on binary Fashion-MNIST (sandal vs sneaker, lrexp's own
seeded training split), medians over repeats:

- seconds per training epoch of (a) the raw loop over a preloaded float tensor with
  random-permutation slices, (b) torchvision's per-sample pipeline (FashionMNIST + ToTensor +
  DataLoader) and (c) lrexp as a user runs it: `python -m lrexp.train data=fashion_mnist`'s
  Trainer, callbacks and loggers composed from conf/ and run by lrexp.train.train, at batch 64
  (the default config) and 1024. lrexp's epoch is the interval between the starts of two
  training epochs, so it includes that epoch's validation, checkpointing and logging;
- the toy run as a whole process, imports included: `python -m lrexp.train data=toy` against
  the lecture's raw loop run as a plain script;
- time to accuracy: the default config's fit (train start to train end) and test accuracy
  against scikit-learn's LogisticRegression fit on the same split.

Usage: python benchmarks/throughput.py [--data-dir DIR] [--repeats N]. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[1]
BATCH_SIZES = (64, 1024)
FASHION = "data=fashion_mnist"
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
LECTURE_SCRIPT = textwrap.dedent(
    """\
    import torch

    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[0.0], [0.0], [1.0]])
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    criterion = torch.nn.BCELoss(reduction="sum")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in range(1000):
        loss = criterion(torch.sigmoid(model(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    w, b = model.weight.item(), model.bias.item()
    print(f"w={w:.4f} b={b:.4f} p(4h)={torch.sigmoid(torch.tensor(4 * w + b)).item():.4f}")
    """
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


def clocks() -> tuple[float, float]:
    """(wall, CPU) seconds: wall time is what a user waits; this process's CPU time is far less
    disturbed by other processes on a shared machine."""
    return time.perf_counter(), time.process_time()


def spans(marks: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(w1 - w0, c1 - c0) for (w0, c0), (w1, c1) in zip(marks, marks[1:])]


class EpochTimer(Callback):
    """Clock readings at the start of every training epoch and at the end of training."""

    last: EpochTimer | None = None

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []
        self.train_start = self.train_end = (0.0, 0.0)
        EpochTimer.last = self

    def on_train_start(self, trainer, pl_module) -> None:
        self.train_start = clocks()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.marks.append(clocks())

    def on_train_end(self, trainer, pl_module) -> None:
        self.train_end = clocks()

    def steady_epochs(self) -> list[tuple[float, float]]:
        """(wall, CPU) of every epoch but the first (which warms caches and allocators)."""
        return spans([*self.marks, self.train_end])[1:]


# --- data -------------------------------------------------------------------------------------


def fashion_split(data_dir: str) -> dict:
    """lrexp's default split: the training part (uint8 + float features) and the test part, plus
    their indices into torchvision's FashionMNIST for the per-sample pipeline."""
    from lrexp.data.binary import binary_subset, stratified_split
    from lrexp.data.fashion_mnist import FashionMNISTDataModule

    dm = FashionMNISTDataModule(
        data_dir, positive=["sandal"], negative=["sneaker"], seed=0, system_dir=SYSTEM_DIR
    )
    dm.setup("fit")
    dm.setup("test")
    images, targets = dm.read_split(train=True)
    idx, labels = binary_subset(targets, dm.positive, dm.negative)
    train_idx, _ = stratified_split(labels, dm.hparams.val_fraction, dm.hparams.seed)
    (train_x, train_y), (test_x, test_y) = dm.splits["train"], dm.splits["test"]
    return {
        "train_x": dm.preprocess(train_x),
        "train_y": train_y,
        "test_x": dm.preprocess(test_x),
        "test_y": test_y,
        "torchvision_train_idx": idx[train_idx].tolist(),
        "positive": dm.positive,
    }


# --- (a) raw loop -----------------------------------------------------------------------------


def raw_epochs(x: torch.Tensor, y: torch.Tensor, batch_size: int, epochs: int) -> list:
    """The plain loop: one permutation per epoch, slices of it index the preloaded tensor."""
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    marks = [clocks()]
    for _ in range(epochs + 1):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            loss = F.binary_cross_entropy_with_logits(model(x[idx]).squeeze(-1), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        marks.append(clocks())
    return spans(marks)[1:]


# --- (b) torchvision's per-sample pipeline ------------------------------------------------------


def torchvision_epochs(data_dir: str, split: dict, batch_size: int, epochs: int) -> list[float]:
    """The tutorial way: dataset + ToTensor per sample, DataLoader collation, flatten."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    positive = set(split["positive"])
    dataset = datasets.FashionMNIST(
        data_dir,
        train=True,
        transform=transforms.ToTensor(),
        target_transform=lambda c: float(c in positive),
    )
    loader = DataLoader(
        Subset(dataset, split["torchvision_train_idx"]), batch_size=batch_size, shuffle=True
    )
    torch.manual_seed(0)
    model = torch.nn.Linear(784, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    marks = [clocks()]
    for _ in range(epochs + 1):
        for images, labels in loader:
            logits = model(images.flatten(1)).squeeze(-1)
            loss = F.binary_cross_entropy_with_logits(logits, labels.float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        marks.append(clocks())
    return spans(marks)[1:]


# --- (c) lrexp as a user runs it -----------------------------------------------------------------


def lrexp_run(work: Path, data_dir: str, overrides: list[str], tag: str) -> dict:
    """`python -m lrexp.train OVERRIDES` run in this process (its real entry point, so the
    Trainer, callbacks and loggers are those composed from conf/), plus an epoch timer.

    The run's own output (progress bar, summary table) goes to stderr.
    """
    from hydra.core.global_hydra import GlobalHydra

    from lrexp.train import main as train_main

    run_dir = work / "runs" / tag
    shutil.rmtree(run_dir, ignore_errors=True)
    argv = sys.argv
    sys.argv = [
        "lrexp.train",
        *overrides,
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        f"+callbacks.bench_timer._target_={__name__}.EpochTimer",
    ]
    GlobalHydra.instance().clear()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            train_main()
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
    timer = EpochTimer.last
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "epochs": timer.steady_epochs(),
        "fit_s": timer.train_end[0] - timer.train_start[0],
        "test_acc": metrics["test/acc"],
    }


# --- toy whole process --------------------------------------------------------------------------


def wall(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def toy_processes(work: Path, repeats: int) -> dict:
    script = work / "lecture06_raw.py"
    script.write_text(LECTURE_SCRIPT)
    raw, lrexp = [], []
    for i in range(repeats):
        raw.append(wall([sys.executable, str(script)], work))
        run_dir = work / "runs" / f"toy{i}"
        shutil.rmtree(run_dir, ignore_errors=True)
        command = [sys.executable, "-m", "lrexp.train", "data=toy", f"hydra.run.dir={run_dir}"]
        lrexp.append(wall(command, work))
        log(f"toy process {i}: raw script {raw[-1]:.2f} s, lrexp {lrexp[-1]:.2f} s")
    return {"raw_script_s": median(raw), "lrexp_s": median(lrexp)}


def import_seconds(module: str, work: Path, repeats: int) -> float:
    command = [sys.executable, "-c", f"import {module}"]
    return median([wall(command, work) for _ in range(repeats)])


# --- time to accuracy ---------------------------------------------------------------------------


def sklearn_fit(split: dict, repeats: int) -> dict:
    """scikit-learn's LogisticRegression with its defaults, on the same features."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x, y = split["train_x"].numpy(), split["train_y"].numpy()
    times, converged = [], True
    for _ in range(repeats):
        model = LogisticRegression()
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x, y)
        times.append(time.perf_counter() - start)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    acc = (model.predict(split["test_x"].numpy()) == split["test_y"].numpy()).mean()
    return {"fit_s": median(times), "test_acc": float(acc), "converged": converged}


# --- the report ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="paths.data_dir (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=3, help="lrexp runs and processes per case")
    parser.add_argument("--raw-epochs", type=int, default=10, help="raw-loop epochs per repeat")
    args = parser.parse_args()

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lrexp-bench-"))
    data_dir = args.data_dir or str(Path(tempfile.gettempdir()) / "lrexp-bench-data")
    log(f"work dir {work}, data {data_dir}")
    split = fashion_split(data_dir)
    x, y = split["train_x"], split["train_y"]

    raw = {b: [] for b in BATCH_SIZES}
    lrexp = {b: [] for b in BATCH_SIZES}
    runs = {b: [] for b in BATCH_SIZES}
    for i in range(args.repeats):  # interleaved, so that load changes hit every case alike
        for b in BATCH_SIZES:
            raw[b] += raw_epochs(x, y, b, args.raw_epochs)
            run = lrexp_run(work, data_dir, [FASHION, f"data.batch_size={b}"], f"b{b}-{i}")
            runs[b].append(run)
            lrexp[b] += run["epochs"]
            log(f"batch {b} repeat {i}: raw {median(raw[b]):.4f} s, lrexp {median(lrexp[b]):.4f} s")
    tv = {b: median(torchvision_epochs(data_dir, split, b, 2)) for b in BATCH_SIZES}
    log(f"torchvision per-sample pipeline: {tv}")

    sklearn = sklearn_fit(split, args.repeats)
    default_runs = runs[64]  # batch 64 is the default config
    lrexp_fit = median([r["fit_s"] for r in default_runs])
    lrexp_acc = median([r["test_acc"] for r in default_runs])
    log(f"sklearn {sklearn}, lrexp fit {lrexp_fit:.3f} s acc {lrexp_acc:.4f}")

    toy = toy_processes(work, args.repeats)
    imports = {m: import_seconds(m, work, args.repeats) for m in ("torch", "lightning")}

    epoch = {}
    for b in BATCH_SIZES:
        r = median(raw[b])
        epoch[f"batch_{b}"] = {
            "raw_s": r,
            "torchvision_s": tv[b],
            "lrexp_s": median(lrexp[b]),
            "torchvision_ratio": tv[b] / r,
            "lrexp_ratio": median(lrexp[b]) / r,
        }
    toy_ratio = toy["lrexp_s"] / toy["raw_script_s"]
    tta = {
        "sklearn_fit_s": sklearn["fit_s"],
        "sklearn_test_acc": sklearn["test_acc"],
        "sklearn_converged": sklearn["converged"],
        "lrexp_fit_s": lrexp_fit,
        "lrexp_test_acc": lrexp_acc,
        "acc_gap_pp": 100 * (sklearn["test_acc"] - lrexp_acc),
        "fit_time_ratio": lrexp_fit / sklearn["fit_s"],
    }
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_avg_1min": os.getloadavg()[0],
        },
        "data": {"train_samples": len(y), "test_samples": len(split["test_y"])},
        "epoch": epoch,
        "toy_process": {**toy, "ratio": toy_ratio, "import_s": imports},
        "time_to_accuracy": tta,
        "goals": {
            "epoch_le_1.3x_raw": all(e["lrexp_ratio"] <= 1.3 for e in epoch.values()),
            "toy_process_le_1.75x_raw_script": toy_ratio <= 1.75,
            "within_0.5pp_of_sklearn_in_half_its_time": tta["acc_gap_pp"] <= 0.5
            and tta["fit_time_ratio"] <= 0.5,
        },
        "bench_s": time.perf_counter() - started,
    }
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
