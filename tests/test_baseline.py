"""`python -m lrexp.baseline`: scikit-learn's fit next to lrexp's, on the DataModule's own split."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from sklearn.linear_model import LogisticRegression

from lrexp.baseline import main, split_arrays
from lrexp.data.mnist import MNISTDataModule
from tests.conftest import run_entry


def test_baseline_prints_both_fits_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overrides = (
        "data=toy",
        "model.lr=0.1",
        "trainer.max_epochs=100",
        "sklearn.C=10",
        f"hydra.run.dir={tmp_path}",
    )
    assert run_entry(main, *overrides) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    reference = LogisticRegression(C=10, max_iter=1000).fit([[1.0], [2.0], [3.0]], [0, 0, 1])
    assert metrics["sklearn/test/acc"] == reference.score([[1.0], [2.0], [3.0]], [0, 0, 1])
    assert metrics["lrexp/test/acc"] == 1.0
    assert metrics["lrexp/fit_s"] > 0 and metrics["sklearn/fit_s"] > 0
    out = capsys.readouterr().out
    assert "scikit-learn" in out and f"tensorboard --logdir {tmp_path}" in out
    row = next(line for line in out.splitlines() if "test/acc" in line)
    assert f"{metrics['lrexp/test/acc']:.4f}" in row and f"{metrics['sklearn/test/acc']:.4f}" in row


def test_the_baseline_sees_exactly_the_datamodules_splits(mnist_root: Path) -> None:
    datamodule = MNISTDataModule(str(mnist_root), positive=[3], negative=[8], normalize=True)
    datamodule.setup("fit")
    datamodule.setup("test")
    for split in ("train", "val", "test"):
        x, y, weight = split_arrays(datamodule, split)
        assert weight is None
        images, labels = datamodule.splits[split]
        served = torch.cat([torch.from_numpy(x), torch.from_numpy(y)[:, None]], 1)
        expected = torch.cat([datamodule.preprocess(images), labels[:, None]], 1)
        assert len(served) == len(expected)
        assert torch.equal(served.unique(dim=0), expected.unique(dim=0))  # same rows, any order


def test_baseline_without_scikit_learn_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.linear_model", None)  # import fails as if absent
    assert run_entry(main, f"hydra.run.dir={tmp_path / 'run'}") == 2
    assert "pip install 'lrexp[baseline]'" in capsys.readouterr().err
    assert not list((tmp_path / "run").glob("*"))  # Hydra made the dir; nothing went in


def test_baseline_leaves_what_every_run_leaves(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The shared pipeline's end (lrexp.experiment.finish): the data's figures and metrics, and a
    summary that names only the loggers the run has."""
    overrides = ("data=toy", "model.lr=0.1", "trainer.max_epochs=20", "logger=none")
    assert run_entry(main, *overrides, f"hydra.run.dir={tmp_path}") == 0
    assert (tmp_path / "figures" / "decision_curve.png").stat().st_size > 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"lrexp/w", "lrexp/b", "lrexp/p_pass_at_4h", "lrexp/boundary_h"} <= metrics.keys()
    assert "tensorboard" not in capsys.readouterr().out
    log = (tmp_path / "baseline.log").read_text()
    assert "scikit-learn" in log and "lrexp/test/acc" in log  # both tables, as on the console
