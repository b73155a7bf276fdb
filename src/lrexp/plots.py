"""The pictures a run leaves in figures/ and TensorBoard; each function returns a Figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def decision_curve(w: float, b: float, hours: Sequence[float], passed: Sequence[int]) -> Figure:
    """The lecture's result: P(pass | hours) over 0-10 h, the 0.5 line and the data points."""
    x = np.linspace(0, 10, 200)
    p = 1 / (1 + np.exp(-(w * x + b)))
    figure, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, p, label=f"sigmoid({w:.3f}·h {b:+.3f})")
    ax.axhline(0.5, color="red", linestyle="--", linewidth=1, label="P = 0.5")
    ax.scatter(hours, passed, color="black", zorder=3, label="data")
    ax.set_xlabel("Hours")
    ax.set_ylabel("Probability of pass")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    return figure
