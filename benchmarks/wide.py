"""Wide tables, side by side in one run: lrexp against scikit-learn and Vowpal Wabbit; prints one
JSON document (throughput.emit).

Every table is generated here, chunk by chunk, from a known logistic model: numbers, Zipf-
distributed ids (a few frequent values, a long tail of rare ones, as real ids are), and words.

- ids: --ids-rows rows (default 200 000), two numeric columns and a user id of ~15 000 distinct
  values. `python -m lrexp.baseline data=table` with its defaults (one-hot kept sparse, L-BFGS,
  C=1), a whole process: its peak RSS, and both fit times and test accuracies from its
  metrics.json (scikit-learn: OneHotEncoder's sparse matrix, LogisticRegression(C=1)). Goals:
  it finishes, peak RSS <= 3 GB, lrexp's fit <= scikit-learn's, accuracy >= scikit-learn's -
  0.5 pp.
- hashed: --hashed-rows rows (default 2 000 000), 16 numeric and 4 string columns of up to
  200, 20 000, 200 000 and 1 000 000 values, data.categorical=hash (2^18). lrexp's SGD epoch
  (`python -m lrexp.train` in this process, batch --batch-size, the mean of its steady epochs)
  in training rows per second, against VW (-b 18, logistic loss) passing over its own cache of
  the same training rows; test accuracy of both on the same test rows. Goal: lrexp's rows/s
  >= VW's, accuracy >= VW's - 0.3 pp.
- text: --text-rows rows of generated reviews (a vocabulary of 5 000 Zipf-distributed words,
  300 of the 1 000 most frequent carrying sentiment), data.text with data.ngram_max=2 against
  scikit-learn's HashingVectorizer(2^18, ngram 1-2) + LogisticRegression(C=1) on the same
  split. Goal: lrexp's accuracy >= scikit-learn's - 1.5 pp.
- austen: real text, labelled: Jane Austen's six novels as Debian ships them for R (the
  janeaustenr source, fetched from deb.debian.org, read with the `rdata` package: the `bench`
  extra), cut into passages of PASSAGE_LINES consecutive non-empty lines. Two tasks, compared
  as the generated text is: Pride and Prejudice against Sense and Sensibility (binary), and
  which of the six novels (six classes).

Usage: python benchmarks/wide.py [--sections ids,hashed,text,austen] [--ids-rows N]
[--hashed-rows N] [--text-rows N] [--epochs N] [--batch-size N] [--threads N] [--out FILE].
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from throughput import emit, log, lrexp_run, machine

CHUNK = 250_000
AUSTEN_URL = (
    "http://deb.debian.org/debian/pool/main/r/r-cran-janeaustenr/"
    "r-cran-janeaustenr_1.0.0.orig.tar.gz"
)
AUSTEN_NOVELS = (
    "prideprejudice", "sensesensibility", "emma", "mansfieldpark", "northangerabbey", "persuasion"
)  # fmt: skip
PASSAGE_LINES = 4


def zipf_ids(rng: np.random.Generator, rows: int, values: int, a: float = 1.2) -> np.ndarray:
    """Ids 0..values-1, Zipf-distributed (value k drawn ~ 1/k^a), shuffled so that an id's
    number says nothing of its frequency."""
    ranks = np.minimum(rng.zipf(a, rows), values) - 1
    return np.random.default_rng(values).permutation(values)[ranks]


def write_chunks(path: Path, chunks) -> None:
    """Row groups of CHUNK rows, written as they are made (never the whole table at once)."""
    writer = None
    for chunk in chunks:
        table = pa.table(chunk)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def ids_table(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    effect = rng.normal(0, 1, 40_000)

    def chunks():
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            a, b = rng.normal(size=(2, n))
            user = zipf_ids(rng, n, 40_000)
            logit = 0.8 * a - 0.5 * b + effect[user]
            y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
            yield {"a": a, "b": b, "user": [f"u{u}" for u in user], "y": y}

    write_chunks(path, chunks())


HASHED_CARDINALITIES = (200, 20_000, 200_000, 1_000_000)


def hashed_table(path: Path, rows: int) -> None:
    rng = np.random.default_rng(1)
    coef = rng.normal(0, 0.3, 16)
    effects = [rng.normal(0, 0.7, k) for k in HASHED_CARDINALITIES]

    def chunks():
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            x = rng.normal(size=(n, 16))
            ids = [zipf_ids(rng, n, k, 1.1) for k in HASHED_CARDINALITIES]
            logit = x @ coef + sum(e[i] for e, i in zip(effects, ids, strict=True))
            y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
            chunk = {f"x{j}": x[:, j] for j in range(16)}
            chunk |= {f"s{j}": [f"v{v}" for v in i] for j, i in enumerate(ids)}
            yield chunk | {"y": y}

    write_chunks(path, chunks())


def text_table(path: Path, rows: int) -> None:
    rng = np.random.default_rng(2)
    words = np.array([f"w{k}" for k in range(5_000)])
    sentiment = np.zeros(5_000)
    sentiment[rng.choice(1_000, 300, replace=False)] = rng.normal(0, 2.0, 300)

    def chunks():
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            lengths = rng.integers(5, 60, n)
            drawn = np.minimum(rng.zipf(1.1, int(lengths.sum())), 5_000) - 1  # by frequency
            reviews, logits, at = [], np.zeros(n), 0
            for i, length in enumerate(lengths):
                tokens = drawn[at : at + length]
                at += length
                reviews.append(" ".join(words[tokens]))
                logits[i] = sentiment[tokens].sum() / np.sqrt(length)
            y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(np.int64)
            yield {"review": reviews, "y": y}

    write_chunks(path, chunks())


def whole_process(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in bytes) of a command run as its own process."""
    probe = (
        "import resource, subprocess, sys, time; start = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(time.perf_counter() - start, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *command], check=True, capture_output=True, text=True
    )
    wall, peak = out.stdout.split()
    return float(wall), float(peak)


