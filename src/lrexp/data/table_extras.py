"""What a table adds to a run (the DataModule contract of lrexp.data.extras): its fit's
statistics in metrics.json, coefficients.csv with the Wald inference, the coefficients figure
and, for text columns, the most positive and negative tokens.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from lrexp.data.extras import Fitted, RunExtras

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

TOP_TOKENS = 10  # the most positive and most negative tokens a run logs and draws, per class


class TableExtras(RunExtras):
    """Mixed into TableDataModule, whose `label_names`, `in_features`, `token_values` (a hashed
    text column's tokens by column), `_hashed_width()` and `_inference` (the cache below) it
    reads."""

    def run_metrics(self, fitted: Fitted) -> dict[str, float]:
        """The training fit's log-likelihood, AIC, BIC and pseudo-R² (lrexp.coefficients)."""
        return self._coefficients(fitted)[1]

    def run_figures(self, fitted: Fitted) -> dict[str, Figure]:
        """The test split's figures and the largest coefficients with their intervals."""
        from lrexp.plots import coefficients

        rows = self._coefficients(fitted)[0]
        figures = {"coefficients": coefficients(rows)}
        if self.token_values:
            figures["tokens"] = coefficients(self._token_rows(fitted), top=2 * TOP_TOKENS)
        return figures | super().run_figures(fitted)

    def _token_rows(self, fitted: Fitted) -> list[dict]:
        """Per class, the TOP_TOKENS most positive and most negative text tokens' weights (a
        hashed column's tokens, the most frequent first), also logged."""
        first = self.in_features - self._hashed_width()
        columns = sorted(self.token_values)
        names = [" | ".join(self.token_values[k]) for k in columns]
        labels = self.label_names[-1:] if len(fitted.weight) == 1 else self.label_names
        rows = []
        for label, weights in zip(labels, fitted.weight, strict=True):
            tokens = weights[[first + k for k in columns]]
            order = tokens.argsort(descending=True).tolist()
            positive = [j for j in order[:TOP_TOKENS] if tokens[j] > 0]
            negative = [j for j in order[::-1][:TOP_TOKENS] if tokens[j] < 0]
            log.info(
                f"data.text, class {label}: most positive tokens "
                f"{[names[j] for j in positive]}, most negative {[names[j] for j in negative]}"
            )
            for j in positive + negative[::-1]:
                w = float(tokens[j])
                rows.append(
                    {"class": label, "feature": names[j], "weight": w, "odds_ratio": math.exp(w)}
                )
        return rows

    def run_files(self, fitted: Fitted) -> dict[str, bytes]:
        """coefficients.csv: each feature's weight, odds ratio and Wald inference."""
        from lrexp.coefficients import COEFFICIENTS_FILE, coefficients_csv

        return {COEFFICIENTS_FILE: coefficients_csv(self._coefficients(fitted)[0])}

    def _coefficients(self, fitted: Fitted) -> tuple[list[dict], dict[str, float]]:
        """coefficients.csv's rows and the fit statistics, computed once per fitted model (the
        three questions above, and the pipeline's scoring and finishing, share them)."""
        from lrexp.coefficients import table_rows

        if self._inference is None or not self._inference[0].same_fit(fitted):
            self._inference = (fitted, *table_rows(fitted, self))
        return self._inference[1], self._inference[2]
