"""What a kind of data adds to a run: its own metrics, figures and files (the toy's answer to the
lecture's question, a table's coefficients by name, an image model's weights as pictures).

The pipeline (lrexp.experiment) asks every DataModule the same three questions and writes the
answers; the kind of data is known only here, in data/. data/ imports no model code, so the
fitted model reaches a DataModule as `Fitted`: its weights and its test-split predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Fitted:
    """A fitted model as the data sees it (detached, on the CPU): `weight` is (1, features) for
    two labels and (K, features) for K; on the test split, `test_probs` is P(label 1) per row
    (two labels) or the (rows, K) probabilities, and `test_predicted` the predicted labels."""

    weight: Tensor
    bias: Tensor
    test_probs: Tensor
    test_predicted: Tensor


class RunExtras:
    """The contract, with what every kind of data gets: no extra metrics or files, and the test
    split's confusion matrix (and ROC curve for two labels). A DataModule with `splits` and
    `label_names` mixes it in and overrides what its kind adds."""

    def run_metrics(self, fitted: Fitted) -> dict[str, float]:
        """Metrics of this kind of data, merged into metrics.json."""
        return {}

    def run_figures(self, fitted: Fitted) -> dict[str, Figure]:
        """figures/<name>.png for this run."""
        from lrexp import plots

        _, labels = self.splits["test"]
        names = list(self.label_names)
        figures = {"confusion_matrix": plots.confusion_matrix(fitted.test_probs, labels, names)}
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
