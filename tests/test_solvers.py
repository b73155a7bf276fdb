"""The solvers reach the optimum of the objective they state: scikit-learn's, exactly."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression as SklearnLR
from sklearn.preprocessing import StandardScaler

from lrexp.data.batches import tensor_loader
from lrexp.model import LogisticRegression
from lrexp.objective import class_weights
from lrexp.solvers import objective_report


def table(loader) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = loader(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)


def fit(
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch: int = 32,
    precision="32-true",
    validate_every: int | None = None,
    **hparams,
):
    """The model fitted on (x, y); with `validate_every`, validated on them every that many
    epochs."""
    k = int(y.max()) + 1
    counts = torch.bincount(y, minlength=k).tolist()
    model = LogisticRegression(x.shape[1], num_classes=k, class_counts=counts, seed=0, **hparams)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision=precision,
        check_val_every_n_epoch=validate_every or 1,
    )
    x = x.double() if precision == "64-true" else x
    loader = tensor_loader(x, y, batch, 8, shuffle=True, seed=0)
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=loader if validate_every else None)
    return model


def sklearn_params(model: SklearnLR) -> tuple[np.ndarray, np.ndarray]:
    return model.coef_, model.intercept_


def ours(model: LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
    return model.linear.weight.detach().numpy(), model.linear.bias.detach().numpy()


@pytest.mark.parametrize(
    ("class_weight", "precision", "atol"),
    [
        (None, "64-true", 1e-5),
        ("balanced", "64-true", 1e-5),
        ([1.0, 3.0], "64-true", 1e-5),
        (None, "32-true", 1e-5),  # L-BFGS runs in float64 whatever the parameters' dtype
    ],
)
def test_lbfgs_reaches_scikit_learns_optimum_for_c_and_class_weight(
    class_weight, precision: str, atol: float
) -> None:
    x, y = table(load_breast_cancer)
    model = fit(
        x,
        y,
        5,
        precision=precision,
        optimizer="lbfgs",
        lr=1.0,
        C=0.5,
        tol=1e-9,
        class_weight=class_weight,
    )
    weight = dict(enumerate(class_weight)) if isinstance(class_weight, list) else class_weight
    reference = SklearnLR(C=0.5, tol=1e-10, max_iter=10_000, class_weight=weight)
    reference.fit(x.double().numpy(), y.numpy())
    for a, b in zip(ours(model), sklearn_params(reference), strict=True):
        np.testing.assert_allclose(a, b, atol=atol)
    assert objective_report(model, x, y)["train/grad_norm"] <= 1e-7


def test_lbfgs_reaches_the_optimum_on_uncentred_features_and_stops_there() -> None:
    """Features far from zero mean (pixels are all >= 0) tie the intercept to the weights in one
    ill-conditioned direction unless L-BFGS works in centred coordinates. Defaults (tol 1e-7),
    float32 parameters."""
    x, y = table(load_breast_cancer)
    x = x + 10.0
    model = fit(x, y, 50, optimizer="lbfgs", lr=1.0, C=1.0, tol=1e-7)
    reference = SklearnLR(C=1.0, tol=1e-10, max_iter=10_000).fit(x.double().numpy(), y.numpy())
    for a, b in zip(ours(model), sklearn_params(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)  # intercept: about 120
    assert objective_report(model, x, y)["train/grad_norm"] <= 1e-7
    assert model.current_epoch < 5  # stopped once converged, not after 50 epochs
    assert model.solver.problem is None  # the float64 copy of the data is not kept


def test_the_epoch_lbfgs_converges_in_validates() -> None:
    """A run that validates every 5th epoch still validates (and so checkpoints) the optimum
    when L-BFGS stops before the 5th."""
    x, y = table(load_breast_cancer)
    model = fit(x, y, 50, validate_every=5, optimizer="lbfgs", lr=1.0, C=1.0)
    assert model.current_epoch < 4  # stopped before the first scheduled validation
    assert "val/loss" in model.trainer.callback_metrics
    assert "train/acc" in model.trainer.callback_metrics  # the train scores of a validating epoch


def test_softmax_lbfgs_reaches_scikit_learns_multinomial_optimum() -> None:
    x, y = table(load_wine)
    model = fit(x, y, 5, precision="64-true", optimizer="lbfgs", lr=1.0, C=1.0, tol=1e-9)
    reference = SklearnLR(C=1.0, tol=1e-10, max_iter=10_000).fit(x.double().numpy(), y.numpy())
    (weight, bias), (ref_weight, ref_bias) = ours(model), sklearn_params(reference)
    np.testing.assert_allclose(weight, ref_weight, atol=1e-5)
    # Softmax intercepts are unpenalised, so only their differences are identified.
    np.testing.assert_allclose(bias - bias.mean(), ref_bias - ref_bias.mean(), atol=1e-5)


def test_sgd_with_a_decaying_step_converges_to_the_same_optimum() -> None:
    """The default recipe (SGD, step to 0 linearly) reaches the objective's optimum."""
    x, y = table(load_breast_cancer)
    exact = fit(x, y, epochs=5, optimizer="lbfgs", lr=1.0, C=1.0)
    sgd = fit(x, y, epochs=200, optimizer="sgd", lr=0.5, C=1.0, scheduler="linear")
    gap = (
        objective_report(sgd, x, y)["train/objective"]
        - objective_report(exact, x, y)["train/objective"]
    )
    assert 0 <= gap < 1e-3


