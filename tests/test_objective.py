"""The closed-form gradient is autograd's, for every option of the objective; an epoch of the
solvers' steps is the autograd loop's epoch."""

from __future__ import annotations

import itertools

import lightning as L
import pytest
import torch

from lrexp.data.batches import epoch_permutation, tensor_loader
from lrexp.data.wide_features import WideFeatures
from lrexp.model import LogisticRegression
from lrexp.objective import Objective, class_weights

N, D, BATCH, SEED = 120, 6, 16, 3


def data(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(k)
    x = torch.randn(N, D, generator=generator, dtype=torch.float64)
    y = torch.randint(k, (N,), generator=generator)
    return x, y


def autograd_value(objective: Objective, x, y, weight, bias) -> torch.Tensor:
    """J's smooth part through autograd: the loss of the logits plus the L2 term."""
    logits = x @ weight.t() + bias
    logits = logits.squeeze(-1) if objective.binary else logits
    return objective.loss(logits, y) + objective.penalty(weight, len(y), l1=False)


OPTIONS = [
    (k, C, l1_ratio, weights, reduction)
    for k, C, l1_ratio, weights, reduction in itertools.product(
        [2, 4],  # classes
        [None, 1.0, 0.05],  # C
        [0.0, 0.5],  # l1_ratio
        [None, "balanced", "list"],  # class_weight
        ["mean", "sum"],  # reduction
    )
    if C is not None or not l1_ratio  # l1_ratio needs C (the config refuses it otherwise)
]


@pytest.mark.parametrize(
    ("k", "reduction", "weights"), itertools.product([2, 4], ["mean", "sum"], [None, "list"])
)
def test_a_row_of_sample_weight_3_is_three_rows(k, reduction, weights) -> None:
    """Frequency weights: the objective, its gradient (both paths) and the minibatch loss on
    weighted rows equal those on the rows repeated, the penalty's n counted by weight too."""
    x, y = data(k)
    counts = torch.randint(0, 4, (N,), generator=torch.Generator().manual_seed(7))
    sample_weight = counts.double()
    spec = [1.0 + i for i in range(k)] if weights == "list" else None
    total = int(counts.sum())
    weighted = Objective.of(k, total, 0.5, 0.0, reduction, class_weights(spec, None, k))
    repeated_x, repeated_y = x.repeat_interleave(counts, 0), y.repeat_interleave(counts)
    out = 1 if k == 2 else k
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(out, D, generator=generator, dtype=torch.float64)
    bias = torch.randn(out, generator=generator, dtype=torch.float64)
    got = weighted.value_and_gradient(x, y, weight, bias, sample_weight)
    want = weighted.value_and_gradient(repeated_x, repeated_y, weight, bias)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    buffers = [torch.empty_like(weight), torch.empty_like(bias)]
    loss, _ = weighted.gradient_(x, y, weight, bias, *buffers, sample_weight=sample_weight)
    torch.testing.assert_close(loss.double(), want[0] - weighted.penalty(weight, total, l1=False))
    torch.testing.assert_close(buffers[0], want[1])
    torch.testing.assert_close(buffers[1], want[2])


@pytest.mark.parametrize(("k", "C", "l1_ratio", "weights", "reduction"), OPTIONS)
def test_closed_form_gradient_is_autograds(k, C, l1_ratio, weights, reduction) -> None:
    x, y = data(k)
    counts = torch.bincount(y, minlength=k).tolist()
    spec = [1.0 + i for i in range(k)] if weights == "list" else weights
    objective = Objective.of(k, N, C, l1_ratio, reduction, class_weights(spec, counts, k))
    out = 1 if k == 2 else k
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(out, D, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(out, generator=generator, dtype=torch.float64, requires_grad=True)
    reference = autograd_value(objective, x, y, weight, bias)
    want_w, want_b = torch.autograd.grad(reference, [weight, bias])
    with torch.no_grad():
        value, grad_w, grad_b = objective.value_and_gradient(x, y, weight, bias)
        buffer_w, buffer_b = torch.empty_like(grad_w), torch.empty_like(grad_b)
        loss, _ = objective.gradient_(x, y, weight, bias, buffer_w, buffer_b)
    torch.testing.assert_close(value, reference.detach(), rtol=1e-12, atol=1e-12)
    for got in (grad_w, buffer_w):
        torch.testing.assert_close(got, want_w, rtol=1e-10, atol=1e-12)
    for got in (grad_b, buffer_b):
        torch.testing.assert_close(got, want_b, rtol=1e-10, atol=1e-12)
    penalty = objective.penalty(weight.detach(), N, l1=False)
    torch.testing.assert_close(loss + penalty, reference.detach(), rtol=1e-12, atol=1e-12)


def as_wide(x: torch.Tensor, dense: int = 2) -> WideFeatures:
    """x's first `dense` columns dense, the rest a sparse block (zeros left out)."""
    rows, columns = torch.nonzero(x[:, dense:], as_tuple=True)
    indptr = torch.cat(
        [torch.zeros(1, dtype=torch.int64), torch.bincount(rows, minlength=len(x)).cumsum(0)]
    )
    return WideFeatures(x[:, :dense], indptr, columns, x[rows, dense + columns], x.shape[1] - dense)


@pytest.mark.parametrize(
    ("k", "C", "weights", "reduction"),
    [(2, 1.0, None, "mean"), (4, 0.05, "balanced", "sum"), (4, None, None, "mean")],
)
def test_wide_features_give_the_dense_matrixs_value_and_gradient(k, C, weights, reduction) -> None:
    x, y = data(k)
    x[:, 2:] *= torch.rand(x[:, 2:].shape, generator=torch.Generator().manual_seed(9)) > 0.6
    counts = torch.bincount(y, minlength=k).tolist()
    objective = Objective.of(k, N, C, 0.0, reduction, class_weights(weights, counts, k))
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(1 if k == 2 else k, D, generator=generator, dtype=torch.float64)
    bias = torch.randn(len(weight), generator=generator, dtype=torch.float64)
    wide = as_wide(x)
    for got, want in zip(
        objective.value_and_gradient(wide, y, weight, bias),
        objective.value_and_gradient(x, y, weight, bias),
        strict=True,
    ):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # float32 products, float64 parameters: as L-BFGS evaluates at model.tol >= 1e-5
    for got, want in zip(
        objective.value_and_gradient(wide.float(), y, weight, bias),
        objective.value_and_gradient(x.float(), y, weight, bias),
        strict=True,
    ):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    buffers = [torch.empty_like(weight), torch.empty_like(bias)]
    expected = [torch.empty_like(weight), torch.empty_like(bias)]
    loss, probs = objective.gradient_(wide, y, weight, bias, *buffers, with_probs=True)
    want_loss, want_probs = objective.gradient_(x, y, weight, bias, *expected, with_probs=True)
    torch.testing.assert_close(loss, want_loss)
    torch.testing.assert_close(probs, want_probs)
    for got, want in zip(buffers, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_l1_term_enters_the_value_and_the_subgradient() -> None:
    objective = Objective.of(2, N, C=0.1, l1_ratio=1.0)
    weight = torch.tensor([[0.5, -2.0, 0.0]], dtype=torch.float64)
    assert objective.penalty(weight, N).item() == pytest.approx(2.5 / (0.1 * N))
    # At a zero weight the minimum-norm subgradient shrinks the smooth gradient by the strength.
    strength = 1 / (0.1 * N)
    grad = torch.tensor([[0.0, 0.0, 3 * strength]], dtype=torch.float64)
    norm = objective.subgradient_norm(weight, grad, torch.zeros(1, dtype=torch.float64), N)
    assert norm.item() == pytest.approx(2 * strength)


def autograd_epoch(k: int, C, class_weight, reduction: str, momentum: float) -> torch.Tensor:
    """One epoch of autograd + torch.optim.SGD over the solver's epoch order."""
    x, y = data(k)
    x = x.float()
    counts = torch.bincount(y, minlength=k).tolist()
    objective = Objective.of(k, N, C, 0.0, reduction, class_weights(class_weight, counts, k))
    torch.manual_seed(SEED)
    linear = torch.nn.Linear(D, 1 if k == 2 else k)
    optimizer = torch.optim.SGD(linear.parameters(), lr=0.05, momentum=momentum)
    for idx in epoch_permutation(N, SEED, 0).split(BATCH):
        value = autograd_value(objective, x[idx], y[idx], linear.weight, linear.bias)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return torch.cat([linear.weight.detach().flatten(), linear.bias.detach()])


@pytest.mark.parametrize(
    ("k", "C", "class_weight", "reduction", "momentum"),
    [
        (2, None, None, "mean", 0.0),
        (2, 1.0, "balanced", "mean", 0.9),
        (2, 0.5, None, "sum", 0.9),
        (4, 1.0, None, "mean", 0.9),
        (4, None, "balanced", "sum", 0.0),
    ],
)
def test_an_epoch_of_solver_steps_is_the_autograd_loops(
    k, C, class_weight, reduction, momentum
) -> None:
    x, y = data(k)
    counts = torch.bincount(y, minlength=k).tolist()
    model = LogisticRegression(
        D,
        num_classes=k,
        class_counts=counts,
        lr=0.05,
        momentum=momentum,
        C=C,
        class_weight=class_weight,
        reduction=reduction,
        seed=SEED,
    )
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = tensor_loader(x.float(), y, BATCH, 3, shuffle=True, seed=SEED)
    trainer.fit(model, train_dataloaders=loader)
    ours = torch.cat([model.linear.weight.detach().flatten(), model.linear.bias.detach()])
    reference = autograd_epoch(k, C, class_weight, reduction, momentum)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)


def test_a_minibatch_of_zero_weights_takes_the_penalty_step_alone() -> None:
    x, y = data(2)
    objective = Objective.of(2, N, 1.0)
    weight = torch.ones(1, D, dtype=torch.float64)
    bias = torch.zeros(1, dtype=torch.float64)
    buffers = [torch.empty_like(weight), torch.empty_like(bias)]
    zeros = torch.zeros(N, dtype=torch.float64)
    loss, _ = objective.gradient_(x, y, weight, bias, *buffers, sample_weight=zeros)
    assert loss.item() == 0.0
    torch.testing.assert_close(buffers[0], objective.l2 * weight)
    assert buffers[1].item() == 0.0
