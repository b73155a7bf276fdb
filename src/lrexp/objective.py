"""The objective every solver minimises, and its gradient in closed form (torch only).

    J(w, b) = Σ_i v_i c_{y_i} ℓ(x_i·w + b, y_i) / D  +  s · (l2/2 · ‖w‖² + l1 · ‖w‖₁)

ℓ is the binary cross-entropy of sigmoid(z) (two labels, one logit) or the cross-entropy of
softmax(z) (K classes, K logits); c the class weights and v the rows' sample weights (1
without); D the rows (reduction=mean) or 1 (reduction=sum); s the penalty's share of the rows,
1 for a mean and the rows for a sum. Sample weights are frequency weights: a row of weight 3
counts as three rows, so "the rows" is their total weight Σ v_i. With l2 = (1 - l1_ratio)/(C·n)
and l1 = l1_ratio/(C·n) over the n training rows this is scikit-learn's
LogisticRegression(C, l1_ratio, class_weight).fit(sample_weight=v) divided by n; the intercept
is not penalised.

The gradient with respect to the logits is the residual r_i = v_i c_{y_i} (p_i - onehot(y_i)) / D,
so ∇_w J = rᵀ X + s·l2·w and ∇_b J = Σ_i r_i: two matrix products, no autograd (on a wide
table's features, lrexp.data.wide_features, the sparse block's products). The L1 part
is not differentiable; SGD and Adam apply it as a proximal step, L-BFGS does not take it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lrexp.data.wide_features import Features, WideFeatures, linear, transposed_product

REDUCTIONS = ("mean", "sum")


def class_weights(
    spec: str | Sequence[float] | None, counts: Sequence[int] | None, num_classes: int
) -> Tensor | None:
    """One weight per label: null → none; balanced → n / (K · rows of the label), as
    scikit-learn's class_weight='balanced'; or the list as given. ValueError when balanced
    meets a label with no rows (the caller names the key)."""
    if spec is None:
        return None
    if spec == "balanced":
        if counts is None or 0 in counts:
            raise ValueError(f"rows per label: {list(counts or [])}")
        total = sum(counts)
        return torch.tensor([total / (num_classes * c) for c in counts])
    return torch.tensor([float(w) for w in spec])


class Objective(nn.Module):
    """J's constants. `l2` and `l1` are per unit weight for a mean over the rows. A Module so
    that the class weights move with the model to its device (a buffer, not in checkpoints:
    they follow from the hyper-parameters)."""

    def __init__(
        self,
        num_classes: int,
        l2: float = 0.0,
        l1: float = 0.0,
        reduction: str = "mean",
        class_weights: Tensor | None = None,
    ) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction={reduction!r}: use one of {REDUCTIONS}")
        self.num_classes, self.l2, self.l1, self.reduction = num_classes, l2, l1, reduction
        self.register_buffer("class_weights", class_weights, persistent=False)

    @classmethod
    def of(
        cls,
        num_classes: int,
        train_rows: int | None,
        C: float | None,
        l1_ratio: float = 0.0,
        reduction: str = "mean",
        class_weights: Tensor | None = None,
    ) -> Objective:
        """scikit-learn's parametrisation: C (null: no penalty) and l1_ratio over n rows."""
        if C is None or not train_rows:
            return cls(num_classes, 0.0, 0.0, reduction, class_weights)
        strength = 1.0 / (C * train_rows)
        return cls(
            num_classes, (1 - l1_ratio) * strength, l1_ratio * strength, reduction, class_weights
        )

    @property
    def binary(self) -> bool:
        return self.num_classes == 2

    def share(self, rows: float) -> float:
        """The penalty's weight in a step over `rows` rows: 1 for a mean, `rows` for a sum."""
        return rows if self.reduction == "sum" else 1

    def logits(self, x: Features, weight: Tensor, bias: Tensor) -> Tensor:
        """(rows,) for two labels, (rows, K) for K classes."""
        z = linear(x, weight, bias)
        return z.squeeze(-1) if self.binary else z

    def probs(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits) if self.binary else logits.softmax(-1)

    def row_weights(self, y: Tensor, sample_weight: Tensor | None) -> Tensor | None:
        """Each row's weight in the loss, c_{y_i} v_i; None where every row's is 1."""
        if self.class_weights is None:
            return sample_weight
        weights = self.class_weights[y]
        return weights if sample_weight is None else weights * sample_weight

    @staticmethod
    def rows(y: Tensor, sample_weight: Tensor | None) -> float:
        """How many rows (y, sample_weight) count as: their total sample weight. A minibatch
        whose weights are all 0 counts none: its loss and residuals are 0, and the means divide
        by 1 instead (its step is the penalty's alone)."""
        return len(y) if sample_weight is None else sample_weight.double().sum().item()

    def loss(self, logits: Tensor, y: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """The weighted loss, a mean over the rows (not over their class weights) or a sum."""
        row_weights = self.row_weights(y, sample_weight)
        if self.binary:
            losses = F.binary_cross_entropy_with_logits(
                logits, y.to(logits.dtype), reduction="none"
            )
        else:
            losses = F.cross_entropy(logits, y, reduction="none")
        if row_weights is not None:
            losses = losses * row_weights.to(losses.dtype)
        if self.reduction == "sum":
            return losses.sum()
        if sample_weight is None:
            return losses.mean()
        return losses.sum() / (self.rows(y, sample_weight) or 1.0)

    def penalty(self, weight: Tensor, rows: float, l1: bool = True) -> Tensor:
        """s · (l2/2 ‖w‖² + l1 ‖w‖₁) for a step over `rows` rows, in float64."""
        value = weight.new_zeros((), dtype=torch.float64)
        if self.l2:
            value = value + self.l2 / 2 * weight.double().pow(2).sum()
        if l1 and self.l1:
            value = value + self.l1 * weight.double().abs().sum()
        return self.share(rows) * value

    def loss_and_probs_(
        self, logits: Tensor, y: Tensor, sample_weight: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """The loss (0-d) and the probabilities from one pass over the logits; for two labels
        the probabilities take the logits' buffer."""
        row_weights = self.row_weights(y, sample_weight)
        if self.binary and row_weights is None:  # the common case in one fused kernel
            loss = F.binary_cross_entropy_with_logits(
                logits, y.to(logits.dtype), reduction=self.reduction
            )
            return loss, logits.sigmoid_()
        if self.binary:
            losses = F.binary_cross_entropy_with_logits(
                logits, y.to(logits.dtype), reduction="none"
            )
            probs = logits.sigmoid_()
        else:
            log_probs = logits.log_softmax(-1)
            losses = -log_probs.gather(1, y.unsqueeze(1)).squeeze(1)
            probs = log_probs.exp_()
        if row_weights is not None:
            losses = losses * row_weights.to(losses.dtype)
        if self.reduction == "sum":
            loss = losses.sum()
        elif sample_weight is None:
            loss = losses.mean()
        else:
            loss = losses.sum() / (self.rows(y, sample_weight) or 1.0)
        return loss, probs

    def residual_(
        self, probs: Tensor, y: Tensor, sample_weight: Tensor | None = None
    ) -> tuple[Tensor, float]:
        """∂J/∂z = v c_y (p - onehot(y)) / D as (v c_y (p - onehot(y)), 1/D): the first in place
        of the probabilities, the factor left for the matrix product to apply."""
        if self.binary:
            r = probs.sub_(y.to(probs.dtype))
        else:
            r = probs
            r[torch.arange(len(y), device=r.device), y] -= 1.0
        row_weights = self.row_weights(y, sample_weight)
        if row_weights is not None:
            row_weights = row_weights.to(r.dtype)
            r.mul_(row_weights if self.binary else row_weights.unsqueeze(-1))
        return r, 1.0 / (self.rows(y, sample_weight) or 1.0) if self.reduction == "mean" else 1.0

    def gradient_(
        self,
        x: Features,
        y: Tensor,
        weight: Tensor,
        bias: Tensor,
        grad_weight: Tensor,
        grad_bias: Tensor,
        with_probs: bool = False,
        sample_weight: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """A minibatch's loss (0-d) and, `with_probs`, the model's probabilities of its rows;
        ∇J written into grad_weight and grad_bias: s·l2·w + rᵀX/D in one fused product."""
        logits = self.logits(x, weight, bias)
        loss, probs = self.loss_and_probs_(logits, y, sample_weight)
        kept = probs.clone() if with_probs else None
        r, scale = self.residual_(probs, y, sample_weight)
        residual = r.unsqueeze(0) if self.binary else r.t()
        decay = self.share(self.rows(y, sample_weight)) * self.l2
        if isinstance(x, WideFeatures):
            x.transposed_product(residual, weight, decay, scale, out=grad_weight)
        else:
            torch.addmm(weight, residual, x, beta=decay, alpha=scale, out=grad_weight)
        if sample_weight is None and scale == 1.0 / len(y):
            torch.mean(residual, dim=1, out=grad_bias)
        else:
            torch.sum(residual, dim=1, out=grad_bias).mul_(scale)
        return loss, kept

    def value_and_gradient(
        self,
        x: Features,
        y: Tensor,
        weight: Tensor,
        bias: Tensor,
        sample_weight: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """J's smooth part (no L1 term) on all of (x, y) and its gradient (weight, bias): what
        full-batch L-BFGS evaluates, and the convergence report. The two matrix products run
        in x's dtype, everything else in the parameters' (float32 products, float64 sums, where
        x is float32 and the parameters float64); the value is summed in float64."""
        products = x.dtype
        if products == weight.dtype:
            logits = linear(x, weight, bias)
        elif isinstance(x, WideFeatures):
            zero = bias.new_zeros(bias.shape, dtype=products)
            logits = x.linear(weight.to(products), zero).to(weight.dtype).add_(bias)
        else:
            logits = torch.mm(x, weight.to(products).t()).to(weight.dtype).add_(bias)
        logits = logits.squeeze(-1) if self.binary else logits
        rows = self.rows(y, sample_weight)
        loss, probs = self.loss_and_probs_(logits, y, sample_weight)
        value = loss.double() + self.penalty(weight, rows, l1=False)
        r, scale = self.residual_(probs, y, sample_weight)
        residual = r.unsqueeze(0) if self.binary else r.t()
        grad_weight = transposed_product(residual.to(products), x).to(weight.dtype).mul_(scale)
        if self.l2:
            grad_weight.add_(weight, alpha=self.share(rows) * self.l2)
        return value, grad_weight, residual.sum(1).mul_(scale)

    def subgradient_norm(
        self, weight: Tensor, grad_weight: Tensor, grad_bias: Tensor, rows: float
    ) -> Tensor:
        """The largest entry of J's minimum-norm subgradient over `rows` rows, given its smooth
        part's gradient: 0 at the optimum."""
        if self.l1:
            strength = self.l1 * self.share(rows)
            grad_weight = torch.where(
                weight != 0,
                grad_weight + strength * weight.sign(),
                (grad_weight.abs() - strength).clamp_min(0),
            )
        return torch.cat([grad_weight.flatten(), grad_bias.flatten()]).abs().max()
