"""What logger=mlflow (the default local store under outputs/) costs next to
logger=tensorboard: whole-process wall time of `python -m lrexp.train data=fashion_mnist`
(real Fashion-MNIST, sandal vs sneaker, 20 epochs); prints one JSON document.

The two loggers alternate, --repeats processes each, medians compared; all runs share one
log dir, so the MLflow store (SQLite database and artifacts) is created by the first mlflow run
only, as in a user's outputs/ — that first run's time is reported apart. Goal: mlflow within
10 % of tensorboard.

On a machine shared with other work, torch's intra-op threads wait for each other at every
small operation (a 64x784 index_select went from 0.05 to 12 ms at a load of 10 on 2 cores, with
either logger), which swamps the loggers' own cost: --threads 1 (OMP_NUM_THREADS=1 for both)
keeps that out of the comparison.

Usage: python benchmarks/mlflow_overhead.py [--repeats N] [--epochs N] [--threads N].
Progress: stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from processes import side_by_side, timed_process

CPU_S: dict[str, list[float]] = {}  # CPU seconds of each process, by command or logger
LOGGERS = ("tensorboard", "mlflow")


def train(logger: str, scratch: Path, name: str, epochs: int, threads: int | None) -> float:
    """Wall seconds for one `python -m lrexp.train` process, start to exit (its CPU seconds
    go to CPU_S[logger], the store's creation to CPU_S["mlflow, creating the store"])."""
    key = "mlflow, creating the store" if name == "store" else logger
    env = {"OMP_NUM_THREADS": str(threads)} if threads is not None else {}
    command = [sys.executable, "-m", "lrexp.train", "data=fashion_mnist", f"logger={logger}"]
    command += [f"paths.data_dir={scratch / 'data'}", f"paths.log_dir={scratch / 'outputs'}"]
    command += [f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false"]
    command += [f"hydra.run.dir={scratch / 'outputs' / name}"]
    wall, cpu = timed_process(command, env)
    CPU_S.setdefault(key, []).append(cpu)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs")
    args = parser.parse_args()
    times: dict[str, list[float]] = {logger: [] for logger in LOGGERS}
    with tempfile.TemporaryDirectory() as scratch:
        first_mlflow = train("mlflow", Path(scratch), "store", args.epochs, args.threads)
        print(f"mlflow, creating the store: {first_mlflow:.1f} s", file=sys.stderr)
        for i in range(args.repeats):
            for logger in LOGGERS:
                times[logger].append(
                    train(logger, Path(scratch), f"{logger}{i}", args.epochs, args.threads)
                )
            print(f"repeat {i + 1}: {times}", file=sys.stderr)
    print(
        json.dumps(
            {
                "data": "fashion_mnist (sandal vs sneaker)",
                "epochs": args.epochs,
                "omp_num_threads": args.threads,
                "repeats": args.repeats,
                **side_by_side(times, CPU_S, "tensorboard", "mlflow"),
                "goal": "mlflow_over_tensorboard <= 1.10",
                "mlflow_creating_the_store_s": first_mlflow,
                "all_s": times,
                "all_cpu_s": CPU_S,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
