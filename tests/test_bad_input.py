"""Each class of data mistake, as a new user makes it: exit 2, one line naming the file or key,
the count and the fix, no traceback, the earlier run's files byte for byte as they were; and
every fix such a line suggests, run as printed, works."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lrexp import baseline, predict, train
from lrexp import eval as eval_
from tests.conftest import run_entry

ENTRY_POINTS: dict[str, Callable[[], None]] = {
    "train": train.main,
    "eval": eval_.main,
    "predict": predict.main,
    "baseline": baseline.main,
}
QUICK = ("trainer.max_epochs=2", "trainer.enable_progress_bar=false", "logger=none")


def table(rows: int = 120, seed: int = 0) -> dict[str, np.ndarray]:
    """Three numeric features and a binary target that depends on two of them."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=(3, rows))
    y = (a + b + 0.5 * rng.normal(size=rows) > 0).astype(int)
    return {"a": a, "b": b, "c": c, "y": y}


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> Path:
    names = list(columns)
    lines = [",".join(names)]
    lines += [",".join(str(columns[n][i]) for n in names) for i in range(len(columns[names[0]]))]
    path.write_text("\n".join(lines) + "\n")
    return path


def with_cell(columns: dict[str, np.ndarray], name: str, rows: list[int], text: str) -> dict:
    changed = dict(columns)
    changed[name] = columns[name].astype(object)
    changed[name][rows] = text
    return changed


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, trained_toy: Path) -> Path:
    """One finished table run in run/ (columns a, b, c, target y), the toy run, and one file per
    mistake."""
    root = tmp_path_factory.mktemp("bad_input")
    base = write_csv(root / "base.csv", table())
    overrides = ("data=table", f"data.path={base}", "data.target=y", *QUICK)
    assert run_entry(train.main, *overrides, f"hydra.run.dir={root / 'run'}") == 0
    shutil.copytree(trained_toy, root / "toy")
    (root / "empty.csv").write_text("")
    (root / "header.csv").write_text("a,b,c,y\n")
    (root / "folder.csv").mkdir()
    (root / "semicolons.csv").write_text(base.read_text().replace(",", ";"))
    latin1 = "a,b,c,y\n" + "".join(f"caf\xe9,{i},{i},{i % 2}\n" for i in range(40))
    (root / "latin1.csv").write_bytes(latin1.encode("latin-1"))
    write_csv(root / "inf.csv", with_cell(table(), "a", [5, 7], "inf"))
    write_csv(root / "overflow.csv", with_cell(table(), "b", [3], "1e40"))
    write_csv(root / "blank.csv", with_cell(table(), "a", [3], ""))
    write_csv(root / "new_blank.csv", with_cell(table(6, seed=9), "a", [1], ""))
    write_csv(root / "new_inf.csv", with_cell(table(6, seed=9), "c", [2], "-inf"))
    one_positive = table()
    one_positive["y"] = np.where(np.arange(120) == 0, 1, 0)
    write_csv(root / "one_positive.csv", one_positive)
    rare_class = table()
    rare_class["y"] = np.where(np.arange(120) == 5, 2, np.arange(120) % 2)
    write_csv(root / "rare_class.csv", rare_class)
    positives_only = table(40, seed=3)
    positives_only["y"] = np.ones(40, dtype=int)
    write_csv(root / "positives_only.csv", positives_only)
    renamed = {new: table()[old] for new, old in zip("pqry", "abcy", strict=True)}
    write_csv(root / "renamed.csv", renamed)
    write_csv(root / "other_rows.csv", table(seed=5))
    write_csv(root / "no_text.csv", table() | {"t": np.array([""] * 120)})
    write_csv(root / "no_words.csv", table() | {"t": np.array(["- !"] * 120)})
    write_csv(root / "ids.csv", table() | {"user": np.array([f"u{i}" for i in range(120)])})
    streamed = pa.table(table())
    pq.write_table(streamed, root / "base.parquet", row_group_size=40)
    (root / "no_parquet").mkdir()
    write_csv(root / "no_parquet" / "base.csv", table())
    (root / "mixed").mkdir()
    pq.write_table(streamed, root / "mixed" / "a.parquet")
    pq.write_table(streamed.set_column(0, "a", pa.array(["x"] * 120)), root / "mixed" / "b.parquet")
    three_labels = table(40, seed=4)
    three_labels["y"] = np.arange(40) % 3
    pq.write_table(pa.table(three_labels), root / "three_labels.parquet")
    corrupt = bytearray((root / "base.parquet").read_bytes())
    corrupt[100:1000] = bytes(900)
    (root / "corrupt.parquet").write_bytes(bytes(corrupt))
    weighted = table() | {"w": np.ones(120)}
    write_csv(root / "weight_negative.csv", with_cell(weighted, "w", [4], "-1"))
    write_csv(root / "weight_blank.csv", with_cell(weighted, "w", [4, 9], ""))
    write_csv(root / "weight_text.csv", with_cell(weighted, "w", [4], "heavy"))
    write_csv(root / "weight_zero.csv", weighted | {"w": np.zeros(120)})
    return root


