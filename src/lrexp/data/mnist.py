"""MNIST handwritten digits through torchvision.datasets.MNIST (ROOT/MNIST/raw, IDX files)."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import torch
from torch import Tensor

from lrexp.data.vision import VisionDataModule, missing_files
from lrexp.errors import LrexpError

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def check_idx(path: Path, ndim: int, fix: str) -> tuple[int, ...]:
    """The shape in an uint8 IDX file's header; stop, naming the file, if its size disagrees
    (truncated) or it is no uint8 IDX file of `ndim` dimensions (corrupt)."""
    with path.open("rb") as f:
        magic = f.read(4)
        dims = f.read(4 * ndim)
    if magic != bytes([0, 0, 8, ndim]) or len(dims) < 4 * ndim:
        raise LrexpError(f"{path} is no uint8 IDX file of {ndim} dimensions (corrupt). {fix}")
    shape = struct.unpack(f">{ndim}I", dims)
    expected, size = 4 + 4 * ndim + math.prod(shape), path.stat().st_size
    if size != expected:
        raise LrexpError(
            f"{path} holds {size} bytes but its header promises {expected} (truncated or "
            f"corrupt). {fix}"
        )
    return shape


class MNISTDataModule(VisionDataModule):
    """Binary MNIST; the default pair 3 vs 8 is the classic hard pair for a linear model."""

    default_pair = ([3], [8])

    class_names = tuple(str(digit) for digit in range(10))
    image_shape = (1, 28, 28)
    image_mode = "L"
    folder = "MNIST"

    @property
    def raw_dir(self) -> Path:
        return Path(self.hparams.data_dir) / self.folder / "raw"

    @staticmethod
    def torchvision_dataset() -> type:
        from torchvision.datasets import MNIST

        return MNIST

    def offline_source(self) -> str:
        """How to get the raw files without data.download, for error messages."""
        mirror = self.torchvision_dataset().mirrors[0]
        return f"download each file as <name>.gz from {mirror} and gunzip it into {self.raw_dir}"

    def how_to_get(self) -> str:
        return f"data.download=true (needs the network), or {self.offline_source()}"

    def prepare_data(self) -> None:
        """Runs once per node before setup: the only place that downloads."""
        if self.hparams.download and missing_files(self.raw_dir, RAW_FILES):
            self.download(self.torchvision_dataset(), self.folder)

    def read_split(self, train: bool) -> tuple[Tensor, Tensor]:
        if missing := missing_files(self.raw_dir, RAW_FILES):
            raise LrexpError(
                f"{self.folder} files missing in {self.raw_dir}: {', '.join(missing)}. Get them "
                f"with {self.how_to_get()}; or point paths.data_dir at a folder holding "
                f"{self.folder}/raw/"
            )
        fix = f"Delete it and get it again: {self.how_to_get()}"
        shapes = {n: check_idx(self.raw_dir / n, 1 if "labels" in n else 3, fix) for n in RAW_FILES}
        for images, labels in (RAW_FILES[:2], RAW_FILES[2:]):
            if shapes[images][1:] != self.image_shape[1:] or shapes[images][0] != shapes[labels][0]:
                raise LrexpError(
                    f"{self.raw_dir / images} holds images of shape {shapes[images]} for "
                    f"{shapes[labels][0]} labels in {labels}, not (N, 28, 28) for N labels "
                    f"(corrupt). {fix}"
                )
        dataset = self.torchvision_dataset()(self.hparams.data_dir, train=train)
        return dataset.data.unsqueeze(1), torch.as_tensor(dataset.targets)
