"""lrexp.data.mnist through torchvision's real MNIST loader, on fabricated IDX files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torchvision import datasets, transforms

from lrexp.data.mnist import RAW_FILES, MNISTDataModule
from lrexp.errors import LrexpError
from lrexp.train import main
from tests.conftest import write_idx


def test_reads_the_binary_subset_as_torchvision_serves_it(mnist_root: Path) -> None:
    files = sorted(mnist_root.rglob("*"))
    dm = MNISTDataModule(str(mnist_root), positive=[3], negative=[8])
    dm.setup("fit")
    dm.setup("test")
    assert sorted(mnist_root.rglob("*")) == files  # nothing cached to disk
    y, val_y = dm.splits["train"][1], dm.splits["val"][1]
    assert (len(y), len(val_y), len(dm.splits["test"][1])) == (36, 4, 20)  # 20 of each class
    assert y.sum() == 18 and val_y.sum() == 2

    tv = datasets.MNIST(str(mnist_root), train=True, transform=transforms.ToTensor())
    first_3 = next(i for i in range(len(tv)) if tv.targets[i] in (3, 8))
    features = dm.preprocess(dm.read_split(train=True)[0][first_3 : first_3 + 1])
    assert torch.equal(features[0], tv[first_3][0].flatten())

    (group,) = list(dm.train_dataloader())
    assert [tuple(batch_x.shape) for batch_x, _, _ in group] == [(36, 784)]
    ((batch_x, _, _),) = group
    assert batch_x.min() >= 0 and batch_x.max() <= 1


def test_missing_files_name_the_folder_the_files_and_both_ways(tmp_path: Path) -> None:
    dm = MNISTDataModule(str(tmp_path / "empty"), positive=[3], negative=[8])
    with pytest.raises(LrexpError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert f"MNIST files missing in {tmp_path / 'empty' / 'MNIST' / 'raw'}: " in message
    assert ", ".join(RAW_FILES) in message
    assert "data.download=true" in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in message


def test_a_truncated_file_is_named(mnist_root: Path) -> None:
    path = mnist_root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(LrexpError, match=f"{path} holds .* bytes but its header promises"):
        MNISTDataModule(str(mnist_root), positive=[3]).setup("fit")


def test_a_file_that_is_no_idx_is_named(mnist_root: Path) -> None:
    path = mnist_root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    path.write_bytes(b"<html>Not Found</html>")
    with pytest.raises(LrexpError, match=f"{path} is no uint8 IDX file of 1 dimensions"):
        MNISTDataModule(str(mnist_root), positive=[3]).setup("fit")


def test_images_and_labels_must_agree(mnist_root: Path) -> None:
    write_idx(mnist_root / "MNIST" / "raw" / "train-labels-idx1-ubyte", torch.zeros(7).numpy())
    with pytest.raises(LrexpError, match="for 7 labels in train-labels-idx1-ubyte"):
        MNISTDataModule(str(mnist_root), positive=[3]).setup("fit")


def test_a_failed_download_says_how_to_get_the_files_offline(
    run_main: Callable[..., int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setattr(datasets.MNIST, "mirrors", [f"file://{tmp_path}/no-mirror/"])
    overrides = ("data=mnist", "data.download=true", f"paths.data_dir={tmp_path / 'data'}")
    assert run_main(main, *overrides, f"hydra.run.dir={tmp_path / 'run'}") == 2
    err = capsys.readouterr().err
    assert "lrexp: error: data.download=true failed for MNIST (Error downloading" in err
    assert f"Without the network: download each file as <name>.gz from file://{tmp_path}" in err


def test_train_on_mnist_reaches_high_accuracy(trained_mnist: Path) -> None:
    metrics = json.loads((trained_mnist / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.9


def test_no_data_exits_2_with_a_short_message_before_the_run(
    run_main: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    status = run_main(main, "data=mnist", "paths.data_dir=/empty", f"hydra.run.dir={run_dir}")
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("lrexp: error: MNIST files missing in /empty/MNIST/raw: ")
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.json").exists()
