"""`python -m lrexp.train` end to end: the lecture's toy run, what it leaves, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lrexp.train import main
from tests.conftest import run_entry

SEED = 1234


def lecture_raw_loop(seed: int) -> tuple[float, float]:
    """The lecture's code: sigmoid(Linear(1, 1)), summed BCE, SGD lr 0.01, 1000 full batches."""
    torch.manual_seed(seed)
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[0.0], [0.0], [1.0]])
    linear = torch.nn.Linear(1, 1)
    criterion = torch.nn.BCELoss(reduction="sum")
    optimizer = torch.optim.SGD(linear.parameters(), lr=0.01)
    for _ in range(1000):
        loss = criterion(torch.sigmoid(linear(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return linear.weight.item(), linear.bias.item()


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("toy") / "run"
    assert run_entry(main, "data=toy", f"seed={SEED}", f"hydra.run.dir={run_dir}") == 0
    return run_dir


def test_toy_run_reproduces_the_lecture_exactly(toy_run: Path) -> None:
    metrics = json.loads((toy_run / "metrics.json").read_text())
    w, b = lecture_raw_loop(SEED)
    assert metrics["w"] == pytest.approx(w, abs=1e-5)
    assert metrics["b"] == pytest.approx(b, abs=1e-5)


def test_toy_run_answers_the_lectures_question(toy_run: Path) -> None:
    metrics = json.loads((toy_run / "metrics.json").read_text())
    assert 0.8 < metrics["p_pass_at_4h"] < 0.9
    assert 2.2 < metrics["boundary_h"] < 2.6
    assert metrics["p_pass_at_4h"] == pytest.approx(
        torch.sigmoid(torch.tensor(4 * metrics["w"] + metrics["b"])).item()
    )
    assert metrics["w"] * metrics["boundary_h"] + metrics["b"] == pytest.approx(0, abs=1e-6)
    for key in ("val/acc", "val/loss", "test/acc", "test/auroc", "test/loss"):
        assert key in metrics


def test_toy_run_leaves_the_interface_files(toy_run: Path) -> None:
    assert (toy_run / ".hydra" / "config.yaml").is_file()
    assert (toy_run / "checkpoints" / "last.ckpt").is_file()
    assert list((toy_run / "checkpoints").glob("best-*.ckpt"))
    assert (toy_run / "figures" / "decision_curve.png").stat().st_size > 10_000


def test_tensorboard_gets_every_epochs_train_loss(toy_run: Path) -> None:
    events = EventAccumulator(str(toy_run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    train_loss = events.Scalars("train/loss")
    assert [e.step for e in train_loss] == list(range(1000))
    assert train_loss[-1].value < train_loss[0].value
    assert [e.step for e in events.Scalars("val/loss")] == list(range(49, 1000, 50))
    assert "val/acc" in events.Tags()["scalars"]
    assert "figures/decision_curve" in events.Tags()["images"]


def test_no_gpu_stops_before_training_with_the_cpu_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The message for a machine without CUDA, on any machine: CUDA is hidden from the run."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)  # the default run dir, outputs/<date>/<time>, lands here
    assert run_entry(main, "trainer.accelerator=gpu", "model.lr=0.1") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "trainer.accelerator=gpu" in err
    assert "no CUDA device" in err
    assert "python -m lrexp.train trainer=cpu model.lr=0.1" in err
    assert not list(tmp_path.glob("outputs/*/*/checkpoints"))


def test_the_command_line_run_shows_no_warning_that_does_not_apply(tmp_path: Path) -> None:
    """Lightning warns that log_every_n_steps exceeds the toy's one batch an epoch (lrexp logs
    whole epochs, so no curve loses a point) and about its own use of a deprecated torch API,
    and advertises its cloud logger: none of it concerns the run."""
    command = [sys.executable, "-m", "lrexp.train", "data=toy", "trainer.max_epochs=50"]
    proc = subprocess.run(
        [*command, f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert "log_every_n_steps" not in proc.stderr
    assert "LeafSpec" not in proc.stderr
    assert "litlogger" not in proc.stderr + proc.stdout
    assert "litmodels" not in proc.stderr + proc.stdout
