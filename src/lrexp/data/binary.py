"""Turn a 10-class torchvision dataset into a flattened binary problem.

Shared by the MNIST, Fashion-MNIST and CIFAR-10 DataModules: class selection by index or name,
a seeded stratified validation split, optional per-feature standardisation (statistics from the
training split only, kept in the checkpoint), and fast in-memory batches (lrexp.data.batches).
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lrexp.data.batches import tensor_loader
from lrexp.errors import LrexpError

log = logging.getLogger(__name__)

ClassSpec = Sequence[int | str] | int | str | None


def _name_key(name: str) -> str:
    return re.sub(r"[-_ ]", "", name.lower())


def short_name(name: str) -> str:
    """The name a user types: 'T-shirt/top' → 't-shirt', 'Ankle boot' → 'ankle-boot'."""
    return name.split("/")[0].lower().replace(" ", "-")


def resolve_classes(spec: ClassSpec, names: Sequence[str], key: str) -> list[int]:
    """Class indices for a list of indices or names ('T-shirt/top' also answers to 't-shirt')."""
    if spec is None:
        raise LrexpError(f"{key} is null: list at least one class")
    items = [spec] if isinstance(spec, int | str) else list(spec)
    if not items:
        raise LrexpError(f"{key} is empty: list at least one class, e.g. {key}=[0]")
    lookup = {_name_key(n): i for i, n in enumerate(names)}
    lookup |= {_name_key(short_name(n)): i for i, n in enumerate(names)}
    indices = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise LrexpError(f"{key} holds {item!r}: use class indices 0-9 or names")
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item)
        index = item if isinstance(item, int) else lookup.get(_name_key(item))
        if index is None or not 0 <= index < len(names):
            allowed = f"class indices 0-{len(names) - 1}"
            if not all(n.isdigit() for n in names):
                allowed += " or names: " + ", ".join(short_name(n) for n in names)
            raise LrexpError(f"{key} holds unknown class {item!r}: use {allowed}")
        indices.append(index)
    return sorted(set(indices))


def select_binary(
    positive: ClassSpec, negative: ClassSpec, names: Sequence[str]
) -> tuple[list[int], list[int]]:
    """The classes of label 1 and label 0; `negative=None` means every other class."""
    pos = resolve_classes(positive, names, "data.positive")
    if negative is None:
        neg = [i for i in range(len(names)) if i not in pos]
        if not neg:
            raise LrexpError("data.positive lists every class: leave some for data.negative")
        return pos, neg
    neg = resolve_classes(negative, names, "data.negative")
    if shared := sorted(set(pos) & set(neg)):
        raise LrexpError(
            f"classes {shared} are in both data.positive and data.negative: "
            "a class can have one label only"
        )
    return pos, neg


def binary_subset(
    targets: Tensor, positive: list[int], negative: list[int]
) -> tuple[Tensor, Tensor]:
    """Indices of the samples in either class set, and their 0/1 labels."""
    is_pos = torch.isin(targets, torch.tensor(positive))
    keep = is_pos | torch.isin(targets, torch.tensor(negative))
    return keep.nonzero().squeeze(1), is_pos[keep].float()


def stratified_split(labels: Tensor, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train, val) indices; each label keeps its share in both parts."""
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in (0.0, 1.0):
        idx = (labels == label).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_val = round(val_fraction * len(idx))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def flat_features(images: Tensor) -> Tensor:
    """uint8 images (N, C, H, W) → (N, C·H·W) floats in [0, 1], in torchvision's ToTensor order."""
    return images.flatten(1).float().div_(255)


@rank_zero_only
def log_balance(split: str, labels: Tensor, positive: str, negative: str) -> None:
    n, n_pos = len(labels), int(labels.sum())
    share = 100 * n_pos / max(n, 1)
    log.info(
        f"{split} split: {n} samples, {n_pos} ({share:.1f} %) label 1 ({positive}), "
        f"{n - n_pos} label 0 ({negative})"
    )


