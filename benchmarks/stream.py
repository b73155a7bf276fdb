"""data.stream=true at scale; prints one JSON document (throughput.emit).

On a generated Parquet table (16 float32 columns and a 0/1 target, written chunk by chunk with
pyarrow, row groups of 2^17 rows; validation and test from their own 20 000-row files, so the
held-out rows in memory are the same at every size), each measurement in a fresh process, on
one torch thread:

- for each of --rows (default 2M and 10M): one streamed SGD epoch (batch 256, shuffle buffer
  2^16 rows) through Lightning's Trainer: the statistics pass's seconds, the epoch's seconds and
  training rows per second, and the process's peak RSS (ru_maxrss) over both, with the table's
  size as float32 beside it: peak RSS should stay flat as the rows grow, epoch time linear;
  and the same epoch on the first size in memory (data.stream=false, its training split
  data.path whole), rows per second side by side;
- Vowpal Wabbit on the first 2M rows: its pass over its own cache (`--cache_file`, logistic
  loss, the cache made beforehand from VW text), rows per second, against the streamed epoch's;
- `python -m lrexp.train ... data.stream=true trainer=ddp_cpu` (on the largest of --rows; SGD
  for one epoch, and L-BFGS to tol 1e-4): the whole command's wall time and each process's
  peak RSS (VmHWM, polled), the statistics pass, the epochs and the scoring passes included;
  the same command in one process (trainer=default) beside it, and the speed-ups of the whole
  command and of its training epochs alone (EpochClock);
- full-batch L-BFGS (tol 1e-4) on a 200 000-row table, three times each in turn: streamed (one
  pass over the row groups per evaluation) against in memory, seconds to the optimum (setup
  and fit; the fastest of each), and the largest difference of their weights.

With --strings N every table (training, validation and test) also has N string columns of
Zipf-distributed values (exponent ZIPF, cardinalities STRING_CARDINALITIES: up to 1M), which
carry no signal, hashed (data.categorical=hash, data.hash_bits=18): only the streamed epochs
and the in-memory epoch run (or, with --lbfgs-only, L-BFGS; with --ddp-only, the ddp_cpu run).

Usage: python benchmarks/stream.py [--rows 2000000,10000000] [--dir DIR] [--out FILE]
[--ddp-only] (only the ddp_cpu run, on the largest of --rows) [--lbfgs-only] (only L-BFGS)
[--strings N]. Progress goes to stderr. Needs the disk for the largest table (~0.7 GB per 10M
rows; four string columns add ~5%).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from throughput import emit  # noqa: E402

COLUMNS = 16
GROUP_ROWS = 2**17
CHUNK_ROWS = 2**19
LBFGS_ROWS = 200_000
VW_ROWS = 2_000_000
STRING_CARDINALITIES = (1_000_000, 100_000, 10_000, 1_000)  # string column k's, cycling
ZIPF = 1.3


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def chunk(rows: int, seed: int, strings: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, COLUMNS)).astype(np.float32) * np.arange(1, COLUMNS + 1)
    w = np.linspace(-1, 1, COLUMNS) / np.arange(1, COLUMNS + 1)
    y = (x @ w + rng.logistic(size=rows) > 0).astype(np.int8)
    columns = {f"x{j}": x[:, j] for j in range(COLUMNS)}
    for k in range(strings):
        values = (rng.zipf(ZIPF, rows) - 1) % STRING_CARDINALITIES[k % len(STRING_CARDINALITIES)]
        columns[f"s{k}"] = pa.array(np.char.add("v", values.astype(str)))
    return pa.table({**columns, "y": y})


def table_path(folder: Path, stem: str, strings: int) -> Path:
    return folder / (f"{stem}_s{strings}.parquet" if strings else f"{stem}.parquet")


def generate(path: Path, rows: int, seed: int, strings: int = 0) -> Path:
    """`rows` rows written chunk by chunk: the table is never in memory."""
    if path.exists():
        return path
    say(f"writing {rows} rows to {path}")
    writer = None
    for number, start in enumerate(range(0, rows, CHUNK_ROWS)):
        table = chunk(min(CHUNK_ROWS, rows - start), seed * 10_000 + number, strings)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=GROUP_ROWS)
    writer.close()
    return path


def child(kind: str, path: str, val: str, test: str) -> dict:
    """One measurement in this (fresh) process."""
    import lightning as L
    import torch

    # One thread, for every kind alike: minibatch products gain nothing from a second one, and
    # on a shared 2-vCPU machine OpenMP's spinning threads make times erratic.
    torch.set_num_threads(1)

    from lrexp.data.table import TableDataModule
    from lrexp.data.table_stream import StreamedTableDataModule
    from lrexp.model import LogisticRegression

    def trainer(epochs: int) -> L.Trainer:
        return L.Trainer(
            max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
            num_sanity_val_steps=0,
        )  # fmt: skip

    # String columns (--strings) are hashed.
    strings = any(pa.types.is_string(field.type) for field in pq.read_schema(path))
    common = {"test_path": test, "batch_size": 256, "categorical": "hash" if strings else "onehot"}
    start = time.perf_counter()
    if kind.startswith("memory"):
        data = TableDataModule(path, "y", val_fraction=0.0, **common)
    else:
        data = StreamedTableDataModule(path, "y", val_path=val, **common)
    data.setup("fit")
    setup_s = time.perf_counter() - start
    rows = sum(data.class_counts)
    if kind.endswith("epoch"):
        hparams = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "scheduler": None}
    else:
        hparams = {"optimizer": "lbfgs", "lr": 1.0, "tol": 1e-4}
    model = LogisticRegression(
        data.in_features, class_counts=data.class_counts, C=1.0, seed=0, **hparams
    )
    start = time.perf_counter()
    trainer(1 if kind.endswith("epoch") else 20).fit(model, datamodule=data)
    fit_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    weights = model.linear.weight.detach().flatten().tolist() + model.linear.bias.tolist()
    return {"setup_s": setup_s, "fit_s": fit_s, "rows": rows, "peak_rss_mib": peak, "w": weights}


def measure(kind: str, path: Path, val: Path, test: Path) -> dict:
    command = [sys.executable, __file__, "--child", kind, str(path), str(val), str(test)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


class EpochClock(L.Callback):
    """A callback for the train command: each training epoch's wall seconds into train.log
    (rank zero), so a whole command's epoch can be read apart from its start-up."""

    def __init__(self) -> None:
        self.start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            seconds = time.perf_counter() - self.start
            logging.getLogger("lrexp.bench").info(f"{EPOCH_CLOCK} {seconds:.6f}")


