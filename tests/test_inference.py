"""coefficients.csv's inference against statsmodels on real tables, fitted through the real entry
point: standard errors, p-values, AIC, BIC, log-likelihood and pseudo-R² of Logit (two labels)
and MNLogit (K classes, against the first class) on the same standardised training rows; the
penalised information against autograd's Hessian of the model's own objective; the singular
cases in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import torch
from sklearn.datasets import load_breast_cancer, load_wine

from lrexp import train
from lrexp.inference import INTERCEPT, fit_inference
from tests.conftest import run_entry

# L-BFGS at its default tol (1e-7): standard errors within 1e-6 of statsmodels' on these tables.
LBFGS = ["model.optimizer=lbfgs", "data.val_fraction=0", "logger=none"]


def spector() -> tuple[pd.DataFrame, str]:
    return sm.datasets.spector.load_pandas().data, "GRADE"


def cancer() -> tuple[pd.DataFrame, str]:
    """Five of the 30 columns: all of them separate the classes almost perfectly."""
    data = load_breast_cancer(as_frame=True).frame
    columns = ["mean radius", "mean texture", "mean smoothness", "mean symmetry"]
    return data[[*columns, "mean fractal dimension", "target"]], "target"


def anes96() -> tuple[pd.DataFrame, str]:
    """statsmodels' own MNLogit example: party identification (7 classes)."""
    data = sm.datasets.anes96.load_pandas().data
    return data[["logpopul", "selfLR", "age", "educ", "income", "PID"]], "PID"


def wine() -> tuple[pd.DataFrame, str]:
    data = load_wine(as_frame=True).frame
    return data[["alcohol", "malic_acid", "alcalinity_of_ash", "target"]], "target"


