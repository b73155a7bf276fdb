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

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

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


@dataclass
class Labels:
    """The labels of one or more minibatches in turn, as the loss and its gradient read them,
    prepared once for all of them (a loader item's group): minibatch t holds rows
    bounds[t]:bounds[t + 1]."""

    y: Tensor  # (rows,) class indices
    target: Tensor  # (rows, 1): two labels, y in the parameters' dtype; K classes, y
    row_weights: Tensor | None  # (rows, 1) c_y v in the parameters' dtype; None: every row's is 1
    bounds: list[int]
    counts: list[float]  # each minibatch's rows, counted by their sample weights
    minus_ones: Tensor | None  # K classes: (rows, 1) of -1, what onehot(y) takes off p

    def __len__(self) -> int:
        return len(self.counts)

    def rows(self, minibatch: int) -> slice:
        return slice(self.bounds[minibatch], self.bounds[minibatch + 1])

    def part(self, first: int, stop: int) -> Labels:
        """Minibatches first..stop-1 alone, their rows counted from 0."""
        rows = slice(self.bounds[first], self.bounds[stop])

        def cut(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[rows]

        bounds = [b - rows.start for b in self.bounds[first : stop + 1]]
        return Labels(
            self.y[rows],
            self.target[rows],
            cut(self.row_weights),
            bounds,
            self.counts[first:stop],
            cut(self.minus_ones),
        )

    @property
    def sizes(self) -> list[int]:
        return [b - a for a, b in itertools.pairwise(self.bounds)]

    @cached_property
    def minibatch_of_row(self) -> Tensor:
        sizes = torch.tensor(self.sizes)
        return torch.repeat_interleave(torch.arange(len(self)), sizes).to(self.y.device)


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

    def labels(
        self,
        y: Tensor,
        sample_weight: Tensor | None = None,
        sizes: Sequence[int] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Labels:
        """(y, sample_weight) as the loss and its gradient read them, for minibatches of `sizes`
        rows in turn (None: one of all the rows); `dtype` the parameters'."""
        sizes = [len(y)] if sizes is None else list(sizes)
        bounds = [0, *itertools.accumulate(sizes)]
        if sample_weight is None:
            counts = [float(n) for n in sizes]
        else:  # adding a zero weight changes no running total: a minibatch of zeros counts 0
            running = torch.cat(
                [sample_weight.new_zeros(1, dtype=torch.float64), sample_weight.double().cumsum(0)]
            )
            ends = running[bounds].tolist()
            counts = [b - a for a, b in itertools.pairwise(ends)]
        row_weights = self.row_weights(y, sample_weight)
        if row_weights is not None:
            row_weights = row_weights.to(dtype).unsqueeze(1)
        if self.binary:
            target, minus_ones = y.to(dtype).unsqueeze(1), None
        else:
            target = y.unsqueeze(1)
            minus_ones = torch.full(target.shape, -1.0, dtype=dtype, device=y.device)
        return Labels(y, target, row_weights, bounds, counts, minus_ones)

    def losses(self, logits: Tensor, labels: Labels) -> Tensor:
        """Each minibatch's loss from its rows' logits (rows, outputs), in one pass over all
        of `labels`' minibatches: a mean over its rows (their sample weights, not their class
        weights) or a sum."""
        if self.binary:
            per_row = F.binary_cross_entropy_with_logits(logits, labels.target, reduction="none")
        else:
            per_row = F.cross_entropy(logits, labels.y, reduction="none").unsqueeze(1)
        if labels.row_weights is not None:
            per_row = per_row * labels.row_weights
        per_row = per_row.squeeze(1)
        if len(labels) == 1:
            totals = per_row.sum().reshape(1)
        else:
            totals = per_row.new_zeros(len(labels)).index_add_(0, labels.minibatch_of_row, per_row)
        if self.reduction == "sum":
            return totals
        return totals.div_(totals.new_tensor([count or 1.0 for count in labels.counts]))

    def loss(self, logits: Tensor, y: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """The weighted loss (0-d) of logits as `logits()` gives them."""
        labels = self.labels(y, sample_weight, dtype=logits.dtype)
        return self.losses(logits.unsqueeze(-1) if self.binary else logits, labels)[0]

    def penalty(self, weight: Tensor, rows: float, l1: bool = True) -> Tensor:
        """s · (l2/2 ‖w‖² + l1 ‖w‖₁) for a step over `rows` rows, in float64."""
        value = weight.new_zeros((), dtype=torch.float64)
        if self.l2:
            value = value + self.l2 / 2 * weight.double().pow(2).sum()
        if l1 and self.l1:
            value = value + self.l1 * weight.double().abs().sum()
        return self.share(rows) * value

    def probs_(self, logits: Tensor, out: Tensor | None = None) -> Tensor:
        """Probabilities of (rows, outputs) logits, into `out` (None: sigmoid in place, a new
        softmax)."""
        if self.binary:
            return logits.sigmoid_() if out is None else torch.sigmoid(logits, out=out)
        return logits.softmax(-1) if out is None else torch.softmax(logits, -1, out=out)

    def residual_(self, probs: Tensor, labels: Labels, rows: slice) -> Tensor:
        """c_y v (p - onehot(y)) for `labels`' rows `rows`, in place of their probabilities."""
        if self.binary:
            r = probs.sub_(labels.target[rows])
        else:
            r = probs.scatter_add_(1, labels.target[rows], labels.minus_ones[rows])
        if labels.row_weights is not None:
            r.mul_(labels.row_weights[rows])
        return r

    def scale(self, rows: float) -> float:
        """The factor 1/D of a step over `rows` rows (a mean's; a minibatch of weight 0 takes 1)."""
        return 1.0 / (rows or 1.0) if self.reduction == "mean" else 1.0

    def step_gradient_(
        self,
        x: Features,
        labels: Labels,
        minibatch: int,
        weight: Tensor,
        bias: Tensor,
        grad_weight: Tensor,
        grad_bias: Tensor,
        logits: Tensor,
        scratch: Tensor,
        probs: Tensor | None = None,
    ) -> None:
        """Minibatch `minibatch` of `labels` (features x): its logits into `logits`, its
        probabilities into `probs` where given, ∇J into grad_weight and grad_bias (s·l2·w + rᵀX/D
        in one fused product); `scratch`, of the logits' shape, takes the residual. The loss is
        left to `losses`, once for many minibatches, from the logits kept."""
        rows = labels.rows(minibatch)
        if isinstance(x, WideFeatures):
            logits.copy_(x.linear(weight, bias))
        else:
            torch.addmm(bias, x, weight.t(), out=logits)
        if probs is None:
            r = self.probs_(logits, out=scratch)
        else:
            r = scratch.copy_(self.probs_(logits, out=probs))
        r = self.residual_(r, labels, rows)
        count = labels.counts[minibatch]
        scale, decay = self.scale(count), self.share(count) * self.l2
        if isinstance(x, WideFeatures):
            x.transposed_product(r.t(), weight, decay, scale, out=grad_weight)
        else:
            torch.addmm(weight, r.t(), x, beta=decay, alpha=scale, out=grad_weight)
        torch.sum(r, 0, out=grad_bias).mul_(scale)  # torch.mean(out=) costs 5× more

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
        """step_gradient_ on one minibatch (x, y): its loss (0-d) and, `with_probs`, the
        model's probabilities of its rows (as `probs()` gives them)."""
        labels = self.labels(y, sample_weight, dtype=weight.dtype)
        logits, scratch = (weight.new_empty(len(y), len(weight)) for _ in range(2))
        probs = torch.empty_like(logits) if with_probs else None
        self.step_gradient_(
            x, labels, 0, weight, bias, grad_weight, grad_bias, logits, scratch, probs
        )
        kept = None if probs is None else probs.squeeze(-1) if self.binary else probs
        return self.losses(logits, labels)[0], kept

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
        labels = self.labels(y, sample_weight, dtype=weight.dtype)
        (rows,) = labels.counts
        value = self.losses(logits, labels)[0].double() + self.penalty(weight, rows, l1=False)
        r = self.residual_(self.probs_(logits), labels, slice(None))
        scale = self.scale(rows)
        grad_weight = transposed_product(r.t().to(products), x).to(weight.dtype).mul_(scale)
        if self.l2:
            grad_weight.add_(weight, alpha=self.share(rows) * self.l2)
        return value, grad_weight, r.sum(0).mul_(scale)

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