EPOCH_CLOCK = "epoch clock:"


def ddp_run(
    path: Path,
    val: Path,
    test: Path,
    folder: Path,
    trainer: str = "ddp_cpu",
    solver: str = "sgd",
    strings: int = 0,
) -> dict:
    """The train command under `trainer`: wall time, the training epochs' (EpochClock, summed)
    and every process's peak RSS. SGD: one epoch at lr 0.01; lbfgs: to tol 1e-4; with
    `strings`, the string columns hashed."""
    run_dir = folder / f"run_{trainer}_{solver}"
    command = [sys.executable, "-m", "lrexp.train", "data=table", "data.stream=true"]
    command += ["data.target=y", f"data.path={path}", f"data.val_path={val}"]
    command += [f"data.test_path={test}", f"trainer={trainer}", f"model.optimizer={solver}"]
    if solver == "sgd":
        command += ["model.lr=0.01", "model.scheduler=null", "trainer.max_epochs=1"]
    command += ["logger=none"]
    command += ["data.batch_size=256", "trainer.enable_progress_bar=false"]
    command += [f"hydra.run.dir={run_dir}", "+callbacks.epoch_clock._target_=stream.EpochClock"]
    command += ["data.categorical=hash"] if strings else []
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run dir each time
    environment = os.environ | {
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
        )
    }
    start = time.perf_counter()
    log = (folder / f"{trainer}_{solver}.log").open("w")
    process = subprocess.Popen(
        command, stdout=log, stderr=log, start_new_session=True, env=environment
    )
    peaks: dict[str, int] = {}
    while process.poll() is None:  # the session's processes: the command and its DDP ranks
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.getsid(int(pid)) != process.pid:
                    continue
                status = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            for line in status:
                if line.startswith("VmHWM"):
                    peaks[pid] = max(peaks.get(pid, 0), int(line.split()[1]) // 1024)
        time.sleep(0.3)
    wall_s = time.perf_counter() - start
    if process.returncode:
        raise RuntimeError((folder / f"{trainer}_{solver}.log").read_text()[-3000:])
    clock = [
        line for line in (run_dir / "train.log").read_text().splitlines() if EPOCH_CLOCK in line
    ]
    rows = pq.ParquetFile(path).metadata.num_rows
    return {"rows": rows, "wall_s": wall_s, "epochs": len(clock),
            "fit_s": sum(float(line.split()[-1]) for line in clock),
            "peak_rss_mib_per_process": sorted(peaks.values(), reverse=True)}  # fmt: skip


def ddp_report(path: Path, val: Path, test: Path, folder: Path, strings: int = 0) -> dict:
    """The train command under ddp_cpu and in one process (trainer=default), SGD and lbfgs,
    and the speed-ups: of the whole command and of its training epochs alone."""
    report = {}
    for solver in ("sgd", "lbfgs"):
        runs = {
            t: ddp_run(path, val, test, folder, t, solver, strings) for t in ("ddp_cpu", "default")
        }
        for key in ("wall_s", "fit_s"):
            runs[f"speed_up_{key}"] = runs["default"][key] / runs["ddp_cpu"][key]
        report[solver] = runs
    return report


def vw_pass(path: Path, folder: Path) -> dict:
    """Vowpal Wabbit's pass over its cache of the first VW_ROWS rows of `path`."""
    text, cache = folder / "vw.txt", folder / "vw.cache"
    rows = min(VW_ROWS, pq.ParquetFile(path).metadata.num_rows)
    if not cache.exists():
        say("writing VW text and cache")
        names = [f"x{j}" for j in range(COLUMNS)]
        written = 0
        with text.open("w") as out:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=GROUP_ROWS):
                x = np.column_stack([batch.column(n).to_numpy() for n in names])
                y = batch.column("y").to_numpy() * 2 - 1
                take = min(len(y), rows - written)
                y = y[:take]
                lines = [
                    f"{label} |f " + " ".join(map("{}:{:.6g}".format, names, row))
                    for label, row in zip(y, x[:take], strict=True)
                ]
                out.write("\n".join(lines) + "\n")
                written += take
                if written >= rows:
                    break
        make = ["-d", str(text), "--cache_file", str(cache), "-k", "--quiet"]
        subprocess.run([sys.executable, "-m", "vowpalwabbit", *make], check=True)
    base = [sys.executable, "-c", "import vowpalwabbit"]
    start = time.perf_counter()
    subprocess.run(base, check=True)
    startup = time.perf_counter() - start
    # With the cache present, VW reads it and not the text.
    run = [sys.executable, "-m", "vowpalwabbit", "-d", str(text), "--cache_file", str(cache)]
    run += ["--quiet"]
    run += ["--loss_function", "logistic"]
    start = time.perf_counter()
    subprocess.run(run, check=True)
    seconds = time.perf_counter() - start - startup
    return {"rows": rows, "pass_s": seconds, "rows_per_s": rows / seconds}