def test_the_l1_proximal_step_finds_scikit_learns_lasso_solution() -> None:
    """Full-batch proximal gradient steps (ISTA) converge to saga's L1 solution, zeros included;
    minibatch SGD's proximal steps also leave exact zeros."""
    x, y = table(load_breast_cancer)
    reference = SklearnLR(C=0.05, l1_ratio=1.0, solver="saga", tol=1e-10, max_iter=100_000)
    reference.fit(x.numpy(), y.numpy())
    ista = fit(x, y, 1500, batch=len(y), optimizer="sgd", lr=0.3, C=0.05, l1_ratio=1.0)
    zeros, saga_zeros = (ista.linear.weight == 0).numpy()[0], reference.coef_[0] == 0
    assert 0 < zeros.sum() < x.shape[1]
    assert not (zeros & ~saga_zeros).any()  # no weight is zero that saga keeps
    assert zeros.sum() >= 0.8 * saga_zeros.sum()
    reached = objective_report(ista, x, y)["train/objective"]
    with torch.no_grad():  # the same model at saga's solution
        ista.linear.weight.copy_(torch.tensor(reference.coef_))
        ista.linear.bias.copy_(torch.tensor(reference.intercept_))
    optimum = objective_report(ista, x, y)["train/objective"]
    assert optimum <= reached < optimum + 1e-3
    sgd = fit(x, y, 30, optimizer="sgd", lr=0.5, C=0.05, l1_ratio=1.0, scheduler="linear")
    assert (sgd.linear.weight == 0).sum() >= zeros.sum() // 2


def test_balanced_class_weights_are_scikit_learns() -> None:
    weights = class_weights("balanced", [30, 10], 2)
    assert torch.allclose(weights, torch.tensor([40 / 60, 40 / 20]))
    assert class_weights(None, [3, 1], 2) is None
    assert torch.equal(class_weights([1, 2, 3], None, 3), torch.tensor([1.0, 2.0, 3.0]))


@pytest.mark.parametrize(("scheduler", "end"), [("linear", 0.0), ("cosine", 0.0), (None, 1.0)])
def test_schedules_decay_the_step_over_the_whole_run(scheduler, end) -> None:
    x, y = table(load_breast_cancer)
    model = fit(x, y, epochs=3, optimizer="sgd", lr=0.1, scheduler=scheduler)
    steps = 3 * -(-len(y) // 32)
    assert model.solver.total_steps == steps
    # The last step's: lr times the schedule at (steps - 1) / steps, a step before its end.
    last = {"linear": 1 / steps, "cosine": 0.5 * (1 + math.cos(math.pi * (steps - 1) / steps))}
    lr = model.optimizers().optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(0.1 * last.get(scheduler, end), rel=1e-9)


def test_l_bfgs_sees_a_wide_tables_sparse_block_centred_as_the_dense_copy_would_be() -> None:
    """CentredFloat64 centres a sparse block implicitly: its objective and gradient in (w, c),
    and the parameters it stores back, are those of the dense matrix's explicit centring."""
    from lrexp.objective import Objective
    from lrexp.solvers import CentredFloat64
    from tests.test_objective import as_wide

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(150, 7, generator=generator, dtype=torch.float64)
    x[:, 2:] = (x[:, 2:] > 0.8).double()  # a 0/1 block, as one-hot columns
    y = torch.randint(3, (150,), generator=generator)
    weights = torch.rand(150, generator=generator, dtype=torch.float64)
    objective = Objective.of(3, 150, 1.0)
    weight = torch.randn(3, 7, generator=generator, dtype=torch.float64)
    centred_bias = torch.randn(3, generator=generator, dtype=torch.float64)
    wide = CentredFloat64(as_wide(x), y, torch.float64, weights)
    dense = CentredFloat64(x, y, torch.float64, weights)
    torch.testing.assert_close(wide.mean, dense.mean)
    for got, want in zip(
        wide.value_and_gradient(objective, weight, centred_bias),
        dense.value_and_gradient(objective, weight, centred_bias),
        strict=True,
    ):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
