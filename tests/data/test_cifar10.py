"""lrexp.data.cifar10 through torchvision's real CIFAR10 loader, on fabricated pickled batches."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torchvision import datasets, transforms

from lrexp.data.cifar10 import CIFAR10DataModule
from lrexp.errors import LrexpError
from lrexp.train import main


def test_reads_cat_vs_dog_as_3072_features_in_torchvisions_order(cifar_root: Path) -> None:
    dm = CIFAR10DataModule(str(cifar_root), positive=["cat"], negative=["dog"])
    dm.setup("fit")
    dm.setup("test")
    assert dm.label_classes == [[5], [3]]  # [label 0, label 1]
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [36, 4, 20]

    tv = datasets.CIFAR10(str(cifar_root), train=False, transform=transforms.ToTensor())
    first_cat = tv.targets.index(3)
    features = dm.preprocess(dm.read_split(train=False)[0][first_cat : first_cat + 1])
    assert features.shape == (1, 3072)
    assert torch.equal(features[0], tv[first_cat][0].flatten())


def test_a_file_failing_its_md5_is_named_and_never_unpickled(
    cifar_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = cifar_root / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:-10])

    def refuse(*args, **kwargs):
        raise AssertionError("an unverified pickle was opened")

    monkeypatch.setattr(pickle, "load", refuse)
    with pytest.raises(LrexpError, match=f"failing their md5 check .*: {path}. Delete them"):
        CIFAR10DataModule(str(cifar_root), positive=[3]).setup("fit")


def test_missing_files_name_the_folder_the_files_and_both_ways(tmp_path: Path) -> None:
    with pytest.raises(LrexpError) as err:
        CIFAR10DataModule(str(tmp_path), positive=[3]).setup("test")
    message = str(err.value)
    assert (
        f"CIFAR-10 files missing in {tmp_path / 'cifar-10-batches-py'}: data_batch_1, " in message
    )
    assert "test_batch, batches.meta" in message
    assert "data.download=true" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message


def test_train_on_cifar10(
    run_main: Callable[..., int], cifar_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    overrides = ("data=cifar10", f"paths.data_dir={cifar_root}", "data.val_fraction=0.25")
    status = run_main(main, *overrides, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert status == 0
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] > 0.9
    assert (
        "val split: 10 samples, 5 (50.0 %) label 0 (dog), 5 (50.0 %) label 1 (cat)"
        in capsys.readouterr().out
    )
