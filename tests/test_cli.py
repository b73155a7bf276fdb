"""Every anticipated bad input: a short message naming the key or path, exit 2, no traceback, and
an earlier run's files in the same run dir left byte for byte as they were."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lrexp.train import main
from tests.conftest import run_entry, write_mnist_like

MNIST_FILES = ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FAST = ("trainer.max_epochs=1", "trainer.enable_progress_bar=false")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fabricated MNIST (whole, truncated, partial), one finished MNIST run in run/, and a
    corrupt checkpoint beside it."""
    root = tmp_path_factory.mktemp("site")
    raw = write_mnist_like(root / "good" / "MNIST" / "raw")
    shutil.copytree(raw, root / "truncated" / "MNIST" / "raw")
    images = root / "truncated" / "MNIST" / "raw" / MNIST_FILES[0]
    images.write_bytes(images.read_bytes()[:-100])
    partial = root / "partial" / "MNIST" / "raw"
    partial.mkdir(parents=True)
    shutil.copy(raw / MNIST_FILES[0], partial)
    run = root / "run"
    overrides = ("data=mnist", f"paths.data_dir={root / 'good'}", f"hydra.run.dir={run}", *FAST)
    assert run_entry(main, *overrides) == 0
    last = (run / "checkpoints" / "last.ckpt").read_bytes()
    (root / "corrupt.ckpt").write_bytes(last[: len(last) // 2])
    return root


# (overrides, what the message must name); every bad run is pointed at the earlier run's dir.
BAD_INPUTS = [
    (["model.lr=-1"], "model.lr=-1"),
    (["model.lr=fast"], "model.lr='fast'"),  # an override of the wrong type
    (["model.lr=inf"], "model.lr=inf"),
    (["model.reduction=avg"], "model.reduction='avg'"),
    (["data.batch_size=0"], "data.batch_size=0"),
    (["data.val_fraction=1.0"], "data.val_fraction=1.0"),
    (["data.positive=[]"], "data.positive is empty"),
    (["data.positive=[zebra]"], "data.positive holds unknown class 'zebra'"),
    (["data.positive=[3]", "data.negative=[3,8]"], "data.positive and data.negative"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0"),
    (["seed=abc"], "seed='abc'"),
    (["seed=-1"], "seed=-1"),
    (["trainer.accelerator=gpu"], "trainer.accelerator=gpu"),
    (["trainer.devices=0"], "trainer: `Trainer(devices=0)`"),  # Lightning's own complaint
    (["+model.momentum_typo=0.9"], "model: "),
    (["ckpt_path=nowhere.ckpt"], "ckpt_path=nowhere.ckpt"),
    (["ckpt_path={site}/corrupt.ckpt"], "ckpt_path={site}/corrupt.ckpt is not a readable"),
    (["data=toy", "ckpt_path=last"], "ckpt_path={site}/run/checkpoints/last.ckpt does not fit"),
    (["paths.data_dir={site}/truncated"], f"{MNIST_FILES[0]} holds"),
    (["paths.data_dir={site}/partial"], "MNIST files missing in {site}/partial/MNIST/raw"),
    ([], "hydra.run.dir={site}/run already holds a run"),  # a good config, but a taken dir
    (["data=imagenet"], "Could not find 'data/imagenet'"),  # Hydra: unknown group option
    (["learning_rate=0.1"], "learning_rate"),  # Hydra: unknown key
]


@pytest.mark.parametrize(("overrides", "named"), BAD_INPUTS, ids=lambda v: str(v))
def test_bad_input_stops_with_a_message_and_leaves_the_earlier_run_intact(
    site: Path, overrides: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = site / "run"
    before = snapshot(run)
    capsys.readouterr()
    base = ["data=mnist", f"paths.data_dir={site / 'good'}", f"hydra.run.dir={run}", *FAST]
    code = run_entry(main, *base, *(o.format(site=site) for o in overrides))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert named.format(site=site) in err
    if "lrexp: error:" in err:  # Hydra's own messages (which list the options) are kept as they are
        assert len(err[err.index("lrexp: error:") :].strip().splitlines()) <= 3
    assert snapshot(run) == before


def test_a_diverging_run_names_the_epoch_and_keeps_a_finite_checkpoint(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The loss is computed from logits, so model.lr=1e30 stays finite; 1e38 overflows float32.
    run = tmp_path / "run"
    overrides = ("data=mnist", f"paths.data_dir={site / 'good'}", f"hydra.run.dir={run}")
    code = run_entry(main, *overrides, "trainer.max_epochs=5", "model.lr=1e38", "logger=none")
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert "training diverged in epoch 1" in err and "model.lr" in err
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())
    assert not (run / "metrics.json").exists()


def test_resuming_the_run_in_its_own_dir_is_allowed(site: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(site / "run", run)
    overrides = ("data=mnist", f"paths.data_dir={site / 'good'}", f"hydra.run.dir={run}")
    assert run_entry(main, *overrides, "ckpt_path=last", "trainer.max_epochs=2", "logger=none") == 0
    assert json.loads((run / "metrics.json").read_text())["val/acc"] > 0.5
    assert "max_epochs: 2" in (run / ".hydra" / "config.yaml").read_text()


def test_the_real_cli_maps_a_hydra_error_to_exit_2(tmp_path: Path) -> None:
    """A real process (test_train covers an lrexp error the same way): no traceback, no files."""
    proc = subprocess.run(
        [sys.executable, "-m", "lrexp.train", "data=imagenet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Could not find 'data/imagenet'" in proc.stderr
    assert not list(tmp_path.rglob("*"))