def standardised(frame: pd.DataFrame) -> np.ndarray:
    """The numeric columns as the table's preprocessing makes them: float32 values, training
    mean and population std."""
    values = frame.to_numpy(np.float32)
    mean, std = values.astype(np.float64).mean(0), values.astype(np.float64).std(0)
    return ((values - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float64)


def fit_run(tmp_path: Path, frame: pd.DataFrame, target: str, *overrides: str) -> Path:
    """A run whose training split is the whole table (data.test_path: the same file)."""
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    run = tmp_path / "run"
    table = [f"data.path={path}", f"data.test_path={path}", f"data.target={target}"]
    assert run_entry(train.main, "data=table", *table, *overrides, f"hydra.run.dir={run}") == 0
    return run


def read(run: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    coefficients = pd.read_csv(run / "coefficients.csv", keep_default_na=False, na_values=[""])
    return coefficients, json.loads((run / "metrics.json").read_text())


def warnings(run: Path) -> list[str]:
    """The run log's lines that leave the inference out (the log is the run dir's <job>.log)."""
    lines = (run / "train.log").read_text().splitlines()
    return [line.split(" - ", 1)[1] for line in lines if "no standard errors" in line]


def parity(coefficients: pd.DataFrame, result, features: list[str], classes: list[str]) -> dict:
    """Largest relative standard-error and absolute p-value differences (statsmodels' params
    are const, then the columns; one column per non-reference class for MNLogit)."""
    names = [INTERCEPT, *features]
    bse = np.asarray(result.bse).reshape(len(names), -1)
    pvalues = np.asarray(result.pvalues).reshape(len(names), -1)
    mine = coefficients.set_index(["class", "feature"])
    se_diff, p_diff = 0.0, 0.0
    for k, label in enumerate(classes):
        rows = mine.loc[[(label, n) for n in names]]
        se_diff = max(se_diff, np.abs(rows["std_err"].to_numpy() / bse[:, k] - 1).max())
        p_diff = max(p_diff, np.abs(rows["p_value"].to_numpy() - pvalues[:, k]).max())
    return {"std_err": se_diff, "p_value": p_diff}


@pytest.mark.parametrize("dataset", [spector, cancer])
def test_two_labels_equal_statsmodels_logit(tmp_path: Path, dataset) -> None:
    frame, target = dataset()
    run = fit_run(tmp_path, frame, target, *LBFGS, "model.C=null")
    coefficients, metrics = read(run)
    features = [c for c in frame if c != target]
    x = sm.add_constant(standardised(frame[features]))
    result = sm.Logit(frame[target].to_numpy(), x).fit(disp=0, method="newton", tol=1e-12)
    differences = parity(coefficients, result, features, sorted(coefficients["class"].unique()))
    assert differences["std_err"] < 1e-3 and differences["p_value"] < 1e-3, differences
    assert (coefficients["reference"].isna()).all()
    assert {"coefficients.png", "reliability.png"} <= {p.name for p in (run / "figures").iterdir()}
    assert metrics["train/log_likelihood"] == pytest.approx(result.llf, rel=1e-6)
    assert metrics["train/aic"] == pytest.approx(result.aic, rel=1e-6)
    assert metrics["train/bic"] == pytest.approx(result.bic, rel=1e-6)
    assert metrics["train/pseudo_r2"] == pytest.approx(result.prsquared, rel=1e-5)
    level = coefficients["ci_high"] - coefficients["ci_low"]
    np.testing.assert_allclose(level, 2 * 1.959963984540054 * coefficients["std_err"], rtol=1e-9)


@pytest.mark.parametrize("dataset", [anes96, wine])
def test_k_classes_equal_statsmodels_mnlogit_against_the_first_class(
    tmp_path: Path, dataset
) -> None:
    frame, target = dataset()
    run = fit_run(tmp_path, frame, target, *LBFGS, "model.C=null")
    coefficients, metrics = read(run)
    values = sorted(frame[target].unique())
    labels = [str(v) for v in values]
    assert sorted(coefficients["class"].astype(str).unique()) == sorted(labels[1:])
    assert (coefficients["reference"].astype(str) == labels[0]).all()
    coefficients["class"] = coefficients["class"].astype(str)
    features = [c for c in frame if c != target]
    x = sm.add_constant(standardised(frame[features]))
    result = sm.MNLogit(frame[target].to_numpy(), x).fit(disp=0, method="newton", tol=1e-12)
    differences = parity(coefficients, result, features, labels[1:])
    assert differences["std_err"] < 1e-3 and differences["p_value"] < 1e-3, differences
    assert metrics["train/log_likelihood"] == pytest.approx(result.llf, rel=1e-6)
    assert metrics["train/aic"] == pytest.approx(result.aic, rel=1e-6)
    assert metrics["train/bic"] == pytest.approx(result.bic, rel=1e-6)
    assert metrics["train/pseudo_r2"] == pytest.approx(result.prsquared, rel=1e-5)


def test_categories_against_their_reference_equal_statsmodels_with_dummies(tmp_path: Path) -> None:
    """data.onehot_drop=first (the composed key): the categories of anes96's education
    (as text) against the first, the coding of pandas' get_dummies(drop_first=True)."""
    data = sm.datasets.anes96.load_pandas().data
    frame = data[["selfLR", "age"]].assign(
        educ=data["educ"].map(lambda v: f"level{int(v)}"), vote=data["vote"].astype(int)
    )
    run = fit_run(tmp_path, frame, "vote", *LBFGS, "model.C=null", "data.onehot_drop=first")
    coefficients, metrics = read(run)
    dummies = pd.get_dummies(frame["educ"], prefix="educ", prefix_sep="=", drop_first=True)
    features = ["selfLR", "age", *dummies.columns]
    x = sm.add_constant(
        np.hstack([standardised(frame[["selfLR", "age"]]), dummies.to_numpy(float)])
    )
    result = sm.Logit(frame["vote"].to_numpy(), x).fit(disp=0, method="newton", tol=1e-12)
    assert "educ=level1" not in set(coefficients["feature"])
    differences = parity(coefficients, result, features, [1])
    assert differences["std_err"] < 1e-3 and differences["p_value"] < 1e-3, differences
    assert metrics["train/aic"] == pytest.approx(result.aic, rel=1e-6)


def test_class_weights_count_as_frequency_weights(tmp_path: Path) -> None:
    """model.class_weight=[1, 3]: the information of a row counted 1 or 3 times, as statsmodels'
    GLM with those freq_weights."""
    frame, target = cancer()
    run = fit_run(tmp_path, frame, target, *LBFGS, "model.C=null", "model.class_weight=[1,3]")
    coefficients, metrics = read(run)
    features = [c for c in frame if c != target]
    y = frame[target].to_numpy()
    x = sm.add_constant(standardised(frame[features]))
    glm = sm.GLM(y, x, family=sm.families.Binomial(), freq_weights=np.where(y == 1, 3.0, 1.0))
    result = glm.fit(tol=1e-12)
    differences = parity(coefficients, result, features, [1])
    assert differences["std_err"] < 1e-3 and differences["p_value"] < 1e-3, differences
    assert metrics["train/log_likelihood"] == pytest.approx(result.llf, rel=1e-6)


def autograd_covariance(
    x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, C: float
) -> np.ndarray:
    """The pseudo-inverse of autograd's Hessian of n x the model's objective, mean cross-entropy
    + ‖w‖² / (2 C n), in (intercepts, weights) per class (two labels: one class)."""
    n, d = x.shape
    binary = len(weight) == 1

    def objective(theta: torch.Tensor) -> torch.Tensor:
        b, w = theta[:, 0], theta[:, 1:]
        logits = x @ w.T + b
        if binary:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y.double())
        else:
            loss = torch.nn.functional.cross_entropy(logits, y)
        return n * (loss + (w * w).sum() / (2 * C * n))

    theta = torch.cat([bias[:, None], weight], 1).double()
    hessian = torch.autograd.functional.hessian(objective, theta)
    size = theta.numel()
    return np.linalg.pinv(hessian.reshape(size, size).numpy(), rcond=1e-10, hermitian=True)


@pytest.mark.parametrize(("dataset", "C"), [(cancer, 0.05), (wine, 0.5)])
def test_penalised_standard_errors_are_the_penalised_hessians(
    tmp_path: Path, dataset, C: float
) -> None:
    """With model.C the information includes the penalty's curvature; for K classes every class
    is reported, the intercepts centred (the pseudo-inverse: the penalty leaves their common
    shift free)."""
    from lrexp.checkpoints import load_checkpoint

    frame, target = dataset()
    # The exact optimum, so that the checkpoint's weights are the reported ones (which are the
    # optimum's: Newton's steps from the fit).
    run = fit_run(tmp_path, frame, target, *LBFGS, f"model.C={C}", "model.tol=1e-7")
    coefficients, _ = read(run)
    state = load_checkpoint(str(run / "checkpoints" / "last.ckpt"))["state_dict"]
    weight, bias = state["linear.weight"], state["linear.bias"]
    features = [c for c in frame if c != target]
    x = torch.from_numpy(standardised(frame[features]))
    y = torch.tensor(frame[target].to_numpy()).long()
    covariance = autograd_covariance(x, y, weight.double(), bias.double(), C)
    expected = np.sqrt(covariance.diagonal()).reshape(len(weight), -1)
    labels = sorted(frame[target].unique())
    labels = labels[-1:] if len(weight) == 1 else labels
    mine = coefficients.set_index(["class", "feature"])
    for k, label in enumerate(labels):
        rows = mine.loc[[(label, n) for n in [INTERCEPT, *features]]]
        np.testing.assert_allclose(rows["std_err"], expected[k], rtol=1e-4)
    if len(weight) > 1:
        intercepts = mine.xs(INTERCEPT, level="feature")["weight"]
        assert intercepts.sum() == pytest.approx(0, abs=1e-5)
        centred = bias.double() - bias.double().mean()
        np.testing.assert_allclose(intercepts.to_numpy(), centred.numpy(), atol=1e-6)


def singular_table(kind: str, rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    y = (a + 0.5 * b + rng.normal(size=rows) > 0).astype(int)
    columns = {"a": a, "b": b}
    if kind == "collinear":
        columns["c"] = a - 2 * b
    else:  # a column above 1 for label 1 and below 0 for label 0
        columns["sep"] = np.where(y == 1, 1 + rng.random(rows), -rng.random(rows))
    return pd.DataFrame({**columns, "y": y})


@pytest.mark.parametrize(
    ("kind", "named"),
    [("collinear", ["a", "b", "c"]), ("separated", ["sep"])],
)
def test_singular_information_is_one_line_naming_the_columns(
    tmp_path: Path, kind: str, named: list[str]
) -> None:
    """The run succeeds; the inference columns are left empty and one warning says why and
    which columns; the fit statistics are still there."""
    run = fit_run(tmp_path, singular_table(kind), "y", *LBFGS, "model.C=null")
    coefficients, metrics = read(run)
    assert coefficients[["std_err", "z", "p_value", "ci_low", "ci_high"]].isna().all().all()
    assert coefficients["weight"].notna().all()
    (warning,) = warnings(run)
    why = "collinear columns" if kind == "collinear" else "separation"
    assert why in warning
    listed = warning.rsplit(": ", 1)[1].split(", ")
    assert set(named) <= set(listed) and listed[0] in named
    assert np.isfinite(metrics["train/aic"])


def test_one_hot_columns_without_a_reference_are_collinear_with_the_intercept(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=120), "color": rng.choice(["red", "green"], 120)})
    frame["y"] = (frame["a"] + rng.normal(size=120) > 0).astype(int)
    run = fit_run(tmp_path, frame, "y", *LBFGS, "model.C=null")
    (warning,) = warnings(run)
    assert "data.onehot_drop=first" in warning
    assert {"color=green", "color=red", INTERCEPT} <= set(warning.rsplit(": ", 1)[1].split(", "))


