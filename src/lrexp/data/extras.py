"""What a kind of data adds to a run: its own metrics, figures and files (the toy's answer to the
lecture's question, a table's coefficients by name, an image model's weights as pictures).

The pipeline (lrexp.experiment) asks every DataModule the same three questions and writes the
answers; the kind of data is known only here, in data/. data/ imports no model code, so the
fitted model reaches a DataModule as `Fitted`: its weights and its test-split predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Fitted:
    """A fitted model as the data sees it (detached, on the CPU): `weight` is (1, features) for
    two labels and (K, features) for K; on the test split, `test_probs` is P(label 1) per row
    (two labels) or the (rows, K) probabilities, and `test_predicted` the predicted labels. The
    objective it was fitted on, for inference: `class_weights` (one per label, or None), `l2`
    the L2 penalty's strength on the summed loss ((1 - l1_ratio) / C, 0 without), `l1_ratio`
    the L1 part's share (0 without), and `ci_level` the coefficient intervals' level."""

    weight: Tensor
    bias: Tensor
    test_probs: Tensor
    test_predicted: Tensor
    class_weights: Tensor | None = None
    l2: float = 0.0
    l1_ratio: float = 0.0
    ci_level: float = 0.95

    def same_fit(self, other: Fitted) -> bool:
        """The same parameters of the same objective (the test predictions follow from them)."""
        return (
            torch.equal(self.weight, other.weight)
            and torch.equal(self.bias, other.bias)
            and (self.l2, self.l1_ratio, self.ci_level)
            == (other.l2, other.l1_ratio, other.ci_level)
        )


class RunExtras:
    """The contract, with what every kind of data gets: no extra metrics or files, and the test
    split's confusion matrix and reliability diagram (and ROC curve for two labels). A
    DataModule with `splits`, `label_names` and `in_features` mixes it in and overrides what its
    kind adds."""

    # Whether the training split is streamed (never held whole): lrexp.data.table_stream.
    streamed = False

    @property
    def stored_width(self) -> int:
        """Numbers per training row as the model holds its features (the model.optimizer=auto
        budget): all of them, unless a wide table's sparse block holds fewer."""
        return self.in_features

    @property
    def sparse_start(self) -> int | None:
        """The first feature of a sparse block whose weights start at 0; None: none."""
        return None

    def sample_weights(self, split: str) -> Tensor | None:
        """The split's per-row sample weights (float32, in `splits` order), which the fit, the
        metrics and the inference use; None: every row counts once. Tables have them
        (data.weight)."""
        return None

    def run_metrics(self, fitted: Fitted) -> dict[str, float]:
        """Metrics of this kind of data, merged into metrics.json."""
        return {}

    def run_figures(self, fitted: Fitted) -> dict[str, Figure]:
        """figures/<name>.png for this run."""
        from lrexp import plots

        _, labels = self.splits["test"]
        names = list(self.label_names)
        figures = {
            "confusion_matrix": plots.confusion_matrix(fitted.test_probs, labels, names),
            "reliability": plots.reliability_diagram(fitted.test_probs, labels),
        }
        if fitted.test_probs.dim() == 1:
            figures["roc"] = plots.roc_curve(fitted.test_probs, labels)
        return figures

    def run_files(self, fitted: Fitted) -> dict[str, bytes]:
        """Further files of the run dir, by name."""
        return {}

    def weight_names(self) -> list[str] | None:
        """The name of each input feature (each weight's column), where the data names them
        (tables); None otherwise."""
        return None
