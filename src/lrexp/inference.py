"""Wald inference for a fitted logistic regression: standard errors from the observed information
(the Hessian of the training objective at the fit), z, p-values and confidence intervals, and the
fit's log-likelihood, AIC, BIC and McFadden's pseudo-R².

Everything is computed in float64 from plain tensors — the training split's model features (a
wide table's made dense a slice of rows at a time, and only below MAX_PARAMETERS), its
labels, the fitted weight and bias, the L2 penalty's curvature and each row's weight (class
weight times sample weight) — so it does not depend on how the pipeline is arranged.

The parameters, per reported class, are (intercept, weight_1, ..., weight_d). The information of
the summed class-weighted log-likelihood is

    H = Σ_i r_i (diag(p_i) - p_i p_iᵀ) ⊗ z_i z_iᵀ + l2 · I_weights,    z_i = (1, x_i),

with r_i the row's weight, its class weight times its sample weight (a row of weight 3 counts
as three rows), and p_i the fitted probabilities of the reported classes. Two labels: one
class, p(1 - p). K classes:

- unpenalised (l2 = 0): softmax with all K classes is not identifiable (adding one vector to every
  class changes no probability), so, as statsmodels' MNLogit, classes 1..K-1 are reported against
  class 0 (the reference): their parameters are θ_k - θ_0, the log-odds of class k against class
  0, and class 0 gets no rows;
- with an L2 penalty the weights are identified (the optimum's weights sum to zero over the
  classes) but the intercepts still are not (the penalty leaves them free): every class is
  reported, its intercept centred (the K intercepts sum to zero), and the covariance is the
  pseudo-inverse of H, which is singular along that one intercept shift alone.

With a penalty the standard errors are those of the penalised fit's curvature: the Laplace
approximation of the posterior under a Gaussian prior on the weights (variance 1/l2), not a
sampling distribution of the shrunken estimate.

Singular information leaves the inference out and says, in one line, which columns span the
direction without information and why:

- collinear columns: the smallest eigenvalue of H, scaled to the columns' own sums of squares
  (so that no unit matters), is below SINGULAR_RCOND along a direction that moves no row's logit;
- perfect or quasi-perfect separation: the MLE does not exist, the likelihood rising towards 1
  as some weights grow. Newton's method from the fit tells it: at an optimum its steps vanish
  within a few, under separation each one moves the separated rows' logits by about one unit,
  for ever (or the information vanishes along the way).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist

import torch
import torch.nn.functional as F
from torch import Tensor

from lrexp.data.wide_features import Features, WideFeatures, as_dense, linear

INTERCEPT = "(intercept)"
# A scaled information eigenvalue below this is a direction with (numerically) no information:
# well-posed fits on the real tables of tests/test_inference.py stay above 1e-3, collinear
# columns reach 1e-16.
SINGULAR_RCOND = 1e-8
# The information matrix holds (parameters)² float64 numbers; beyond this, inference is left out.
MAX_PARAMETERS = 4096
# Loadings of a singular direction above this share of its largest one name the columns.
LOADING_SHARE = 0.1
# A singular direction that moves no row's logits by more than this share of the rows' reach is
# one of collinear columns (not of separation).
COLLINEAR_RTOL = 1e-6
# Newton's method from the fit (the separation test): its most steps, and the largest change
# of any row's logit that counts as converged.
NEWTON_STEPS = 30
NEWTON_LOGIT_TOL = 1e-3
# Rows per float64 slice of the design, and the most numbers a slice of a wide table's holds
# (its one-hot columns made dense: 2^24 float64 numbers are 128 MiB).
CHUNK_ROWS = 2**16
CHUNK_NUMBERS = 2**24


@dataclass(frozen=True)
class Fit:
    """The reported parameters and, unless singular, their Wald inference.

    coef, std_err: (classes, 1 + features), intercept first; `classes` are the label indices the
    rows belong to (`reference` the class they are contrasted with, for unpenalised K classes).
    """

    classes: list[int]
    reference: int | None
    coef: Tensor
    std_err: Tensor | None
    singular: str | None
    statistics: dict[str, float]

    def intervals(self, level: float) -> dict[str, Tensor]:
        """z, two-sided p-value and the level's interval of each parameter."""
        if self.std_err is None:
            raise ValueError("no standard errors: the information was singular")
        z = self.coef / self.std_err
        half = NormalDist().inv_cdf(0.5 + level / 2) * self.std_err
        return {
            "z": z,
            "p_value": torch.special.erfc(z.abs() / math.sqrt(2)),
            "ci_low": self.coef - half,
            "ci_high": self.coef + half,
        }


