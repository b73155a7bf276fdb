"""The metrics a run reports, and `python -m lrexp.eval` reproducing them from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from lrexp.data.batches import tensor_loader
from lrexp.eval import main
from lrexp.model import LogisticRegression
from tests.conftest import run_entry

METRICS = ("acc", "auroc", "f1", "ece", "loss")


def read_metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


def test_test_metrics_equal_scikit_learns() -> None:
    """The model's own metric path (test_step → epoch end) on 40 fixed points in 3 batches."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, generator=generator)
    y = (x[:, 0] + 0.8 * torch.randn(40, generator=generator) > 0).long()
    model = LogisticRegression(in_features=2)
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[1.5, -0.5]]))
        model.linear.bias.fill_(0.2)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(model, dataloaders=tensor_loader(x, y, batch_size=16), verbose=False)
    got = {k: trainer.callback_metrics[f"test/{k}"].item() for k in METRICS}

    p = torch.sigmoid(x @ torch.tensor([1.5, -0.5]) + 0.2).numpy().astype(np.float64)
    y = y.numpy()
    prob_true, prob_pred = calibration_curve(y, p, n_bins=15)  # torchmetrics' default 15 bins
    counts = np.histogram(p, bins=15, range=(0, 1))[0]
    expected = {
        "acc": accuracy_score(y, p >= 0.5),
        "auroc": roc_auc_score(y, p),
        "f1": f1_score(y, p >= 0.5),
        "ece": np.sum(counts[counts > 0] / len(y) * np.abs(prob_true - prob_pred)),
        "loss": log_loss(y, p),
    }
    assert 0.5 < expected["acc"] < 1  # a case with errors on both sides, not a trivial one
    assert got == pytest.approx(expected, abs=1e-5)


def test_train_writes_every_metric_under_its_name(trained_mnist: Path) -> None:
    metrics = read_metrics(trained_mnist)
    for stage in ("val", "test"):
        for name in METRICS:
            assert 0 <= metrics[f"{stage}/{name}"] < 10


@pytest.mark.parametrize("data", [[], ["data=toy"]], ids=["from-checkpoint", "data=toy"])
def test_eval_reproduces_the_toy_runs_test_metrics(
    trained_toy: Path, tmp_path: Path, data: list[str], capsys: pytest.CaptureFixture
) -> None:
    ckpt = trained_toy / "checkpoints" / "last.ckpt"
    assert run_entry(main, f"ckpt_path={ckpt}", *data, f"hydra.run.dir={tmp_path}") == 0
    trained, evaluated = read_metrics(trained_toy), read_metrics(tmp_path)
    for key in ("test/acc", "test/loss", "test/auroc", "p_pass_at_4h"):
        assert evaluated[key] == trained[key]
    assert not any(key.startswith("val/") for key in evaluated)
    out = capsys.readouterr().out
    assert f"run dir: {tmp_path}" in out and f"tensorboard --logdir {tmp_path}" in out
    assert (tmp_path / "figures" / "decision_curve.png").is_file()


def test_eval_restores_the_image_runs_preprocessing(trained_mnist: Path, tmp_path: Path) -> None:
    """Standardisation statistics come from the checkpoint, not from re-reading the train split."""
    ckpt = next((trained_mnist / "checkpoints").glob("best-*.ckpt"))
    assert run_entry(main, f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path}") == 0
    trained, evaluated = read_metrics(trained_mnist), read_metrics(tmp_path)
    assert {k: evaluated[k] for k in trained if k.startswith("test/")} == {
        k: v for k, v in trained.items() if k.startswith("test/")
    }
    assert (tmp_path / "figures" / "weights.png").is_file()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=toy"], "takes 784 features but this data config gives 1"),
        (["data=mnist", "data.normalize=false"], "data.normalize=False but"),
        ([], "ckpt_path is missing"),
    ],
)
def test_eval_refuses_data_that_do_not_fit_the_checkpoint(
    trained_mnist: Path,
    tmp_path: Path,
    overrides: list[str],
    message: str,
    capsys: pytest.CaptureFixture,
) -> None:
    ckpt = (
        []
        if message.startswith("ckpt_path")
        else [f"ckpt_path={trained_mnist}/checkpoints/last.ckpt"]
    )
    assert run_entry(main, *ckpt, *overrides, f"hydra.run.dir={tmp_path / 'run'}") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list((tmp_path / "run").glob("*"))  # Hydra made the dir; nothing went in


def test_eval_reproduces_a_ten_class_runs_test_metrics(
    trained_ten_classes: Path, tmp_path: Path
) -> None:
    """eval rebuilds the softmax model and its ten-class data from the checkpoint alone."""
    ckpt = trained_ten_classes / "checkpoints" / "last.ckpt"
    run_dir = tmp_path / "eval"
    assert run_entry(main, f"ckpt_path={ckpt}", "logger=none", f"hydra.run.dir={run_dir}") == 0
    evaluated, trained = read_metrics(run_dir), read_metrics(trained_ten_classes)
    tested = {k: v for k, v in evaluated.items() if k.startswith("test/")}
    assert "test/acc/ankle-boot" in tested
    assert tested == pytest.approx({k: trained[k] for k in tested}, abs=1e-6)