def test_l1_leaves_the_inference_out_with_one_line(tmp_path: Path) -> None:
    frame, target = spector()
    overrides = ["model.C=1", "model.l1_ratio=0.5", "trainer.max_epochs=2", "logger=none"]
    run = fit_run(tmp_path, frame, target, *overrides)
    coefficients, metrics = read(run)
    assert coefficients["std_err"].isna().all() and "train/aic" in metrics
    (warning,) = warnings(run)
    assert "model.l1_ratio=0.5" in warning


def test_ci_level_sets_the_intervals(tmp_path: Path) -> None:
    frame, target = spector()
    run = fit_run(tmp_path, frame, target, *LBFGS, "model.C=null", "model.ci_level=0.9")
    coefficients, _ = read(run)
    half = (coefficients["ci_high"] - coefficients["ci_low"]) / 2
    np.testing.assert_allclose(half, 1.6448536269514722 * coefficients["std_err"], rtol=1e-9)
    np.testing.assert_allclose(coefficients["ci_low"] + half, coefficients["weight"], rtol=1e-9)


@pytest.mark.parametrize("level", ["1.5", "0", "high"])
def test_a_bad_ci_level_is_one_line_and_exit_2(
    tmp_path: Path, level: str, capsys: pytest.CaptureFixture
) -> None:
    frame, target = spector()
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    overrides = ["data=table", f"data.path={path}", f"data.target={target}"]
    run = tmp_path / "run"
    status = run_entry(train.main, *overrides, f"model.ci_level={level}", f"hydra.run.dir={run}")
    assert status == 2 and "model.ci_level" in capsys.readouterr().err
    assert not (run / ".hydra").exists() and not (run / "metrics.json").exists()


def test_too_many_parameters_leave_the_inference_out() -> None:
    """The information matrix grows as the square of the parameters: beyond MAX_PARAMETERS the
    fit statistics alone."""
    from lrexp.inference import MAX_PARAMETERS

    d = MAX_PARAMETERS
    x, y = torch.randn(8, d), torch.tensor([0, 1] * 4)
    fit = fit_inference(
        x, y, torch.zeros(1, d), torch.zeros(1), 1.0, None, [str(i) for i in range(d)]
    )
    assert fit.std_err is None and "parameters" in fit.singular
    assert fit.statistics["train/log_likelihood"] == pytest.approx(8 * np.log(0.5))