def fit_inference(
    x: Tensor,
    y: Tensor,
    weight: Tensor,
    bias: Tensor,
    l2: float,
    row_weights: Tensor | None,
    names: list[str],
) -> Fit:
    """Inference at the fit (weight: (1, d) for two labels or (K, d), bias: (1,) or (K,)).

    `l2` is the penalty's curvature on the summed log-likelihood's scale: for scikit-learn's
    objective, mean loss + (1 - l1_ratio) ‖w‖² / (2 C n), it is (1 - l1_ratio) / C. `names` are
    the d feature names (for the singular message).
    """
    r = torch.ones(len(y)) if row_weights is None else row_weights
    theta = torch.cat([bias.detach()[:, None], weight.detach()], 1).double().cpu()
    classes, reference = _reported_classes(len(theta), l2)
    if len(classes) * theta.shape[1] > MAX_PARAMETERS:  # the fit statistics alone
        x, y, r = x.detach().cpu().double(), y.long().cpu(), r.double().cpu()
        statistics = _statistics(linear(x, theta[:, 1:], theta[:, 0]), y, r, theta.shape[1])
        theta = _reported(theta, reference, l2)
        why = f"{theta.numel()} parameters (more than {MAX_PARAMETERS}): no inference"
        return Fit(classes, reference, theta, None, why, statistics)
    problem = _Problem(x.detach().cpu(), y.long().cpu(), r.double().cpu(), l2, len(theta))
    statistics = _statistics(problem.logits(theta), problem.y, problem.r, theta.shape[1])
    theta = problem.parameters(theta)
    covariance, direction = problem.covariance(theta)
    if covariance is None and problem.moves_no_row(direction):
        columns = _columns(problem.in_logits(direction), names)
        why = "collinear columns (one is a combination of the others"
        if any("=" in c for c in columns):
            why += "; a column's categories sum to the intercept: set data.onehot_drop=first"
        return Fit(classes, reference, theta, None, _singular(why, columns), statistics)
    # Saturated already at the fit, the fit itself points where it runs off.
    direction = theta
    if covariance is not None:
        theta, covariance, direction = problem.newton(theta, covariance)
    if direction is not None:
        columns = _columns(problem.in_logits(direction), names)
        why = "the fit runs off to probabilities of 0 and 1 (perfect or quasi-perfect separation"
        return Fit(classes, reference, theta, None, _singular(why, columns), statistics)
    # At the optimum Newton's steps reached from the fit (within model.tol of it).
    logits = problem.logits(theta) if len(classes) == 1 else problem.all_logits(theta)
    statistics = _statistics(logits, problem.y, problem.r, theta.shape[1])
    std_err = covariance.diagonal().clamp_min(0).sqrt().reshape(theta.shape)
    return Fit(classes, reference, theta, std_err, None, statistics)


