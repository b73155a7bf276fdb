"""Streamed L-BFGS: the objective summed over row groups is the whole split's, and the fit on a
stream (one process, or two under ddp_cpu) is the in-memory fit on the same rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lrexp.data.wide_features import WideFeatures
from lrexp.objective import Objective
from lrexp.solvers import CentredFloat64
from lrexp.stream_objective import PassCache, StreamedSums
from lrexp.train import main
from tests.conftest import run_entry
from tests.test_train_scale import REPO, TIMEOUT_S, rendezvous_ports


@pytest.mark.parametrize(
    ("classes", "reduction", "weighted"), [(2, "mean", False), (3, "sum", False), (2, "mean", True)]
)
def test_the_summed_objective_is_the_whole_splits(
    classes: int, reduction: str, weighted: bool
) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 5, generator=generator) * 3 + 1
    y = torch.randint(classes, (1000,), generator=generator)
    w = torch.rand(1000, generator=generator) * 3 if weighted else None
    out = 1 if classes == 2 else classes
    weight = torch.randn(out, 5, generator=generator, dtype=torch.float64)
    bias = torch.randn(out, generator=generator, dtype=torch.float64)
    objective = Objective(classes, l2=0.01, reduction=reduction, class_weights=torch.rand(classes))
    pieces = [w.split(128) if weighted else [None] * 8]
    chunks = list(zip(x.split(128), y.split(128), *pieces, strict=True))
    sums = StreamedSums(lambda: iter(chunks), torch.float64, torch.device("cpu"))
    torch.testing.assert_close(sums.mean, x.double().mean(0))
    assert sums.rows == pytest.approx(1000 if w is None else w.double().sum().item())
    centred = x.double() - x.double().mean(0)
    expected = objective.value_and_gradient(centred, y, weight, bias, w)
    for got, want in zip(sums.value_and_gradient(objective, weight, bias), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_a_streamed_sparse_block_is_centred_as_in_memory(reduction: str) -> None:
    """Row groups of WideFeatures (hashed columns): the mean, value and gradient of the whole
    split's CentredFloat64, its sparse block centred implicitly; the cache gives them back."""
    generator = torch.Generator().manual_seed(2)
    rows = 600
    x = WideFeatures.fixed(
        torch.randn(rows, 3, generator=generator, dtype=torch.float64) * 2 + 1,
        torch.randint(0, 16, (rows, 2), generator=generator),
        (torch.rand(rows, 2, generator=generator) > 0.2).double(),
        16,
    )
    y = torch.randint(3, (rows,), generator=generator)
    weight = torch.randn(3, x.shape[1], generator=generator, dtype=torch.float64)
    bias = torch.randn(3, generator=generator, dtype=torch.float64)
    objective = Objective(3, l2=0.01, reduction=reduction)
    chunks = [(x[a : a + 128], y[a : a + 128], None) for a in range(0, rows, 128)]
    sums = StreamedSums(lambda: iter(chunks), torch.float64, torch.device("cpu"))
    whole = CentredFloat64(x, y)
    torch.testing.assert_close(sums.mean, whole.mean)
    expected = whole.value_and_gradient(objective, weight, bias)
    got = sums.value_and_gradient(objective, weight, bias)  # read from the cache
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    cached = list(sums.passes())
    for (a, _, _), (b, _, _) in zip(cached, chunks, strict=True):
        assert isinstance(a, WideFeatures) and a.per_row == b.per_row == 2
        assert torch.equal(a.to_dense(), b.to_dense())


def write_table(root: Path) -> dict[str, Path]:
    """A three-class table with a category; training rows in 7 row groups over two files."""
    rng = np.random.default_rng(0)
    rows = 2400
    a, b = rng.normal(size=(2, rows))
    color = rng.choice(["red", "green", "blue"], rows)
    logits = np.stack([a, b, (color == "red") - 0.5 * a])
    y = (logits + rng.gumbel(size=(3, rows))).argmax(0)
    w = rng.integers(0, 4, rows).astype(float)  # data.weight's runs only
    table = pa.table({"a": a * 4 + 2, "b": b, "color": color, "y": y, "w": w})
    (root / "train").mkdir(parents=True)
    pq.write_table(table.slice(0, 900), root / "train" / "one.parquet", row_group_size=300)
    pq.write_table(table.slice(900, 900), root / "train" / "two.parquet", row_group_size=250)
    pq.write_table(table.slice(0, 1800), root / "train.parquet")
    pq.write_table(table.slice(1800, 300), root / "val.parquet")
    pq.write_table(table.slice(2100, 300), root / "test.parquet")
    return {name: root / name for name in ("train", "train.parquet", "val.parquet", "test.parquet")}


LBFGS = ["data=table", "data.target=y", "model.optimizer=lbfgs", "model.tol=1e-7", "logger=none"]
LBFGS += ["trainer.enable_progress_bar=false", "data.features=[a,b,color]"]


def streamed(files: dict[str, Path]) -> list[str]:
    return [
        *LBFGS,
        "data.stream=true",
        f"data.path={files['train']}",
        f"data.val_path={files['val.parquet']}",
        f"data.test_path={files['test.parquet']}",
    ]