TABLE = ("data=table", "data.path={site}/base.csv", "data.target=y", *QUICK)
STREAM = (*TABLE, "data.stream=true", "data.path={site}/base.parquet")
STEPS = "callbacks.model_checkpoint.every_n_train_steps"
CKPT = "ckpt_path={site}/run/checkpoints/last.ckpt"
TOY_CKPT = "ckpt_path={site}/toy/checkpoints/last.ckpt"

# (class of mistake, entry point, overrides, words the one line must hold); every run is
# pointed at the finished run's dir, whose files must stay as they were.
CASES = [
    ("not finite", "train", [*TABLE, "data.path={site}/inf.csv"], "column 'a' holds 2 infinite"),
    ("not finite", "train", [*TABLE, "data.path={site}/overflow.csv"], "'b' holds 1 infinite"),
    ("not finite", "train", [*TABLE, "data.test_path={site}/inf.csv"], "data.test_path="),
    ("not finite", "predict", [CKPT, "inputs={site}/new_inf.csv"], "'c' holds 1 infinite"),
    ("not finite", "train", ["data=toy", "data.hours=[1.0,inf,3.0]"], "data.hours=[1.0, inf"),
    ("not finite", "predict", [TOY_CKPT, "inputs=[2.0,nan]"], "must be finite"),
    ("too rare", "train", [*TABLE, "data.path={site}/one_positive.csv"], "label 1 (1) has 1 row"),
    ("too rare", "train", [*TABLE, "data.path={site}/rare_class.csv"], "label 2 (2) has 1 row"),
    ("too rare", "train", [*TABLE, "data.val_fraction=0.001"], "at least 626 rows"),
    ("one-class split", "train", [*TABLE, "data.test_path={site}/positives_only.csv"], "['0']"),
    ("one-class split", "train", [*TABLE, "data.test_fraction=0"], "data.test_fraction=0.2"),
    ("one-class split", "train", ["data=toy", "data.passed=[0,0,0]"], "one label only"),
    ("one-class split", "eval", [CKPT, "++data.test_path={site}/positives_only.csv"], "['0']"),
    ("resume", "train", [*TABLE, "data.path={site}/renamed.csv", "ckpt_path=last"], "'columns'"),
    ("resume", "train", [*TABLE, "data.path={site}/other_rows.csv", "ckpt_path=last"], "'mean'"),
    ("resume", "train", [*TABLE, "seed=7", "ckpt_path=last"], "trained on other data"),
    ("resume", "train", [*TABLE, "data.normalize=false", "ckpt_path=last"], "data.normalize"),
    ("resume", "train", [*TABLE, "data.features=[a]", TOY_CKPT], "ToyDataModule data"),
    ("other data", "eval", [CKPT, "++data.test_path={site}/renamed.csv"], "has no column"),
    ("other data", "eval", [CKPT, "++data.normalize=false"], "data.normalize=True"),
    ("other data", "predict", [CKPT, "inputs={site}/new_blank.csv", "++data.x=1"], "data.x is"),
    ("unreadable", "train", [*TABLE, "data.path={site}/empty.csv"], "the file is empty"),
    ("unreadable", "train", [*TABLE, "data.path={site}/header.csv"], "the table has no rows"),
    ("unreadable", "train", [*TABLE, "data.path={site}/folder.csv"], "is a directory"),
    ("unreadable", "predict", [CKPT, "inputs={site}/folder.csv"], "is a directory"),
    ("unreadable", "train", [*TABLE, "data.path={site}/semicolons.csv"], "data.delimiter=';'"),
    ("missing values", "train", [*TABLE, "data.path={site}/blank.csv"], "'a' (1)"),
    ("missing values", "predict", [CKPT, "inputs={site}/new_blank.csv"], "++data.missing=mean"),
    ("missing values", "eval", [CKPT, "++data.test_path={site}/blank.csv"], "++data.missing"),
    ("unreadable", "train", [*TABLE, "data.path={site}/latin1.csv"], "not UTF-8"),
    ("unreadable", "eval", ["ckpt_path={site}/run"], "did you mean ckpt_path={site}/run/checkp"),
    ("config", "train", [*TABLE, "model.scheduler=plateau", "data.val_fraction=0"], "val/loss"),
    ("config", "train", [*TABLE, "data.features=[a,b,a]"], "data.features lists ['a']"),
    ("config", "train", [*TABLE, "data.delimiter=';;'"], "give one character"),
    ("config", "predict", [TOY_CKPT, "inputs=[]"], "inputs=[] is empty"),
    ("wide", "train", [*TABLE, "data.text=[a]"], "column 'a' of"),
    ("wide", "train", [*TABLE, "data.text=[t]"], "has no column 't'"),
    ("wide", "train", [*TABLE, "data.hash_bits=40"], "data.hash_bits=40: use a whole number"),
    ("wide", "train", [*TABLE, "data.hash_bits=0"], "in 1..30"),
    ("wide", "train", [*TABLE, "data.categorical=dense"], "data.categorical='dense'"),
    ("wide", "train", [*TABLE, "data.path={site}/no_text.csv", "data.text=[t]"], "every row"),
    ("wide", "train", [*TABLE, "data.path={site}/no_words.csv", "data.text=[t]"], "no word"),
    (
        "wide",
        "train",
        [*STREAM, "data.categorical=hash", "data.missing=mean"],
        "data.missing=mean with data.categorical=hash",
    ),
    ("config", "train", [*TABLE, f"{STEPS}=0"], f"{STEPS}=0: give a number"),
    ("config", "train", [*TABLE, "data.val_path={site}/base.parquet"], "needs data.stream=true"),
    ("stream", "train", [*STREAM, "data.path={site}/no_parquet"], "holds no .parquet files"),
    ("stream", "train", [*STREAM, "data.path={site}/mixed"], "/mixed/b.parquet: column 'a'"),
    ("stream", "train", [*STREAM, "data.path={site}/base.csv"], "reads Parquet (a file"),
    ("stream", "train", [*STREAM, "data.test_path={site}/three_labels.parquet"], "lacks: ['2']"),
    ("stream", "train", [*STREAM, "data.path={site}/corrupt.parquet"], "(row group 0) cannot"),
    ("stream", "baseline", [*STREAM], "use data.stream=false"),
    ("stream", "train", [*STREAM, "data.weight=c"], "data.weight='c' has"),
    (
        "weights",
        "train",
        [*TABLE, "data.path={site}/weight_negative.csv", "data.weight=w"],
        "1 neg",
    ),
    (
        "weights",
        "train",
        [*TABLE, "data.path={site}/weight_blank.csv", "data.weight=w"],
        "2 missing",
    ),
    ("weights", "train", [*TABLE, "data.path={site}/weight_text.csv", "data.weight=w"], "numbers"),
    ("weights", "train", [*TABLE, "data.path={site}/weight_zero.csv", "data.weight=w"], "is 0 on"),
    ("weights", "train", [*TABLE, "data.weight=y"], "data.weight='y' is the target"),
    ("weights", "train", [*TABLE, "data.weight=nope"], "data.weight='nope' is not a column"),
    ("weights", "train", [*TABLE, "data.weight=a", "data.features=[a,b]"], "not both"),
]


