"""lrexp.data.fashion_mnist: class names, and picking up Debian's dataset-fashion-mnist."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from lrexp.data.fashion_mnist import FashionMNISTDataModule
from lrexp.data.mnist import RAW_FILES
from lrexp.errors import LrexpError
from lrexp.train import main
from tests.conftest import write_mnist_like


@pytest.fixture
def system_dir(tmp_path: Path) -> Path:
    """A stand-in for /usr/share/datasets/fashion-mnist: the four IDX files, gzipped."""
    return write_mnist_like(tmp_path / "system", compress=True)


def test_classes_by_name_through_torchvisions_loader(fashion_root: Path) -> None:
    dm = FashionMNISTDataModule(str(fashion_root), positive=["t-shirt"], negative=["Shirt"])
    dm.setup("test")
    assert dm.label_classes == [[6], [0]] and dm.label_names == ["shirt", "t-shirt"]
    assert len(dm.splits["test"][1]) == 20 and dm.splits["test"][1].sum() == 10


def test_debian_files_are_decompressed_into_the_raw_folder_and_logged(
    tmp_path: Path, system_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    raw = data_dir / "FashionMNIST" / "raw"
    dm = FashionMNISTDataModule(str(data_dir), ["sandal"], system_dir=str(system_dir))
    with caplog.at_level(logging.INFO, logger="lrexp.data.fashion_mnist"):
        dm.prepare_data()
        dm.setup("fit")
    assert [r.getMessage() for r in caplog.records if r.name == "lrexp.data.fashion_mnist"] == [
        f"Fashion-MNIST: {raw} lacks the files; decompressing {system_dir} into it"
    ]
    assert sorted(p.name for p in raw.iterdir()) == sorted(RAW_FILES)  # no partial file left
    for name in RAW_FILES:
        assert (raw / name).read_bytes() == gzip.decompress(
            (system_dir / f"{name}.gz").read_bytes()
        )
    assert len(dm.splits["train"][1]) == 180  # sandal vs the other nine classes


def test_missing_files_say_how_to_get_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with pytest.raises(LrexpError) as err:
        FashionMNISTDataModule(str(data_dir), [5], system_dir=str(tmp_path / "nothing")).setup(
            "fit"
        )
    message = str(err.value)
    assert f"FashionMNIST files missing in {data_dir / 'FashionMNIST' / 'raw'}: " in message
    assert ", ".join(RAW_FILES) in message
    assert "data.download=true" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert f"decompresses its files from {tmp_path / 'nothing'}" in message

    with pytest.raises(LrexpError, match="set data.system_dir=/usr/share/datasets/fashion-mnist"):
        FashionMNISTDataModule(str(data_dir), [5], system_dir=None).setup("fit")


def test_a_damaged_debian_file_is_named_and_leaves_nothing_behind(
    tmp_path: Path, system_dir: Path
) -> None:
    damaged = system_dir / "train-images-idx3-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:200])
    dm = FashionMNISTDataModule(str(tmp_path / "data"), [5], system_dir=str(system_dir))
    with pytest.raises(LrexpError, match=f"cannot decompress {damaged} into"):
        dm.setup("fit")
    assert not list((tmp_path / "data" / "FashionMNIST" / "raw").glob("*images*"))


def test_train_sandal_vs_sneaker_from_the_debian_files(
    run_main: Callable[..., int], tmp_path: Path, system_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    status = run_main(
        main,
        "data=fashion_mnist",
        "data.positive=[sandal]",
        "data.negative=[sneaker]",
        f"data.system_dir={system_dir}",
        f"paths.data_dir={tmp_path / 'data'}",
        "trainer.max_epochs=2",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    assert status == 0
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] > 0.9
    log = capsys.readouterr().out
    assert f"decompressing {system_dir}" in log
    assert (
        "train split: 36 samples, 18 (50.0 %) label 0 (sneaker), 18 (50.0 %) label 1 (sandal)"
        in log
    )
