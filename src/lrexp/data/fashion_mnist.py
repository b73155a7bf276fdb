"""Fashion-MNIST through torchvision.datasets.FashionMNIST (ROOT/FashionMNIST/raw, IDX files).

Debian/Ubuntu ship the data as the package `dataset-fashion-mnist`; when paths.data_dir lacks
the files they are taken from there. Debian recompressed the .gz files, so torchvision's md5
check on them fails (and would send it to the network): lrexp decompresses them into the raw
folder itself, which is all torchvision needs.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import zlib
from pathlib import Path

from torch import Tensor

from lrexp.data.mnist import RAW_FILES, MNISTDataModule
from lrexp.data.vision import missing_files
from lrexp.errors import LrexpError

log = logging.getLogger(__name__)


class FashionMNISTDataModule(MNISTDataModule):
    """Binary Fashion-MNIST; the default pair sandal vs sneaker."""

    default_pair = (["sandal"], ["sneaker"])

    class_names = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    folder = "FashionMNIST"

    def __init__(self, *args, system_dir: str | None = None, **kwargs) -> None:
        """`system_dir`: where the distribution's .gz files lie (data.system_dir; null: nowhere)."""
        super().__init__(*args, **kwargs)

    @staticmethod
    def torchvision_dataset() -> type:
        from torchvision.datasets import FashionMNIST

        return FashionMNIST

    def offline_source(self) -> str:
        where = self.hparams.system_dir or "/usr/share/datasets/fashion-mnist"
        then = (
            f"lrexp decompresses its files from {where} into {self.raw_dir} by itself"
            if self.hparams.system_dir
            else f"and set data.system_dir={where}"
        )
        return f"install Debian/Ubuntu's package: apt-get install dataset-fashion-mnist; {then}"

    def prepare_data(self) -> None:
        self._copy_from_system()
        super().prepare_data()

    def read_split(self, train: bool) -> tuple[Tensor, Tensor]:
        self._copy_from_system()
        return super().read_split(train)

    def _copy_from_system(self) -> None:
        """Decompress the distribution's .gz files into the raw folder if it lacks them."""
        system_dir = self.hparams.system_dir
        missing = missing_files(self.raw_dir, RAW_FILES)
        if not missing or not system_dir:
            return
        sources = [Path(system_dir) / f"{name}.gz" for name in missing]
        if not all(source.is_file() for source in sources):
            return
        log.info(
            "Fashion-MNIST: %s lacks the files; decompressing %s into it", self.raw_dir, system_dir
        )
        for name, source in zip(missing, sources, strict=True):
            partial = self.raw_dir / f".{name}.partial-{os.getpid()}"
            try:
                self.raw_dir.mkdir(parents=True, exist_ok=True)
                with gzip.open(source, "rb") as src, partial.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError, zlib.error) as err:
                partial.unlink(missing_ok=True)
                raise LrexpError(
                    f"cannot decompress {source} into {self.raw_dir} ({err}). If that folder is "
                    "writable, the .gz file is damaged: "
                    "apt-get install --reinstall dataset-fashion-mnist"
                ) from None
            partial.replace(self.raw_dir / name)