def last_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The in-memory fit, the streamed one, and the streamed one under ddp_cpu (a subprocess,
    started first), all on the same 1800 training rows; and streamed SGD under ddp_cpu."""
    root = tmp_path_factory.mktemp("stream_lbfgs")
    files = write_table(root)
    ddp = root / "ddp"
    # Minibatch SGD on the stream under DDP too: every rank must take the same steps, or it hangs.
    sgd = [*streamed(files), "model.optimizer=sgd", "model.lr=0.1", "trainer.max_epochs=2"]
    sgd += ["data.batch_size=16", "data.shuffle_rows=200"]
    started = []
    for port, (run_dir, overrides) in zip(
        rendezvous_ports(2), [(ddp, streamed(files)), (root / "ddp_sgd", sgd)], strict=True
    ):
        command = [sys.executable, "-m", "lrexp.train", "trainer=ddp_cpu", *overrides]
        started.append(
            subprocess.Popen(
                [*command, f"hydra.run.dir={run_dir}"],
                cwd=REPO,
                env=os.environ | {"MASTER_PORT": str(port)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    memory = [*LBFGS, f"data.path={files['train.parquet']}", "data.val_fraction=0"]
    memory += [f"data.test_path={files['test.parquet']}"]
    assert run_entry(main, *memory, f"hydra.run.dir={root / 'memory'}") == 0
    assert run_entry(main, *streamed(files), f"hydra.run.dir={root / 'stream'}") == 0
    weighted = "data.weight=w"
    assert run_entry(main, *memory, weighted, f"hydra.run.dir={root / 'memory_w'}") == 0
    assert run_entry(main, *streamed(files), weighted, f"hydra.run.dir={root / 'stream_w'}") == 0
    for process in started:
        output, _ = process.communicate(timeout=TIMEOUT_S)
        assert process.returncode == 0, output[-3000:]
    return {
        "memory": root / "memory",
        "stream": root / "stream",
        "ddp": ddp,
        "ddp_sgd": root / "ddp_sgd",
        "memory_w": root / "memory_w",
        "stream_w": root / "stream_w",
    }


def test_streamed_sgd_under_ddp_steps_together_to_a_good_fit(runs: dict[str, Path]) -> None:
    metrics = json.loads((runs["ddp_sgd"] / "metrics.json").read_text())
    memory = json.loads((runs["memory"] / "metrics.json").read_text())
    assert metrics["test/acc"] > memory["test/acc"] - 0.03
    assert "train/acc" not in metrics  # a stream's training scores are left out


@pytest.mark.parametrize("run", ["stream", "ddp", "stream_w"])
def test_streamed_lbfgs_reaches_the_in_memory_optimum(runs: dict[str, Path], run: str) -> None:
    """The same weights to 1e-4 (with data.weight: the weighted in-memory fit's)."""
    reference = "memory_w" if run.endswith("_w") else "memory"
    memory, other = last_weights(runs[reference]), last_weights(runs[run])
    assert not torch.allclose(
        last_weights(runs["memory_w"])["linear.weight"],
        last_weights(runs["memory"])["linear.weight"],
        atol=1e-3,
    )
    for name, tensor in memory.items():
        torch.testing.assert_close(other[name], tensor, rtol=0, atol=1e-4)


def test_later_passes_read_the_cache_not_the_source() -> None:
    generator = torch.Generator().manual_seed(1)
    chunks = [
        (torch.randn(n, 3, generator=generator), torch.arange(n), weight)
        for n, weight in ((5, None), (7, torch.rand(7, generator=generator)), (2, None))
    ]
    calls = []

    def source():
        calls.append(1)
        return iter(chunks)

    cache = PassCache(source)
    first, again, third = list(cache()), list(cache()), list(cache())
    assert len(calls) == 1
    for pass_ in (first, again, third):
        for got, given in zip(pass_, chunks, strict=True):
            for a, b in zip(got, given, strict=True):
                assert a is b is None or (torch.equal(a, b) and a.dtype == b.dtype)


def test_eval_and_predict_take_a_streamed_runs_checkpoint(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """The checkpoint rebuilds the streamed data (its state, its hash split or files): eval
    reproduces the run's test metrics, predict scores new rows with its preprocessing."""
    from lrexp import eval as eval_
    from lrexp import predict

    checkpoint = runs["stream"] / "checkpoints" / "last.ckpt"
    arguments = [f"ckpt_path={checkpoint}", "logger=none", f"hydra.run.dir={tmp_path / 'eval'}"]
    assert run_entry(eval_.main, *arguments) == 0
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    trained = json.loads((runs["stream"] / "metrics.json").read_text())
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    inputs = runs["stream"].parent / "test.parquet"
    arguments = [f"ckpt_path={checkpoint}", f"inputs={inputs}", f"hydra.run.dir={tmp_path / 'p'}"]
    assert run_entry(predict.main, *arguments) == 0
    assert len((tmp_path / "p" / "predictions.csv").read_text().splitlines()) == 1 + 300