def ids_section(work: Path, rows: int) -> dict:
    path = work / "ids.parquet"
    ids_table(path, rows)
    run = work / "runs" / "ids"
    command = [sys.executable, "-m", "lrexp.baseline", "data=table", f"data.path={path}"]
    command += ["data.target=y", "logger=none", "trainer.enable_progress_bar=false"]
    log("ids: lrexp.baseline ...")
    wall, peak = whole_process([*command, f"hydra.run.dir={run}"])
    metrics = json.loads((run / "metrics.json").read_text())
    distinct = pq.read_table(path, columns=["user"]).column("user").unique()
    return {
        "rows": rows,
        "distinct_users": len(distinct),
        "process_wall_s": round(wall, 2),
        "peak_rss_gb": round(peak / 1e9, 3),
        "lrexp_fit_s": round(metrics["lrexp/fit_s"], 3),
        "sklearn_fit_s": round(metrics["sklearn/fit_s"], 3),
        "lrexp_test_acc": metrics["lrexp/test/acc"],
        "sklearn_test_acc": metrics["sklearn/test/acc"],
        "fit_ratio_lrexp_over_sklearn": round(metrics["lrexp/fit_s"] / metrics["sklearn/fit_s"], 3),
    }


def vw_lines(frame: pa.Table, rows: np.ndarray) -> list[str]:
    """VW's text format for the rows: label ±1, the numbers in namespace n (standardised by
    the file's own mean and std), the strings in namespace s as column=value."""
    lines = []
    numbers = np.stack([frame.column(f"x{j}").to_numpy() for j in range(16)], 1)[rows]
    strings = [np.asarray(frame.column(f"s{j}").to_pylist(), dtype=object)[rows] for j in range(4)]
    labels = frame.column("y").to_numpy()[rows] * 2 - 1
    for i in range(len(rows)):
        num = " ".join(f"x{j}:{numbers[i, j]:.5f}" for j in range(16))
        cat = " ".join(f"s{j}={strings[j][i]}" for j in range(4))
        lines.append(f"{labels[i]} |n {num} |s {cat}")
    return lines


def vw_run(work: Path, train: list[str], test: list[str], labels: np.ndarray) -> dict:
    """VW -b 18 --loss_function logistic: one pass that builds its cache, then a timed pass
    over the cache alone; test accuracy from its predictions."""
    from vowpalwabbit import Workspace

    (work / "train.vw").write_text("\n".join(train) + "\n")
    (work / "test.vw").write_text("\n".join(test) + "\n")
    cache, model = work / "train.cache", work / "model.vw"
    common = "-b 18 --loss_function logistic --quiet"
    first = Workspace(f"{common} -d {work / 'train.vw'} --cache_file {cache} -f {model}")
    first.finish()
    start = time.perf_counter()
    # With its cache there, VW reads the cache instead of the text file.
    again = Workspace(f"{common} -d {work / 'train.vw'} --cache_file {cache} -i {model} -f {model}")
    again.finish()
    cached_s = time.perf_counter() - start
    predictions = work / "predictions.txt"
    Workspace(f"--quiet -t -i {model} -d {work / 'test.vw'} -p {predictions}").finish()
    scores = np.array([float(line.split()[0]) for line in predictions.read_text().splitlines()])
    return {
        "pass_over_cache_s": round(cached_s, 3),
        "rows_per_s": round(len(train) / cached_s),
        "test_acc": float(((scores > 0).astype(int) == labels).mean()),
    }