class _Problem:
    """The penalised negative log-likelihood on the summed scale, in the reported parameters
    (classes x (1 + d)): its gradient, information and the information's inverse. The rows'
    (1, x) are made in float64 a slice of CHUNK_ROWS at a time, never for the whole split."""

    def __init__(self, x: Features, y: Tensor, r: Tensor, l2: float, outputs: int) -> None:
        self.x, self.y, self.r, self.l2 = x, y, r, l2
        self.classes, self.reference = _reported_classes(outputs, l2)
        m, width = len(self.classes), x.shape[1] + 1
        self.penalty = torch.zeros(m, width, dtype=torch.float64)
        self.penalty[:, 1:] = l2
        self.target = (y[:, None] == torch.tensor(self.classes)[None, :]).double()
        # The design's own information per parameter (each row's weight, no probabilities): the
        # scale that makes the singularity tests unit-free.
        sums = torch.zeros(width, dtype=torch.float64)
        self.reach = 0.0  # the largest row norm of (1, x)
        for rows, z in self.chunks():
            sums += (self.r[rows, None] * z * z).sum(0)
            self.reach = max(self.reach, z.norm(dim=1).max().item())
        sums = (sums[None, :] + self.penalty).flatten()
        self.scale = torch.where(sums > 0, sums, torch.ones_like(sums)).rsqrt()
        self.shift = None
        if m > 1 and self.reference is None:  # penalised softmax: the free intercept shift
            shift = torch.zeros(m, width, dtype=torch.float64)
            shift[:, 0] = 1.0
            self.shift = shift.flatten() / self.scale
            self.shift /= self.shift.norm()

    def chunks(self) -> Iterator[tuple[slice, Tensor]]:
        rows = CHUNK_ROWS
        if isinstance(self.x, WideFeatures):  # its slices made dense
            rows = max(1, min(CHUNK_ROWS, CHUNK_NUMBERS // (self.x.shape[1] + 1)))
        for start in range(0, len(self.x), rows):
            x = as_dense(self.x[start : start + rows]).double()
            yield slice(start, start + len(x)), torch.cat([torch.ones(len(x), 1).double(), x], 1)

    def logits(self, theta: Tensor) -> Tensor:
        """(rows, outputs) z θᵀ, float64."""
        return torch.cat([z @ theta.T for _, z in self.chunks()])

    def parameters(self, theta: Tensor) -> Tensor:
        """The model's (outputs, 1 + d) parameters as reported: contrasts with the reference
        class, or centred intercepts."""
        return _reported(theta, self.reference, self.l2)

    def all_logits(self, theta: Tensor) -> Tensor:
        """Every class's logits (the reference's, or two labels' label 0, at 0)."""
        logits = self.logits(theta)
        if len(self.classes) == 1 or self.reference is not None:
            logits = torch.cat([torch.zeros_like(logits[:, :1]), logits], 1)
        return logits

    def probs(self, theta: Tensor) -> Tensor:
        """The fitted probabilities of the reported classes."""
        if len(self.classes) == 1:
            return torch.sigmoid(self.logits(theta))
        probs = self.all_logits(theta).softmax(1)
        return probs[:, 1:] if self.reference is not None else probs

    def information(self, probs: Tensor) -> Tensor:
        """Σ_i r_i (diag(p_i) - p_i p_iᵀ) ⊗ z_i z_iᵀ + the penalty, class-major blocks."""
        m, width = probs.shape[1], self.x.shape[1] + 1
        blocks = torch.zeros(m, width, m, width, dtype=torch.float64)
        for rows, z in self.chunks():
            p, r = probs[rows], self.r[rows]
            for j in range(m):
                for k in range(j, m):
                    curvature = p[:, j] * (float(j == k) - p[:, k]) * r
                    blocks[j, :, k, :] += z.T @ (z * curvature[:, None])
        for j in range(m):
            for k in range(j + 1, m):
                blocks[k, :, j, :] = blocks[j, :, k, :].T
        return blocks.reshape(m * width, m * width) + torch.diag(self.penalty.flatten())

    def covariance(self, theta: Tensor) -> tuple[Tensor | None, Tensor]:
        """The inverse information (pseudo-inverse along the free intercept shift), or None and
        the direction without information."""
        information = self.information(self.probs(theta))
        scaled = information * self.scale[:, None] * self.scale[None, :]
        if self.shift is not None:
            scaled = scaled + torch.outer(self.shift, self.shift)
        values, vectors = torch.linalg.eigh(scaled)
        direction = (vectors[:, 0] * self.scale).reshape(theta.shape)
        if values[0] < SINGULAR_RCOND:
            return None, direction
        inverse = (vectors / values) @ vectors.T
        if self.shift is not None:
            inverse -= torch.outer(self.shift, self.shift)
        return inverse * self.scale[:, None] * self.scale[None, :], direction

    def in_logits(self, direction: Tensor) -> Tensor:
        """A direction in the parameters as the change of the logits it makes per column (its
        entries times their columns' root sum of squares), so that columns compare."""
        return direction / self.scale.reshape(direction.shape)

    def moves_no_row(self, direction: Tensor) -> bool:
        """Whether a direction changes no row's logits (collinear columns), as against one that
        changes those of rows fitted with probability 0 or 1 (separation)."""
        moved = self.logits(direction).abs().max()
        return bool(moved <= COLLINEAR_RTOL * self.reach * direction.norm(dim=1).max())

    def gradient(self, theta: Tensor) -> Tensor:
        residual = (self.probs(theta) - self.target) * self.r[:, None]
        gradient = sum(residual[rows].T @ z for rows, z in self.chunks())
        return gradient + self.penalty * theta

    def objective(self, theta: Tensor) -> float:
        rows = F.log_softmax(self.all_logits(theta), 1).gather(1, self.y[:, None])[:, 0]
        return (-(rows * self.r).sum() + (self.penalty * theta * theta).sum() / 2).item()

    def newton(self, theta: Tensor, covariance: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Newton's method from the fit (whose inverse information is `covariance`): at an
        optimum its steps vanish within a few, and the parameters and inverse information are
        the optimum's (the Wald inference is at the optimum, not at a fit within model.tol of
        it); under separation (no optimum: the likelihood rises towards 1 as some weights grow)
        each step moves the logits by about one unit for ever. Returns the last parameters and
        inverse information, and the direction it runs off in (None at an optimum).
        """
        start = theta
        for _ in range(NEWTON_STEPS):
            step = (covariance @ self.gradient(theta).flatten()).reshape(theta.shape)
            # Halved until the objective does not rise: pure Newton can overshoot from a fit
            # far from the optimum (a short SGD run).
            before = self.objective(theta)
            for _ in range(NEWTON_STEPS):
                if self.objective(theta - step) <= before:
                    break
                step = step / 2
            theta = theta - step
            moved = self.logits(step).abs().max()
            inverse, _ = self.covariance(theta)
            if inverse is None:
                return theta, covariance, theta - start
            covariance = inverse
            if moved < NEWTON_LOGIT_TOL:
                return theta, covariance, None
        return theta, covariance, theta - start


def _reported_classes(outputs: int, l2: float) -> tuple[list[int], int | None]:
    """The classes whose parameters are reported, and the reference class (module docstring)."""
    if outputs == 1:
        return [1], None
    if l2 == 0:
        return list(range(1, outputs)), 0
    return list(range(outputs)), None


def _reported(theta: Tensor, reference: int | None, l2: float) -> Tensor:
    """The model's (outputs, 1 + d) parameters as reported: contrasts with the reference
    class, or (penalised softmax) centred intercepts."""
    if reference is not None:
        return theta[1:] - theta[0]
    if len(theta) == 1 or l2 == 0:
        return theta
    theta = theta.clone()
    theta[:, 0] -= theta[:, 0].mean()
    return theta


def _columns(direction: Tensor, names: list[str]) -> list[str]:
    """The columns with the largest loadings of a (parameters-shaped) direction."""
    loadings = direction.abs().max(0).values
    order = loadings.argsort(descending=True).tolist()
    return [([INTERCEPT, *names])[j] for j in order if loadings[j] > LOADING_SHARE * loadings.max()]


def _singular(why: str, columns: list[str]) -> str:
    """One line naming the columns of the direction without information, and why."""
    return f"singular information, no standard errors: {why}): {', '.join(columns)}"


def _statistics(logits: Tensor, y: Tensor, r: Tensor, width: int) -> dict[str, float]:
    """Log-likelihood (class-weighted), AIC, BIC and McFadden's R² against the intercept-only
    model; (K - 1)(1 + d) parameters, K = 2 for two labels, as statsmodels counts them."""
    if logits.shape[1] == 1:
        logits = torch.cat([torch.zeros_like(logits), logits], 1)
    classes = logits.shape[1]
    log_likelihood = (F.log_softmax(logits, 1).gather(1, y[:, None])[:, 0] * r).sum().item()
    counts = torch.zeros(classes, dtype=torch.float64).index_add_(0, y, r)
    present = counts[counts > 0]
    null = (present * (present / present.sum()).log()).sum().item()
    parameters = (classes - 1) * width
    return {
        "train/log_likelihood": log_likelihood,
        "train/aic": -2 * log_likelihood + 2 * parameters,
        "train/bic": -2 * log_likelihood + math.log(r.sum().item()) * parameters,
        "train/pseudo_r2": 1 - log_likelihood / null if null else math.nan,
    }
