"""The lecture's toy data: hours studied → pass (1) or fail (0)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lrexp.data.batches import tensor_loader
from lrexp.data.extras import Fitted, RunExtras
from lrexp.errors import LrexpError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LECTURE_HOURS = 4.0  # the lecture asks for P(pass) after this many hours of study


class ToyDataModule(RunExtras, L.LightningDataModule):
    """Hours → pass/fail, served as one full batch (the lecture trains on all points at once)
    unless `batch_size` asks for minibatches (taken in order, so a sweep over it stays exact).

    There is no held-out data in the lecture, so validation and test reuse the training points:
    their metrics measure the fit, not generalisation. Every DDP rank sees all points, so a
    distributed run reproduces the single-process one.
    """

    in_features = 1
    num_classes = 2
    label_names = ("fail", "pass")  # label 0, label 1

    def __init__(
        self,
        hours: Sequence[float] = (1.0, 2.0, 3.0),
        passed: Sequence[int] = (0, 0, 1),
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if not hours:
            raise LrexpError("data.hours is empty: give at least one number of hours")
        if len(hours) != len(passed):
            raise LrexpError(
                f"data.hours has {len(hours)} values but data.passed has {len(passed)}: "
                "give one pass/fail label per number of hours"
            )
        if any(label not in (0, 1) for label in passed):
            raise LrexpError(
                f"data.passed={list(passed)}: every label must be 0 (fail) or 1 (pass)"
            )
        if len(set(passed)) < 2:
            raise LrexpError(
                f"data.passed={list(passed)} holds one label only: logistic regression needs "
                "both, e.g. data.passed=[0,0,1]"
            )
        _check_hours("data.hours", hours)
        self.save_hyperparameters(logger=False)
        self.x = torch.tensor(hours, dtype=torch.float32).unsqueeze(1)
        self.y = torch.tensor(passed, dtype=torch.long)
        # Validation and test reuse the training points (see the class docstring).
        self.splits = dict.fromkeys(("train", "val", "test"), (self.x, self.y))

    @property
    def class_counts(self) -> list[int]:
        return torch.bincount(self.y, minlength=2).tolist()

    def preprocess(self, hours: Tensor) -> Tensor:
        """Hours are the feature as they are."""
        return hours

    def _loader(self) -> DataLoader:
        return tensor_loader(self.x, self.y, batch_size=self.hparams.batch_size or len(self.y))

    def train_dataloader(self) -> DataLoader:
        return self._loader()

    def val_dataloader(self) -> DataLoader:
        return self._loader()

    def test_dataloader(self) -> DataLoader:
        return self._loader()

    def export_preprocessing(self) -> nn.Module:
        """Hours are the feature as they are."""
        return nn.Identity()

    def input_card(self) -> dict[str, Any]:
        """The raw input an exported model takes: hours, one column."""
        return {
            "kind": "table",
            "shape": ["batch", 1],
            "columns": ["hours"],
            "preprocessing": [],
        }

    def encode_inputs(self, inputs: Sequence[float]) -> tuple[list[str], Tensor]:
        """Rows for `predict`: hours as given, and the feature matrix the model takes."""
        try:
            hours = [float(h) for h in inputs]
        except (TypeError, ValueError):
            raise LrexpError(
                f"inputs={inputs!r}: the toy model takes hours, e.g. inputs=[4.0,5.5]"
            ) from None
        _check_hours("inputs", hours)
        return [str(h) for h in hours], torch.tensor(hours).unsqueeze(1)

    def run_metrics(self, fitted: Fitted) -> dict[str, float]:
        """The lecture's answer: the weight and bias, P(pass | 4 hours) and the 50 % boundary
        in hours."""
        w, b = fitted.weight.item(), fitted.bias.item()
        return {
            "w": w,
            "b": b,
            "p_pass_at_4h": 1 / (1 + math.exp(-(LECTURE_HOURS * w + b))),
            "boundary_h": -b / w if w != 0 else math.nan,
        }

    def run_figures(self, fitted: Fitted) -> dict[str, Figure]:
        """The lecture's picture alone: the decision curve over the data points."""
        from lrexp.plots import decision_curve

        w, b = fitted.weight.item(), fitted.bias.item()
        return {"decision_curve": decision_curve(w, b, self.hparams.hours, self.hparams.passed)}


def _check_hours(key: str, hours: Sequence[float]) -> None:
    if any(not math.isfinite(h) for h in hours):
        raise LrexpError(
            f"{key}={list(hours)}: every number of hours must be finite (no inf or nan), "
            f"e.g. {key}=[1.0,2.0,3.0]"
        )