def lbfgs_report(folder: Path, val: Path, test: Path, strings: int = 0, repeats: int = 3) -> dict:
    """Full-batch L-BFGS streamed and in memory on one LBFGS_ROWS-row table, each `repeats`
    times in turn: the fastest of each (a fit of well under a second moves with the machine's
    other load)."""
    small = generate(table_path(folder, f"train_{LBFGS_ROWS}", strings), LBFGS_ROWS, 3, strings)
    say("L-BFGS, streamed and in memory")
    seconds: dict[str, list[float]] = {"stream_lbfgs": [], "memory_lbfgs": []}
    weights = {}
    for _ in range(repeats):
        for kind, times in seconds.items():
            got = measure(kind, small, val, test)
            times.append(got["setup_s"] + got["fit_s"])
            weights[kind] = got["w"]
    report = {
        "rows": LBFGS_ROWS,
        "streamed_s": seconds["stream_lbfgs"],
        "memory_s": seconds["memory_lbfgs"],
        "max_weight_difference": float(
            np.abs(np.subtract(weights["stream_lbfgs"], weights["memory_lbfgs"])).max()
        ),
    }
    report["streamed_over_memory"] = min(seconds["stream_lbfgs"]) / min(seconds["memory_lbfgs"])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="2000000,10000000")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", nargs=4, default=None)
    parser.add_argument("--ddp-only", action="store_true")
    parser.add_argument("--lbfgs-only", action="store_true")
    parser.add_argument("--strings", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    folder = Path(args.dir or tempfile.mkdtemp(prefix="lrexp_stream_"))
    folder.mkdir(parents=True, exist_ok=True)
    strings = args.strings
    val = generate(table_path(folder, "val", strings), 20_000, 1, strings)
    test = generate(table_path(folder, "test", strings), 20_000, 2, strings)
    report: dict = {"epochs": [], "columns": COLUMNS, "row_group_rows": GROUP_ROWS}
    if strings:
        report["strings"] = {"columns": strings, "zipf": ZIPF, "hash_bits": 18}
        report["strings"]["cardinalities"] = [
            STRING_CARDINALITIES[k % len(STRING_CARDINALITIES)] for k in range(strings)
        ]
    if args.lbfgs_only:
        emit({"lbfgs": lbfgs_report(folder, val, test, strings)}, args.out)
        return
    sizes = [int(n) for n in args.rows.split(",")]
    paths = {rows: table_path(folder, f"train_{rows}", strings) for rows in sizes}
    largest = generate(paths[max(sizes)], max(sizes), 0, strings)
    if args.ddp_only:
        emit({"ddp_cpu": ddp_report(largest, val, test, folder, strings)}, args.out)
        return
    for rows in sizes:
        path = generate(paths[rows], rows, 0, strings)
        say(f"streamed epoch on {rows} rows")
        got = measure("epoch", path, val, test)
        report["epochs"].append({
            "rows": got["rows"], "file_mib": path.stat().st_size / 2**20,
            "float32_mib": rows * COLUMNS * 4 / 2**20, "statistics_pass_s": got["setup_s"],
            "epoch_s": got["fit_s"], "rows_per_s": got["rows"] / got["fit_s"],
            "peak_rss_mib": got["peak_rss_mib"],
        })  # fmt: skip
    first = report["epochs"][0]
    say(f"in-memory epoch on {sizes[0]} rows")
    memory = measure("memory_epoch", paths[sizes[0]], val, test)
    report["memory_epoch"] = {
        "rows": memory["rows"], "epoch_s": memory["fit_s"], "load_s": memory["setup_s"],
        "rows_per_s": memory["rows"] / memory["fit_s"], "peak_rss_mib": memory["peak_rss_mib"],
    }  # fmt: skip
    report["streamed_over_memory_rows_per_s"] = (
        first["rows_per_s"] / report["memory_epoch"]["rows_per_s"]
    )
    if len(report["epochs"]) > 1:
        last = report["epochs"][-1]
        report["epoch_time_growth"] = last["epoch_s"] / first["epoch_s"]
        report["row_growth"] = last["rows"] / first["rows"]
    if strings:  # the hashed table's figures are the epochs'
        emit(report, args.out)
        return
    say("ddp_cpu")
    report["ddp_cpu"] = ddp_report(largest, val, test, folder, strings)
    say("Vowpal Wabbit")
    vw = vw_pass(folder / f"train_{sizes[0]}.parquet", folder)
    report["vw"] = vw
    report["streamed_over_vw_rows_per_s"] = first["rows_per_s"] / vw["rows_per_s"]
    report["lbfgs"] = lbfgs_report(folder, val, test)
    emit(report, args.out)


if __name__ == "__main__":
    main()