def hashed_section(work: Path, rows: int, epochs: int, batch_size: int) -> dict:
    path = work / "hashed.parquet"
    log("hashed: writing the table ...")
    hashed_table(path, rows)
    overrides = ["data=table", f"data.path={path}", "data.target=y", "data.categorical=hash"]
    overrides += ["model.optimizer=sgd", f"data.batch_size={batch_size}", "logger=none"]
    overrides += [f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false"]
    overrides += [f"trainer.check_val_every_n_epoch={epochs}", "callbacks=none"]
    log("hashed: lrexp ...")
    result = lrexp_run(work, "", overrides, "hashed", steady=epochs - 1)
    from lrexp.data.table import TableDataModule

    datamodule = TableDataModule(str(path), "y", categorical="hash")
    datamodule.setup("fit")
    datamodule.setup("test")
    train_rows, test_rows = datamodule.split_rows["train"], datamodule.split_rows["test"]
    epoch_s = result["epoch"][0]
    log("hashed: vw ...")
    frame = pq.read_table(path)
    labels = frame.column("y").to_numpy()[test_rows]
    vw = vw_run(work, vw_lines(frame, train_rows), vw_lines(frame, test_rows), labels)
    lrexp_rows = len(train_rows) / epoch_s
    return {
        "rows": rows,
        "train_rows": len(train_rows),
        "lrexp": {
            "epoch_s": round(epoch_s, 3),
            "rows_per_s": round(lrexp_rows),
            "test_acc": result["test_acc"],
            "batch_size": batch_size,
            "epochs": epochs,
        },
        "vw": vw,
        "rows_per_s_ratio_lrexp_over_vw": round(lrexp_rows / vw["rows_per_s"], 3),
    }


def austen_tables(work: Path) -> dict[str, Path]:
    """The two Austen tasks as Parquet tables (passage, y): the novels' lines, empty ones and
    chapter headings left out, PASSAGE_LINES to a passage."""
    import rdata

    archive = work / "janeaustenr.tar.gz"
    urllib.request.urlretrieve(AUSTEN_URL, archive)
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    passages = {}
    for novel in AUSTEN_NOVELS:
        lines = rdata.read_rda(work / "janeaustenr" / "data" / f"{novel}.rda")[novel]
        kept = [str(line) for line in lines if line.strip() and not line.startswith("CHAPTER")]
        passages[novel] = [
            " ".join(kept[at : at + PASSAGE_LINES]) for at in range(0, len(kept), PASSAGE_LINES)
        ]
    tasks = {"pride_vs_sense": AUSTEN_NOVELS[:2], "six_novels": AUSTEN_NOVELS}
    paths = {}
    for task, novels in tasks.items():
        texts = [text for novel in novels for text in passages[novel]]
        labels = [k for k, novel in enumerate(novels) for _ in passages[novel]]
        paths[task] = work / f"austen_{task}.parquet"
        pq.write_table(pa.table({"review": texts, "y": labels}), paths[task])
    return paths


def text_comparison(work: Path, path: Path, name: str) -> dict:
    """data.text=[review] data.ngram_max=2 against HashingVectorizer(2^18, ngram 1-2) +
    LogisticRegression(C=1) on lrexp's own train/test split of the table at `path`."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression

    overrides = ["data=table", f"data.path={path}", "data.target=y", "data.text=[review]"]
    overrides += ["data.ngram_max=2", "logger=none", "trainer.enable_progress_bar=false"]
    log(f"{name}: lrexp ...")
    result = lrexp_run(work, "", overrides, name)
    from lrexp.data.table import TableDataModule

    datamodule = TableDataModule(str(path), "y", text=["review"], ngram_max=2)
    datamodule.setup("fit")
    datamodule.setup("test")
    frame = pq.read_table(path).to_pandas()
    train = frame.iloc[datamodule.split_rows["train"]]
    test = frame.iloc[datamodule.split_rows["test"]]
    vectorizer = HashingVectorizer(n_features=2**18, ngram_range=(1, 2))
    start = time.perf_counter()
    reference = LogisticRegression(C=1.0, max_iter=1000)
    reference.fit(vectorizer.transform(train["review"]), train["y"])
    fit_s = time.perf_counter() - start
    accuracy = float(reference.score(vectorizer.transform(test["review"]), test["y"]))
    return {
        "rows": len(frame),
        "classes": int(frame["y"].nunique()),
        "lrexp": {"test_acc": result["test_acc"], "fit_s": round(result["fit_s"], 3)},
        "sklearn_hashing_vectorizer": {"test_acc": accuracy, "fit_s": round(fit_s, 3)},
        "acc_difference_pp": round(100 * (result["test_acc"] - accuracy), 2),
    }


def text_section(work: Path, rows: int) -> dict:
    path = work / "text.parquet"
    text_table(path, rows)
    return text_comparison(work, path, "text")


def austen_section(work: Path) -> dict:
    return {task: text_comparison(work, path, task) for task, path in austen_tables(work).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="ids,hashed,text,austen")
    parser.add_argument("--ids-rows", type=int, default=200_000)
    parser.add_argument("--hashed-rows", type=int, default=2_000_000)
    parser.add_argument("--text-rows", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, help="torch's threads (VW runs on one)")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        sections = args.sections.split(",")
        if "ids" in sections:
            report["ids"] = ids_section(work, args.ids_rows)
        if "hashed" in sections:
            report["hashed"] = hashed_section(work, args.hashed_rows, args.epochs, args.batch_size)
        if "text" in sections:
            report["text"] = text_section(work, args.text_rows)
        if "austen" in sections:
            report["austen"] = austen_section(work)
    emit(report, args.out)


if __name__ == "__main__":
    main()
