"""data=table loading cost: TableDataModule against pyarrow's reader alone, time and memory.

A seeded 1 000 000 x 50 table (47 float columns, 2 string columns of 6 and 20 categories, an
int 0/1 target) is written once as CSV and Parquet to a temporary folder. Each measurement runs
in a fresh Python process (so peaks do not mix) and reports wall time and ru_maxrss:
- reader: pyarrow.csv.read_csv / pyarrow.parquet.read_table alone (multi-threaded);
- setup: TableDataModule.prepare_data() + setup("fit") (read, labels, split, statistics, raw
  split tensors), and `+ preprocess`: the training split's model features on top.
Goals: setup time <= 2x the reader's; peak memory above the process's imports <= 3x the float32
feature matrix of the whole table (rows x in_features x 4 bytes). The median of --repeats runs
is reported. Prints one JSON document.

Usage: python benchmarks/table_load.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_FLOAT = 47
CATEGORIES = (6, 20)
TIME_GOAL, MEMORY_GOAL = 2.0, 3.0


def write_tables(
    rows: int, folder: Path, formats: tuple[str, ...] = ("csv", "parquet")
) -> dict[str, Path]:
    """The seeded table of `rows` rows in `folder`, as table.csv and/or table.parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    columns = {f"x{i}": rng.normal(i, 1 + i % 5, rows) for i in range(N_FLOAT)}
    for j, k in enumerate(CATEGORIES):
        names = np.array([f"c{j}_{v}" for v in range(k)])
        columns[f"s{j}"] = names[rng.integers(0, k, rows)]
    logit = columns["x0"] - columns["x1"] + (columns["s0"] == "c0_1")
    columns["y"] = (logit + rng.logistic(size=rows) > 0).astype(np.int64)
    table = pa.table(columns)
    paths = {kind: folder / f"table.{kind}" for kind in formats}
    if "csv" in paths:
        csv.write_csv(table, paths["csv"])
    if "parquet" in paths:
        pq.write_table(table, paths["parquet"])
    return paths


def rss_kb() -> int:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(mode: str, path: str) -> dict:
    """One measurement in this (fresh) process."""
    import pyarrow.csv as csv
    import pyarrow.parquet as pq
    import torch  # noqa: F401  (the same imports floor for both modes)

    from lrexp.data.table import TableDataModule

    floor = rss_kb()
    start = time.perf_counter()
    result: dict = {}
    if mode == "reader":
        if path.endswith(".csv"):
            table = csv.read_csv(path, read_options=csv.ReadOptions(use_threads=True))
        else:
            table = pq.read_table(path, use_threads=True)
        result["rows"] = table.num_rows
    else:
        datamodule = TableDataModule(path=path, target="y")
        datamodule.prepare_data()
        datamodule.setup("fit")
        result["setup_s"] = time.perf_counter() - start
        features = datamodule.preprocess(datamodule.splits["train"][0])
        result["in_features"] = datamodule.in_features
        result["train_features_shape"] = list(features.shape)
    result["seconds"] = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result |= {"peak_rss_mb": peak / 1024, "imports_rss_mb": floor / 1024}
    return result


def measure(mode: str, path: Path, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        command = [sys.executable, __file__, "--child", mode, str(path)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.splitlines()[-1]))
    median = {
        k: statistics.median(r[k] for r in runs)
        for k in runs[0]
        if k.endswith(("_s", "_mb", "seconds"))
    }
    return {**runs[0], **median}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    report: dict = {"rows": args.rows, "columns": N_FLOAT + len(CATEGORIES) + 1}
    with tempfile.TemporaryDirectory() as folder:
        paths = write_tables(args.rows, Path(folder))
        for kind, path in paths.items():
            reader = measure("reader", path, args.repeats)
            setup = measure("setup", path, args.repeats)
            matrix_mb = args.rows * setup["in_features"] * 4 / 2**20
            above = setup["peak_rss_mb"] - setup["imports_rss_mb"]
            report[kind] = {
                "file_mb": path.stat().st_size / 2**20,
                "reader_s": reader["seconds"],
                "setup_s": setup["setup_s"],
                "setup_plus_preprocess_s": setup["seconds"],
                "time_ratio": setup["setup_s"] / reader["seconds"],
                "time_goal_met": setup["setup_s"] / reader["seconds"] <= TIME_GOAL,
                "in_features": setup["in_features"],
                "feature_matrix_mb": matrix_mb,
                "reader_peak_rss_mb": reader["peak_rss_mb"],
                "reader_peak_above_imports_mb": reader["peak_rss_mb"] - reader["imports_rss_mb"],
                "setup_peak_rss_mb": setup["peak_rss_mb"],
                "setup_peak_above_imports_mb": above,
                "memory_ratio": above / matrix_mb,
                "memory_goal_met": above / matrix_mb <= MEMORY_GOAL,
            }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
