"""lrexp.data.vision: class selection, the split, features and their statistics in checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import Tensor

from lrexp.data.fashion_mnist import FashionMNISTDataModule
from lrexp.data.mnist import MNISTDataModule
from lrexp.data.vision import (
    VisionDataModule,
    label_subset,
    resolve_classes,
    select_binary,
    select_classes,
    stratified_split,
)
from lrexp.errors import LrexpError
from lrexp.model import LogisticRegression

FASHION = FashionMNISTDataModule.class_names
DIGITS = MNISTDataModule.class_names


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (["t-shirt"], [0]),
        (["T_Shirt", "tshirt", "t shirt", "T-shirt/top"], [0]),
        (["Ankle Boot", "ankle_boot", "ANKLE-BOOT"], [9]),
        (["sandal", 7, "8"], [5, 7, 8]),
        ("coat", [4]),
        (3, [3]),
    ],
)
def test_classes_by_index_or_name(spec, expected: list[int]) -> None:
    assert resolve_classes(spec, FASHION, "data.positive") == expected


def test_an_unknown_name_lists_the_names_a_user_can_type() -> None:
    with pytest.raises(LrexpError, match="data.negative holds unknown class 'boot'") as err:
        resolve_classes(["boot"], FASHION, "data.negative")
    assert "t-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle-boot" in (
        str(err.value)
    )


@pytest.mark.parametrize("spec", [["three"], [10], [-1], [True], [], None])
def test_digits_take_indices_only(spec) -> None:
    with pytest.raises(LrexpError, match="data.positive"):
        resolve_classes(spec, DIGITS, "data.positive")


def test_negative_null_means_one_vs_rest() -> None:
    assert select_binary(["bag"], None, FASHION) == ([8], [0, 1, 2, 3, 4, 5, 6, 7, 9])
    assert select_binary([1, 3], [0], DIGITS) == ([1, 3], [0])


def test_a_class_cannot_be_on_both_sides_and_one_vs_rest_needs_a_rest() -> None:
    with pytest.raises(LrexpError, match=r"classes \[5\] are in both"):
        select_binary(["sandal"], [5], FASHION)
    with pytest.raises(LrexpError, match="every class"):
        select_binary(list(range(10)), None, DIGITS)


def test_label_subset_keeps_the_chosen_classes_with_their_label_indices() -> None:
    targets = torch.tensor([3, 8, 1, 8, 3, 0])
    idx, labels = label_subset(targets, [[8, 0], [3]])  # binary: [negative, positive]
    assert idx.tolist() == [0, 1, 3, 4, 5]
    assert labels.tolist() == [1, 0, 0, 1, 0] and labels.dtype == torch.long
    idx, labels = label_subset(targets, [[8], [1], [3]])  # K classes, in the order listed
    assert idx.tolist() == [0, 1, 2, 3, 4] and labels.tolist() == [2, 0, 1, 0, 2]


def test_classes_for_a_softmax_model() -> None:
    assert select_classes("all", DIGITS) == list(range(10))
    assert select_classes(["sneaker", 0, "bag"], FASHION) == [7, 0, 8]  # the order given
    with pytest.raises(LrexpError, match="data.classes lists class 'sandal' twice"):
        select_classes(["sandal", 1, "sandal"], FASHION)
    with pytest.raises(LrexpError, match="data.classes holds unknown class 'zebra'"):
        select_classes(["zebra", 1, 2], FASHION)
    with pytest.raises(LrexpError, match="at least 3"):
        select_classes([1, 2], FASHION)


def test_classes_and_positive_together_are_refused() -> None:
    with pytest.raises(LrexpError, match="data.classes and data.positive/negative are both set"):
        Squares("unused", positive=["light"], classes="all")


def test_k_classes_get_labels_names_and_counts() -> None:
    dm = Squares3("unused", classes=["c", "a", "b"], val_fraction=0.5)  # 2 or 3 images a class
    dm.setup("fit")
    assert dm.num_classes == 3 and dm.label_names == ["c", "a", "b"]
    _, labels = dm.splits["train"]
    assert dm.class_counts == torch.bincount(labels, minlength=3).tolist()
    assert sum(dm.class_counts) == len(labels)


def test_stratified_split_is_seeded_disjoint_and_keeps_each_labels_share() -> None:
    labels = torch.tensor([1] * 300 + [0] * 100 + [2] * 50)
    train, val = stratified_split(labels, 0.1, seed=3)
    assert [(labels[val] == k).sum() for k in (0, 1, 2)] == [10, 30, 5]
    assert sorted(torch.cat([train, val]).tolist()) == list(range(450))
    again, _ = stratified_split(labels, 0.1, seed=3)
    other, _ = stratified_split(labels, 0.1, seed=4)
    assert torch.equal(train, again) and not torch.equal(train, other)


class Squares(VisionDataModule):
    """Eight 2x2 grey images in memory: classes 0/1 alternate, the top-left pixel is constant."""

    class_names = ("dark", "light")
    image_shape = (1, 2, 2)
    image_mode = "L"
    reads: list[bool] = []

    def read_split(self, train: bool) -> tuple[Tensor, Tensor]:
        self.reads.append(train)
        targets = torch.arange(8) % 2
        images = (
            torch.arange(8 * 4).reshape(8, 1, 2, 2) * 8 + 100 * targets.view(8, 1, 1, 1)
        ) % 256
        images[:, 0, 0, 0] = 255
        return images.to(torch.uint8), targets


class Squares3(Squares):
    class_names = ("a", "b", "c")

    def read_split(self, train: bool) -> tuple[Tensor, Tensor]:
        images, _ = super().read_split(train)
        return images, torch.arange(8) % 3


def squares(**kwargs) -> Squares:
    return Squares("unused", positive=["light"], negative=["dark"], val_fraction=0.25, **kwargs)


def test_features_are_flat_floats_in_0_1() -> None:
    dm = squares()
    images = torch.tensor([[[[0, 51], [102, 255]]]], dtype=torch.uint8)
    assert dm.preprocess(images).tolist() == [pytest.approx([0.0, 0.2, 0.4, 1.0])]
    assert dm.in_features == 4


def test_normalize_uses_training_split_statistics_and_spares_constant_pixels() -> None:
    dm = squares(normalize=True)
    dm.setup("fit")
    train = dm.preprocess(dm.splits["train"][0])
    assert train[:, 1:].mean(0).abs().max() < 1e-5
    assert torch.allclose(train[:, 1:].std(0), torch.ones(3))
    assert dm.feature_std[0] == 1 and train[:, 0].eq(0).all()  # constant pixel: shifted only
    val = dm.preprocess(dm.splits["val"][0])
    assert not torch.allclose(val.mean(0), torch.zeros(4), atol=1e-3)  # val has its own mean


def test_normalize_without_statistics_says_so() -> None:
    with pytest.raises(LrexpError, match="no training statistics"):
        squares(normalize=True).preprocess(torch.zeros(1, 1, 2, 2, dtype=torch.uint8))


def test_each_split_logs_its_class_balance_once(caplog: pytest.LogCaptureFixture) -> None:
    dm = squares()
    with caplog.at_level(logging.INFO, logger="lrexp.data.labels"):
        dm.setup("fit")
        dm.setup("validate")
        dm.setup("test")
    lines = [r.getMessage() for r in caplog.records if r.name == "lrexp.data.labels"]
    assert lines == [
        "train split: 6 samples, 3 (50.0 %) label 0 (dark), 3 (50.0 %) label 1 (light)",
        "val split: 2 samples, 1 (50.0 %) label 0 (dark), 1 (50.0 %) label 1 (light)",
        "test split: 8 samples, 4 (50.0 %) label 0 (dark), 4 (50.0 %) label 1 (light)",
    ]


def test_predict_reads_no_dataset() -> None:
    dm = squares()
    dm.reads = []
    dm.setup("predict")
    assert dm.reads == [] and dm.splits == {}


def test_seed_null_draws_a_split_that_fit_and_test_share() -> None:
    dm = squares(seed=None)
    dm.setup("fit")
    first = dm.splits["val"][0]
    dm.setup("validate")
    assert torch.equal(dm.splits["val"][0], first) and isinstance(dm.seed, int)


def test_normalize_statistics_travel_in_the_checkpoint(trained_mnist: Path) -> None:
    """trained_mnist ran with data.normalize=true; eval-style test() restores the statistics."""
    data_dir = trained_mnist.parent / "data"
    (ckpt,) = (trained_mnist / "checkpoints").glob("best-*.ckpt")
    stored = torch.load(ckpt, weights_only=True)["MNISTDataModule"]

    reference = MNISTDataModule(str(data_dir), normalize=True)
    reference.setup("fit")
    assert torch.equal(stored["feature_mean"], reference.feature_mean)
    assert torch.equal(stored["feature_std"], reference.feature_std)

    fresh = MNISTDataModule(str(data_dir), normalize=True)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(LogisticRegression(784), datamodule=fresh, ckpt_path=str(ckpt), verbose=False)
    assert "train" not in fresh.splits  # only the test split was read...
    assert torch.equal(fresh.feature_mean, stored["feature_mean"])  # ...and standardised
    assert 0.5 < trainer.callback_metrics["test/acc"] <= 1
