"""Turn a 10-class torchvision dataset into flat features and labels: two labels from class sets
(data.positive / data.negative) or K classes (data.classes).

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
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch import Tensor, nn

from lrexp.data.batches import SplitLoaders
from lrexp.data.extras import Fitted, RunExtras
from lrexp.data.labels import log_balance, split_label_check, stratified_split
from lrexp.errors import LrexpError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

ClassSpec = Sequence[int | str] | int | str | None


def _name_key(name: str) -> str:
    return re.sub(r"[-_ ]", "", name.lower())


def short_name(name: str) -> str:
    """The name a user types: 'T-shirt/top' → 't-shirt', 'Ankle boot' → 'ankle-boot'."""
    return name.split("/")[0].lower().replace(" ", "-")


def resolve_classes(
    spec: ClassSpec, names: Sequence[str], key: str, keep_order: bool = False
) -> list[int]:
    """Class indices for a list of indices or names ('T-shirt/top' also answers to 't-shirt'):
    sorted and deduplicated, or (`keep_order`) in the given order, a repeat being an error."""
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
        if keep_order and index in indices:
            raise LrexpError(f"{key} lists class {item!r} twice: list each class once")
        indices.append(index)
    return indices if keep_order else sorted(set(indices))


def select_classes(spec: ClassSpec, names: Sequence[str]) -> list[int]:
    """data.classes: `all`, or at least 3 classes by index or name, in the order given."""
    if spec == "all":
        return list(range(len(names)))
    classes = resolve_classes(spec, names, "data.classes", keep_order=True)
    if len(classes) < 3:
        raise LrexpError(
            f"data.classes lists {len(classes)} class(es): a softmax model needs at least 3 "
            "(for two, use data.positive and data.negative)"
        )
    return classes


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


def label_subset(targets: Tensor, label_classes: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Indices of the samples whose class is in any label's class set, and their labels (int64:
    the index of that set). Binary: [negative classes, positive classes]."""
    label_of = torch.full((int(targets.max()) + 1 if len(targets) else 1,), -1, dtype=torch.long)
    for label, classes in enumerate(label_classes):
        label_of[torch.tensor(list(classes), dtype=torch.long)] = label
    labels = label_of[targets.long()]
    keep = labels >= 0
    return keep.nonzero().squeeze(1), labels[keep]


def flat_features(images: Tensor) -> Tensor:
    """uint8 images (N, C, H, W) → (N, C·H·W) floats in [0, 1], in torchvision's ToTensor order."""
    return images.flatten(1).float().div_(255)


class VisionDataModule(RunExtras, SplitLoaders, L.LightningDataModule):
    """Base for the image DataModules; a subclass says how to read its torchvision dataset.

    Two labels: label 1 is the classes of `positive`, label 0 those of `negative` (null: every
    other class); with neither, the dataset's `default_pair` (positive, negative). K classes:
    `classes` (`all` or >= 3 indices/names); label k is the k-th.
    """

    default_pair: tuple[list[int | str], list[int | str]]

    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (channels, height, width) of one image
    image_mode: str  # PIL mode for predict's image files: "L" or "RGB"

    def __init__(
        self,
        data_dir: str,
        positive: ClassSpec = None,
        negative: ClassSpec = None,
        classes: ClassSpec = None,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        normalize: bool = False,
        download: bool = False,
        seed: int | None = 0,
        minibatches_per_step: int = 64,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.minibatches_per_step = minibatches_per_step
        if classes is not None:
            if positive is not None or negative is not None:
                raise LrexpError(
                    "data.classes and data.positive/negative are both set: data.classes trains "
                    "one softmax model over K classes, data.positive/negative a binary one; "
                    "set data.positive=null data.negative=null, or data.classes=null"
                )
            self.label_classes = [[c] for c in select_classes(classes, self.class_names)]
        else:
            if positive is None and negative is None:
                positive, negative = self.default_pair
            elif positive is None:
                raise LrexpError(
                    "data.negative is set but data.positive is null: list the classes of label 1"
                )
            positive_, negative_ = select_binary(positive, negative, self.class_names)
            self.label_classes = [negative_, positive_]
        # seed=null: a fresh random split and order for this run.
        self.seed = seed if seed is not None else int(torch.randint(2**31, ()))
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.feature_mean: Tensor | None = None
        self.feature_std: Tensor | None = None

    @property
    def in_features(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    @property
    def num_classes(self) -> int:
        return len(self.label_classes)

    @property
    def label_names(self) -> list[str]:
        """Each label's name: its class, or for a set of classes their names joined by '/'."""
        return ["/".join(short_name(self.class_names[i]) for i in c) for c in self.label_classes]

    @property
    def class_counts(self) -> list[int]:
        """Training rows per label (after setup("fit"))."""
        labels = self.splits["train"][1]
        return torch.bincount(labels, minlength=self.num_classes).tolist()

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
            x, y = self._labelled(train=True)
            train_idx, val_idx = stratified_split(y, self.hparams.val_fraction, self.seed)
            if self.hparams.val_fraction > 0:
                split_label_check(
                    y,
                    {"train": y[train_idx], "val": y[val_idx]},
                    self.label_names,
                    f"data={type(self).__name__}",
                    {"data.val_fraction": self.hparams.val_fraction},
                )
            self._add_split("train", x[train_idx], y[train_idx])
            self._add_split("val", x[val_idx], y[val_idx])
            if self.hparams.normalize and self.feature_mean is None:
                features = flat_features(self.splits["train"][0])
                self.feature_mean = features.mean(0)
                # A constant pixel keeps scale 1 (as in scikit-learn's StandardScaler).
                std = features.std(0)
                self.feature_std = torch.where(std < 1e-6, torch.ones_like(std), std)
        if stage == "test" and "test" not in self.splits:
            self._add_split("test", *self._labelled(train=False))

    def state_dict(self) -> dict[str, Tensor]:
        """The standardisation statistics travel in the checkpoint, for eval and predict."""
        if self.feature_mean is None:
            return {}
        return {"feature_mean": self.feature_mean.cpu(), "feature_std": self.feature_std.cpu()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            self.feature_mean, self.feature_std = state["feature_mean"], state["feature_std"]

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
        """Keep a split and log its class balance."""
        self.splits[split] = (images, labels)
        log_balance(split, labels, self.label_names)

    def run_figures(self, fitted: Fitted) -> dict[str, Figure]:
        """The test split's figures, the weights as images and the surest mistakes."""
        from lrexp.plots import confidently_wrong, weight_map, weight_templates

        names = list(self.label_names)
        if fitted.test_probs.dim() == 1:
            weights = weight_map(fitted.weight[0], self.image_shape, names)
        else:
            weights = weight_templates(fitted.weight, self.image_shape, names)
        images, labels = self.splits["test"]
        wrong = confidently_wrong(images, labels, fitted.test_probs, fitted.test_predicted, names)
        return super().run_figures(fitted) | {"weights": weights, "confidently_wrong": wrong}

    def _labelled(self, train: bool) -> tuple[Tensor, Tensor]:
        images, targets = self.read_split(train)
        idx, labels = label_subset(targets, self.label_classes)
        return images[idx], labels


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