def run(site: Path, entry: str, overrides: list[str], capsys: pytest.CaptureFixture) -> tuple:
    capsys.readouterr()
    arguments = [o.format(site=site) for o in overrides]
    code = run_entry(ENTRY_POINTS[entry], *arguments, f"hydra.run.dir={site / 'run'}")
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("kind", "entry", "overrides", "words"),
    CASES,
    ids=[f"{kind}: {entry} {o[-1].replace('{site}/', '')}" for kind, entry, o, _ in CASES],
)
def test_a_mistake_ends_in_one_line_before_anything_is_written(
    site: Path,
    kind: str,
    entry: str,
    overrides: list[str],
    words: str,
    capsys: pytest.CaptureFixture,
) -> None:
    before = snapshot(site / "run")
    code, err = run(site, entry, overrides, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    lines = err[err.index("lrexp: error:") :].strip().splitlines()
    assert len(lines) == 1 and words.format(site=site) in lines[0], err
    assert snapshot(site / "run") == before


# (entry point, the mistake's overrides, the fix its line must suggest); the fix is run as
# printed, in a fresh run dir, and must succeed.
FIXES = [
    ("train", [*TABLE, "data.path={site}/blank.csv"], "data.missing=mean"),
    ("train", [*TABLE, "data.path={site}/blank.csv"], "data.missing=drop"),
    ("train", [*TABLE, "data.test_fraction=0"], "data.test_fraction=0.2"),
    ("train", [*TABLE, "model.scheduler=plateau", "data.val_fraction=0"], "data.val_fraction=0.1"),
    ("train", ["data=toy", "data.passed=[0,0,0]", *QUICK], "data.passed=[0,0,1]"),
    ("train", ["data=toy", "data.hours=[1.0,inf,3.0]", *QUICK], "data.hours=[1.0,2.0,3.0]"),
    ("predict", [CKPT, "inputs={site}/new_blank.csv"], "++data.missing=mean"),
    ("predict", [CKPT, "inputs={site}/new_blank.csv"], "++data.missing=drop"),
    ("eval", [CKPT, "++data.test_path={site}/blank.csv"], "++data.missing=mean"),
]


@pytest.mark.parametrize(("entry", "overrides", "fix"), FIXES, ids=[f[2] for f in FIXES])
def test_the_fix_a_line_suggests_works_as_printed(
    site: Path,
    tmp_path: Path,
    entry: str,
    overrides: list[str],
    fix: str,
    capsys: pytest.CaptureFixture,
) -> None:
    code, err = run(site, entry, overrides, capsys)
    assert code == 2 and fix in err, err
    key = fix.split("=")[0].lstrip("+")
    arguments = [o.format(site=site) for o in overrides if not o.startswith(f"{key}=")]
    code = run_entry(ENTRY_POINTS[entry], *arguments, fix, f"hydra.run.dir={tmp_path / 'fixed'}")
    assert code == 0, capsys.readouterr().err
    if entry == "predict":
        written = (tmp_path / "fixed" / "predictions.csv").read_text().splitlines()
        assert len(written) == 1 + (6 if fix.endswith("mean") else 5)  # header, then the rows


def test_predicts_advice_for_a_blank_cell_works_on_the_real_command_line(site: Path) -> None:
    """Hydra parses `++data.missing=mean` on a real command line as in the tests above."""
    command = [sys.executable, "-m", "lrexp.predict", CKPT.format(site=site)]
    command.append(f"inputs={site / 'new_blank.csv'}")
    first = subprocess.run(
        [*command, f"hydra.run.dir={site / 'predicted'}"], capture_output=True, text=True
    )
    assert first.returncode == 2 and "Traceback" not in first.stderr
    fix = re.search(r"(\+\+data\.missing=mean)", first.stderr)[1]
    second = subprocess.run(
        [*command, fix, f"hydra.run.dir={site / 'predicted'}"], capture_output=True, text=True
    )
    assert second.returncode == 0, second.stderr
    assert len((site / "predicted" / "predictions.csv").read_text().splitlines()) == 7


def test_a_categorical_column_beyond_the_memory_guard_stops_and_hashing_fits(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """One line naming the column and data.categorical=hash, before anything is allocated or
    written; the fix, run as printed (with fewer hash bits, for this small budget), works."""
    from lrexp.data import table_memory

    monkeypatch.setattr(table_memory, "available_bytes", lambda: 60_000)  # 86 training ids: ~44 kB
    ids = [*TABLE, "data.path={site}/ids.csv"]
    before = snapshot(site / "run")
    code, err = run(site, "train", ids, capsys)
    assert code == 2 and "Traceback" not in err, err
    line = err[err.index("lrexp: error:") :].strip()
    assert len(line.splitlines()) == 1
    assert re.search(r"column 'user' has \d+ distinct values", line), line
    assert "data.categorical=hash" in line
    assert snapshot(site / "run") == before
    arguments = [o.format(site=site) for o in ids]
    fixed = (*arguments, "data.categorical=hash", "data.hash_bits=6")
    assert run_entry(train.main, *fixed, f"hydra.run.dir={tmp_path / 'fixed'}") == 0
