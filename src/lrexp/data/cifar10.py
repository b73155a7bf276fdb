"""CIFAR-10 through torchvision.datasets.CIFAR10 (ROOT/cifar-10-batches-py, pickled batches).

The batches are pickles, and unpickling runs code: torchvision's md5 check stays on, and a
file that fails it is never opened.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from lrexp.data.vision import VisionDataModule
from lrexp.errors import LrexpError


class CIFAR10DataModule(VisionDataModule):
    """Binary CIFAR-10; the default pair cat vs dog."""

    default_pair = (["cat"], ["dog"])

    class_names = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    image_shape = (3, 32, 32)
    image_mode = "RGB"

    def offline_source(self) -> str:
        """How to get the files without data.download, for error messages."""
        from torchvision.datasets import CIFAR10

        return f"download {CIFAR10.url} and unpack it into {self.hparams.data_dir}"

    def how_to_get(self) -> str:
        return f"data.download=true (needs the network), or {self.offline_source()}"

    def prepare_data(self) -> None:
        from torchvision.datasets import CIFAR10

        if self.hparams.download:
            self.download(CIFAR10, "CIFAR-10")

    def read_split(self, train: bool) -> tuple[Tensor, Tensor]:
        from torchvision.datasets import CIFAR10

        try:  # torchvision checks every file's md5 before it unpickles any
            dataset = CIFAR10(self.hparams.data_dir, train=train)
        except RuntimeError:
            raise LrexpError(self._diagnose()) from None
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        return images, torch.as_tensor(dataset.targets)

    def _diagnose(self) -> str:
        """Which files are missing or fail their md5 check, and how to get them."""
        from torchvision.datasets import CIFAR10
        from torchvision.datasets.utils import check_integrity

        folder = Path(self.hparams.data_dir) / CIFAR10.base_folder
        files = [
            *CIFAR10.train_list,
            *CIFAR10.test_list,
            [CIFAR10.meta["filename"], CIFAR10.meta["md5"]],
        ]
        missing = [name for name, _ in files if not (folder / name).is_file()]
        if missing:
            return (
                f"CIFAR-10 files missing in {folder}: {', '.join(missing)}. Get them with "
                f"{self.how_to_get()}; or point paths.data_dir at a folder holding "
                f"{CIFAR10.base_folder}/"
            )
        bad = [str(folder / name) for name, md5 in files if not check_integrity(folder / name, md5)]
        return (
            f"CIFAR-10 files failing their md5 check (truncated or corrupt; lrexp never "
            f"unpickles an unverified file): {', '.join(bad)}. Delete them and get them again: "
            f"{self.how_to_get()}"
        )
