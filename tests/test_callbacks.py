"""Checkpoints inside an epoch (callbacks.model_checkpoint.every_n_train_steps): a run SIGKILLed
mid-epoch and resumed with ckpt_path=last ends with the uninterrupted run's weights, to the bit,
on a streamed table and on one in memory."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lrexp.callbacks import checkpoints
from lrexp.errors import LrexpError
from lrexp.train import main
from tests.conftest import run_entry
from tests.test_train_scale import REPO, TIMEOUT_S

# SGD with momentum and the decaying schedule (a function of the step), several minibatches a
# loader item, last.ckpt every 37 SGD steps: 37 is no multiple of an item's 4 steps, nor of an
# epoch's, so the checkpoints fall inside epochs.
RUN = ["data=table", "data.target=y", "model.optimizer=sgd", "model.lr=0.05", "logger=none"]
RUN += ["trainer.enable_progress_bar=false", "trainer.max_epochs=3", "data.batch_size=16"]
RUN += ["data.minibatches_per_step=4", "callbacks.model_checkpoint.every_n_train_steps=37"]
KILL = ["+callbacks.kill._target_=tests.test_train_scale.SigkillAt", "+callbacks.kill.epoch=1"]
KILL += ["+callbacks.kill.batch=20"]  # epoch 2, its 21st loader item
DATA = {
    "stream": ["data.stream=true", "data.shuffle_rows=1000"],
    "memory": [],
}


def train(run_dir: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "lrexp.train", f"hydra.run.dir={run_dir}", *RUN, *overrides]
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """For each kind of data: an uninterrupted run, and one killed in epoch 2 then resumed."""
    root = tmp_path_factory.mktemp("step_checkpoints")
    rng = np.random.default_rng(1)
    a, b, c = rng.normal(size=(3, 6000))
    y = (a + b + 0.5 * rng.normal(size=6000) > 0).astype(int)
    pq.write_table(
        pa.table({"a": a, "b": b, "c": c, "y": y}), root / "t.parquet", row_group_size=700
    )
    data = {kind: [f"data.path={root / 't.parquet'}", *extra] for kind, extra in DATA.items()}
    started = {}
    for kind, overrides in data.items():
        started[f"{kind}_whole"] = train(root / f"{kind}_whole", *overrides)
        started[f"{kind}_killed"] = train(root / f"{kind}_killed", *overrides, *KILL)
    for name, process in started.items():
        output, _ = process.communicate(timeout=TIMEOUT_S)
        expected = -signal.SIGKILL if name.endswith("killed") else 0
        assert process.returncode == expected, output[-3000:]
    for kind, overrides in data.items():
        run_dir = root / f"{kind}_killed"
        checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
        (loader,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
        assert checkpoint["epoch"] == 1 and loader["epoch"] == 1 and loader["given"] > 0
        assert not (run_dir / "metrics.json").exists()
        resumed = [*RUN, *overrides, f"hydra.run.dir={run_dir}", "ckpt_path=last"]
        assert run_entry(main, *resumed) == 0
    return {name: root / name for name in started}


@pytest.mark.parametrize("kind", list(DATA))
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(
    runs: dict[str, Path], kind: str
) -> None:
    def weights(name: str) -> dict[str, torch.Tensor]:
        path = runs[name] / "checkpoints" / "last.ckpt"
        return torch.load(path, weights_only=True)["state_dict"]

    whole, resumed = weights(f"{kind}_whole"), weights(f"{kind}_killed")
    for name, tensor in whole.items():
        assert torch.equal(resumed[name], tensor), name


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_every_n_train_steps_must_be_a_positive_count(steps: object, tmp_path: Path) -> None:
    with pytest.raises(LrexpError, match="every_n_train_steps=.*> 0"):
        checkpoints(dirpath=str(tmp_path), every_n_train_steps=steps)