class BinaryVisionDataModule(L.LightningDataModule):
    """Base for the image DataModules; a subclass says how to read its torchvision dataset."""

    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (channels, height, width) of one image
    image_mode: str  # PIL mode for predict's image files: "L" or "RGB"

    def __init__(
        self,
        data_dir: str,
        positive: ClassSpec,
        negative: ClassSpec = None,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        normalize: bool = False,
        download: bool = False,
        seed: int | None = 0,
        minibatches_per_step: int = 64,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.positive, self.negative = select_binary(positive, negative, self.class_names)
        # seed=null: a fresh random split and order for this run.
        self.seed = seed if seed is not None else int(torch.randint(2**31, ()))
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.feature_mean: Tensor | None = None
        self.feature_std: Tensor | None = None

    @property
    def in_features(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    # --- what a subclass provides -------------------------------------------------------------

    def read_split(self, train: bool) -> tuple[Tensor, Tensor]:
        """Images as a uint8 tensor (N, C, H, W) and their class indices (N,)."""
        raise NotImplementedError

    def offline_source(self) -> str:
        """How to get the files without the network."""
        raise NotImplementedError

    def download(self, dataset_cls: type, name: str) -> None:
        """torchvision's own download; its failure becomes one line with the offline way."""
        try:
            dataset_cls(self.hparams.data_dir, download=True)
        except (OSError, RuntimeError) as err:
            raise LrexpError(
                f"data.download=true failed for {name} ({' '.join(str(err).split())}). "
                "Without the network: " + self.offline_source()
            ) from None

    # --- Lightning hooks ----------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate") and "train" not in self.splits:
            x, y = self._binary(train=True)
            train_idx, val_idx = stratified_split(y, self.hparams.val_fraction, self.seed)
            self._add_split("train", x[train_idx], y[train_idx])
            self._add_split("val", x[val_idx], y[val_idx])
            if self.hparams.normalize and self.feature_mean is None:
                features = flat_features(self.splits["train"][0])
                self.feature_mean = features.mean(0)
                # A constant pixel keeps scale 1 (as in scikit-learn's StandardScaler).
                std = features.std(0)
                self.feature_std = torch.where(std < 1e-6, torch.ones_like(std), std)
        if stage == "test" and "test" not in self.splits:
            self._add_split("test", *self._binary(train=False))

    def state_dict(self) -> dict[str, Tensor]:
        """The standardisation statistics travel in the checkpoint, for eval and predict."""
        if self.feature_mean is None:
            return {}
        return {"feature_mean": self.feature_mean.cpu(), "feature_std": self.feature_std.cpu()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            self.feature_mean, self.feature_std = state["feature_mean"], state["feature_std"]

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    # --- features ------------------------------------------------------------------------------

    def preprocess(self, x: Tensor) -> Tensor:
        """uint8 images (N, C, H, W) → float features in [0, 1], standardised if asked."""
        features = flat_features(x)
        if self.hparams.normalize:
            mean, std = self._statistics()
            features = (features - mean.to(x.device)) / std.to(x.device)
        return features

    def _statistics(self) -> tuple[Tensor, Tensor]:
        """The training split's per-feature mean and std (data.normalize=true)."""
        if self.feature_mean is None:
            raise LrexpError(
                "data.normalize=true but no training statistics are known: "
                "use a checkpoint trained with data.normalize=true"
            )
        return self.feature_mean, self.feature_std

    @property
    def label_names(self) -> list[str]:
        """Label 0's classes, then label 1's ("3" and "8"; "sneaker" and "sandal")."""
        return [
            "+".join(short_name(self.class_names[i]) for i in classes)
            for classes in (self.negative, self.positive)
        ]

    def export_preprocessing(self) -> nn.Module:
        """predict's raw input as one tensor — pixels 0-255 (C, H, W) flattened per row, any
        real dtype — to the features the model takes, as `preprocess` computes them."""
        if not self.hparams.normalize:
            return ScalePixels(None, None)
        return ScalePixels(*self._statistics())

    def input_card(self) -> dict[str, Any]:
        """The raw input an exported model takes, and the preprocessing inside it."""
        c, h, w = self.image_shape
        steps = ["x / 255"]
        if self.hparams.normalize:
            steps.append("(x - mean) / std per feature (training split statistics, in the graph)")
        return {
            "kind": "image",
            "shape": ["batch", c * h * w],
            "layout": f"pixels row-major from (channels, height, width) = ({c}, {h}, {w})",
            "image_mode": self.image_mode,
            "resize_to": [w, h],
            "range": [0, 255],
            "preprocessing": steps,
        }

    def encode_inputs(self, inputs: str | Sequence[str]) -> tuple[list[str], Tensor]:
        """Rows for `predict`: image files (paths or globs) → features, as in training."""
        from PIL import Image, UnidentifiedImageError
        from torchvision.transforms.functional import pil_to_tensor

        patterns = [inputs] if isinstance(inputs, str) else list(inputs)
        paths = sorted(
            {p for pattern in patterns for p in glob.glob(os.path.expanduser(str(pattern)))}
        )
        if not paths:
            raise LrexpError(f"inputs={inputs!r} matches no file: give image paths or a glob")
        c, h, w = self.image_shape
        images = []
        for path in paths:
            try:
                with Image.open(path) as image:
                    image = image.convert(self.image_mode).resize((w, h))
                    images.append(pil_to_tensor(image))
            except (UnidentifiedImageError, OSError) as err:
                raise LrexpError(f"inputs: cannot read {path} as an image ({err})") from None
        return paths, self.preprocess(torch.stack(images))

    def _add_split(self, split: str, images: Tensor, labels: Tensor) -> None:
        """Keep a split and log its class balance (it tells what an accuracy is worth)."""
        self.splits[split] = (images, labels)
        names = [
            ", ".join(short_name(self.class_names[i]) for i in c)
            for c in (self.positive, self.negative)
        ]
        log_balance(split, labels, *names)

    def _binary(self, train: bool) -> tuple[Tensor, Tensor]:
        images, targets = self.read_split(train)
        idx, labels = binary_subset(targets, self.positive, self.negative)
        return images[idx], labels

    def _loader(
        self, split: str, batch_size: int | None = None, shuffle: bool = False
    ) -> DataLoader:
        images, y = self.splits[split]
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        x = self.preprocess(images.to(device))
        return tensor_loader(
            x,
            y.to(device),
            batch_size=batch_size or max(len(y), 1),
            minibatches_per_step=self.hparams.minibatches_per_step,
            shuffle=shuffle,
            seed=self.seed,
            rank=self.trainer.global_rank if self.trainer else 0,
            world_size=self.trainer.world_size if self.trainer else 1,
        )


class ScalePixels(nn.Module):
    """Flattened pixels 0-255 → x / 255, then (x - mean) / std when statistics are given."""

    def __init__(self, mean: Tensor | None, std: Tensor | None) -> None:
        super().__init__()
        self.standardise = mean is not None
        if self.standardise:
            self.register_buffer("mean", mean.detach().clone().float())
            self.register_buffer("std", std.detach().clone().float())

    def forward(self, pixels: Tensor) -> Tensor:
        features = pixels.to(torch.float32) / 255
        if self.standardise:
            features = (features - self.mean) / self.std
        return features


def missing_files(folder: Path, names: Sequence[str]) -> list[str]:
    return [name for name in names if not (folder / name).is_file()]
