"""lrexp.run: the command-line tasks from Python, in this process, one call after another."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

import lrexp
from lrexp.errors import LrexpError

FAST = ["trainer.max_epochs=50", "trainer.enable_progress_bar=false", "logger=none"]


def test_two_trains_in_a_row_get_their_own_run_dirs_and_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # Hydra's default run dirs: outputs/<date>/<time> under the cwd
    first = lrexp.run("train", [*FAST, "model.lr=0.1"])
    second = lrexp.run("train", [*FAST, "model.lr=0.2"])
    assert first.run_dir != second.run_dir
    for result in (first, second):
        assert result.run_dir.parent.parent == tmp_path / "outputs"
        assert (result.run_dir / "metrics.json").is_file()
        assert (result.run_dir / ".hydra" / "config.yaml").is_file()
    assert first.metrics["p_pass_at_4h"] != second.metrics["p_pass_at_4h"]
    assert not GlobalHydra.instance().is_initialized()
    assert not HydraConfig.initialized()


def test_the_returned_model_answers_as_the_run_reported(tmp_path: Path) -> None:
    result = lrexp.run("train", [*FAST, "model.lr=0.1", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.run_dir == tmp_path / "run"
    with torch.no_grad():
        p_pass_at_4h = result.model(torch.tensor([[4.0]])).item()
    assert p_pass_at_4h == pytest.approx(result.metrics["p_pass_at_4h"], abs=1e-6)


def test_commands_on_a_checkpoint_return_their_output(tmp_path: Path) -> None:
    trained = lrexp.run("train", [*FAST, f"hydra.run.dir={tmp_path / 'run'}"])
    ckpt = f"ckpt_path={trained.run_dir / 'checkpoints' / 'last.ckpt'}"
    predicted = lrexp.run("predict", [ckpt, "inputs=[4.0]", f"hydra.run.dir={tmp_path / 'p'}"])
    ((name, p, _),) = predicted.output
    assert name == "4.0" and p == pytest.approx(trained.metrics["p_pass_at_4h"], abs=1e-6)
    evaluated = lrexp.run("eval", [ckpt, "logger=none", f"hydra.run.dir={tmp_path / 'e'}"])
    assert evaluated.metrics["test/loss"] == pytest.approx(trained.metrics["test/loss"])
    assert evaluated.model is not None and evaluated.run_dir == tmp_path / "e"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.nope=1"], "Could not override 'model.nope'"),  # Hydra's composition error
        (["model.lr=-1"], "model.lr=-1 is not allowed"),  # the task's own check
    ],
)
def test_a_bad_override_raises_and_the_next_call_works(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    with pytest.raises(LrexpError, match=message):
        lrexp.run("train", [*FAST, *overrides, f"hydra.run.dir={tmp_path / 'bad'}"])
    assert not GlobalHydra.instance().is_initialized()
    assert not HydraConfig.initialized()
    result = lrexp.run("train", [*FAST, f"hydra.run.dir={tmp_path / 'good'}"])
    assert "p_pass_at_4h" in result.metrics


def test_an_unknown_command_is_refused() -> None:
    with pytest.raises(LrexpError, match="command 'fit': use one of train, eval"):
        lrexp.run("fit")


def test_importing_lrexp_imports_nothing_heavy() -> None:
    code = "import sys, lrexp; print(sorted({'torch', 'hydra', 'lightning'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
