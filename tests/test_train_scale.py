"""Scaling `python -m lrexp.train`: sweeps, DDP over CPU processes, SLURM jobs, exact resume.

Runs that need processes of their own (DDP, SIGKILL) start together in the background when the
module starts, so that their imports overlap the in-process tests; the tests that read them
wait for them. Sweeps, DDP and resume are tested on images (or the toy) and on a table.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lrexp.checkpoint_io import AtomicCheckpointIO
from lrexp.train import main
from tests.conftest import run_entry, write_mnist_like
from tests.data.test_table import cancer_frame, write

REPO = Path(__file__).parents[1]
TIMEOUT_S = 600
# Fabricated Fashion-MNIST, sandal vs sneaker: 36 training images (an even number, so that two
# DDP ranks share them without a remainder), 4 validation, 20 test images. The DDP image run
# uses faint images: its test metrics are imperfect, so each rank's half of the test split
# scores differently from the whole, as the metrics synchronised across ranks must not.
# SGD, whose minibatch steps the resume and DDP tests follow (auto would take L-BFGS here).
IMAGES = [
    "data=fashion_mnist",
    "model.optimizer=sgd",
    "trainer.enable_progress_bar=false",
    "logger=tensorboard",
]
RESUMED = [*IMAGES, "trainer.max_epochs=4", "data.batch_size=6", "data.minibatches_per_step=1"]
RESUMED += ["model.momentum=0.9"]  # the momentum buffers must come back with the checkpoint
RESUMED += ["trainer.check_val_every_n_epoch=1"]  # a checkpoint every epoch to resume from
# Softmax over three classes, with the default schedule (its step size a function of the step)
# and penalty: all of it must come back from the checkpoint.
RESUMED += ["data.classes=[t-shirt,sandal,sneaker]"]
CLASSES_DDP = [*IMAGES, "data.classes=all", "data.batch_size=6", "trainer.max_epochs=2"]
TOY_DDP = ["data=toy", "trainer.max_epochs=50", "trainer.enable_progress_bar=false"]
# The breast-cancer table with a string column (tests/data/test_table.py), written as CSV to the
# module's root: 569 rows, 410 of them training rows (even, as the images'). Resumed as the
# images are, with momentum and the default schedule; under DDP validated twice.
RESUMED_TABLE = ["trainer.max_epochs=4", "data.batch_size=32", "data.minibatches_per_step=1"]
RESUMED_TABLE += ["model.momentum=0.9", "trainer.check_val_every_n_epoch=1"]
TABLE_DDP = ["trainer.max_epochs=4", "trainer.check_val_every_n_epoch=2"]


class SigkillAt(Callback):
    """Kill this process with SIGKILL (no cleanup, no flush) after a given training step."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGKILL)


def rendezvous_ports(count: int) -> list[int]:
    """Free ports for DDP jobs started at the same moment (MASTER_PORT), distinct by
    construction. Lightning's own choice binds port 0 and closes it; two jobs choosing at once
    can get the same port, or lose theirs to any other bind to port 0 (gloo's sockets, a
    TensorBoard server) before their rank 0 listens on it. These lie below the system's
    ephemeral range, which no bind to port 0 draws from, at an offset derived from this process
    id, so that concurrent test sessions pick different ones."""
    range_file = Path("/proc/sys/net/ipv4/ip_local_port_range")
    ephemeral = int(range_file.read_text().split()[0]) if range_file.exists() else 32768
    low = 10_000
    candidate = low + (os.getpid() * count) % (ephemeral - low - 1000)
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
                ports.append(candidate)
            except OSError:  # in use: the next one
                pass
        candidate += 1
    return ports


def table(root: Path) -> list[str]:
    """The overrides that train on the module's table."""
    overrides = ["data=table", f"data.path={root / 'cancer.csv'}", "data.target=target"]
    quiet = ["trainer.enable_progress_bar=false", "logger=tensorboard"]
    return [*overrides, "model.optimizer=sgd", *quiet]


def resumed_command(root: Path, data: str) -> list[str]:
    """The overrides of the resumed runs on `data`: "images" or "table"."""
    if data == "table":
        return [*table(root), *RESUMED_TABLE]
    return [*RESUMED, f"paths.data_dir={root / 'data'}"]


def start(run_dir: Path, *overrides: str, port: int | None = None) -> subprocess.Popen:
    """`python -m lrexp.train` in its own process group (DDP children included), log beside;
    `port`: the DDP rendezvous port."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "lrexp.train", f"hydra.run.dir={run_dir}", *overrides]
    env = os.environ | ({"MASTER_PORT": str(port)} if port is not None else {})
    with (run_dir.parent / f"{run_dir.name}.log").open("w") as log:
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def finish(process: subprocess.Popen, run_dir: Path) -> int:
    """The exit status; a run still going after TIMEOUT_S is killed with its children."""
    try:
        return process.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail(f"{run_dir.name} still running after {TIMEOUT_S} s:\n{read_log(run_dir)}")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scale")
    write_mnist_like(root / "data" / "FashionMNIST" / "raw")
    write_mnist_like(root / "faint" / "FashionMNIST" / "raw", faint=True)
    write(cancer_frame(), root / "cancer.csv")
    return root


@pytest.fixture(scope="module", autouse=True)
def background(root: Path) -> Iterator[dict[str, subprocess.Popen]]:
    data = f"paths.data_dir={root / 'data'}"
    kill = ["+callbacks.kill._target_=tests.test_train_scale.SigkillAt"]
    kill += ["+callbacks.kill.epoch=2", "+callbacks.kill.batch=1"]  # epoch 3, its 2nd step
    faint = f"paths.data_dir={root / 'faint'}"
    toy_port, images_port, classes_port, table_port = rendezvous_ports(4)
    processes = {
        "ddp_toy": start(root / "ddp_toy", *TOY_DDP, "trainer=ddp_cpu", port=toy_port),
        "ddp_images": start(
            root / "ddp_images",
            *IMAGES,
            faint,
            "trainer=ddp_cpu",
            "data.batch_size=6",
            port=images_port,
        ),
        "killed_images": start(root / "killed_images", *resumed_command(root, "images"), *kill),
        "ddp_classes": start(
            root / "ddp_classes", *CLASSES_DDP, data, "trainer=ddp_cpu", port=classes_port
        ),
        "killed_table": start(root / "killed_table", *resumed_command(root, "table"), *kill),
        "ddp_table": start(
            root / "ddp_table",
            *table(root),
            *TABLE_DDP,
            "trainer=ddp_cpu",
            "data.batch_size=16",
            port=table_port,
        ),
    }
    yield processes
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def read_log(run_dir: Path) -> str:
    return (run_dir.parent / f"{run_dir.name}.log").read_text()[-3000:]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


# --- sweeps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["toy", "table"])
def test_multirun_leaves_one_complete_run_dir_per_point(
    data: str, root: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", "model.lr=0.01,0.1", f"hydra.sweep.dir={sweep}"]
    args += ["trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1"]
    if data == "table":
        args += table(root)
    assert run_entry(main, *args) == 0
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    expected = {".hydra", "checkpoints", "figures", "metrics.json", "tensorboard"}
    if data == "table":
        expected.add("coefficients.csv")
    lrs = []
    for job in ("0", "1"):
        run = sweep / job
        assert expected <= {p.name for p in run.iterdir()}
        lrs.append(yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["model"]["lr"])
        assert [p.name for p in (run / "checkpoints").iterdir()] != []
    assert lrs == [0.01, 0.1]
    if data == "toy":
        assert metrics(sweep / "0")["w"] != metrics(sweep / "1")["w"]
    else:  # each point's own weights, one per feature
        first, second = (
            pd.read_csv(sweep / job / "coefficients.csv").set_index("feature")["weight"]
            for job in ("0", "1")
        )
        assert len(first) == 35 and "color=red" in first.index
        assert sorted(first.index) == sorted(second.index)
        # coefficients.csv reports the optimum (Newton's steps from each fit), so each point's
        # own fit is its checkpoint's.
        fits = [
            torch.load(next((sweep / job / "checkpoints").glob("best-*.ckpt")), weights_only=True)
            for job in ("0", "1")
        ]
        weights = [f["state_dict"]["linear.weight"] for f in fits]
        assert not torch.allclose(*weights)


def test_toy_minibatches_are_sgd_steps_over_the_points_in_order(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["data.batch_size=1", "trainer.max_epochs=5", "model.lr=0.1", "seed=3"]
    assert run_entry(main, *args, f"hydra.run.dir={run_dir}") == 0
    torch.manual_seed(3)
    linear = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(linear.parameters(), lr=0.1)
    for _ in range(5):
        for hours, passed in ((1.0, 0.0), (2.0, 0.0), (3.0, 1.0)):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                linear(torch.tensor([[hours]])).squeeze(1), torch.tensor([passed]), reduction="sum"
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert metrics(run_dir)["w"] == pytest.approx(linear.weight.item(), abs=1e-6)
    assert metrics(run_dir)["b"] == pytest.approx(linear.bias.item(), abs=1e-6)


def test_optuna_search_maximises_val_acc_and_reports_the_best_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seed 0 proposes a low and a high learning rate: after 50 toy epochs, the trials' val/acc
    differ (2/3 and 3/3), and the best one reported is the higher one, with its parameters."""
    sweep = tmp_path / "optuna"
    args = ["hparams_search=optuna", "hydra.sweeper.n_trials=2", "trainer.max_epochs=50"]
    args += ["trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}"]
    assert run_entry(main, *args) == 0
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    accs = {job: metrics(sweep / job)["val/acc"] for job in ("0", "1")}
    assert len(set(accs.values())) == 2  # no tie: the sweeper's direction decides
    best = max(accs, key=accs.get)
    assert result["best_value"] == accs[best]
    overrides = yaml.safe_load((sweep / best / ".hydra" / "overrides.yaml").read_text())
    trial = dict(override.split("=", 1) for override in overrides)
    assert set(result["best_params"]) == {"model.lr", "model.weight_decay", "data.batch_size"}
    assert {key: trial[key] for key in result["best_params"]} == {
        key: str(value) for key, value in result["best_params"].items()
    }
    assert f"Best value: {result['best_value']}" in capsys.readouterr().out


def test_optimized_metric_must_name_a_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["trainer.max_epochs=1", "optimized_metric=val/accuracy", f"hydra.run.dir={tmp_path}"]
    assert run_entry(main, *args) == 2
    assert "optimized_metric=val/accuracy is not a metric of this run" in capsys.readouterr().err


# --- multirun with DDP, SLURM ---------------------------------------------------------------------


def test_multirun_with_subprocess_ddp_stops_before_any_run_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep"
    assert run_entry(main, "-m", "trainer=ddp_cpu", f"hydra.sweep.dir={sweep}") == 2
    assert "trainer.strategy=ddp_spawn" in capsys.readouterr().err
    assert not list(sweep.glob("*/.hydra"))


def test_slurm_launcher_submits_one_job_per_point_with_the_configured_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real launcher and submitit, up to the sbatch script it would hand to SLURM."""
    from submitit.slurm.slurm import SlurmExecutor

    scripts: list[str] = []
    submitted: list[int] = []

    def submit(self: SlurmExecutor, delayed: list) -> list:
        submitted.append(len(delayed))
        scripts.append(self._make_submission_file_text(self._submitit_command_str, "test"))
        return []

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # "srun exists"
    monkeypatch.setattr(SlurmExecutor, "_internal_process_submissions", submit)
    args = ["-m", "hydra/launcher=slurm", "model.lr=0.01,0.1", f"hydra.sweep.dir={tmp_path}"]
    args += ["trainer=ddp", "trainer.num_nodes=2", "hydra.launcher.gpus_per_node=4"]
    args += ["hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=90"]
    assert run_entry(main, *args) == 0
    assert submitted == [2]
    lines = set(scripts[0].splitlines())
    expected = ["--partition=gpu", "--time=90", "--nodes=2", "--gpus-per-node=4"]
    expected += ["--ntasks-per-node=4", "--cpus-per-task=4", "--mem=32GB"]
    assert {f"#SBATCH {option}" for option in expected} <= lines
    assert any(line.startswith(f"#SBATCH --output={tmp_path}/.submitit/") for line in lines)


# --- exact resume and determinism -----------------------------------------------------------------


@pytest.fixture(scope="module", params=["images", "table"])
def resume_data(request: pytest.FixtureRequest) -> str:
    """What the resume tests train on: fabricated Fashion-MNIST (three classes) or the table."""
    return request.param


@pytest.fixture(scope="module")
def uninterrupted(root: Path, resume_data: str) -> Path:
    run_dir = root / f"uninterrupted_{resume_data}"
    command = resumed_command(root, resume_data)
    assert run_entry(main, *command, f"hydra.run.dir={run_dir}") == 0
    return run_dir


@pytest.fixture(scope="module")
def killed_checkpoint(
    root: Path, background: dict[str, subprocess.Popen], resume_data: str
) -> Path:
    """A copy of the last checkpoint of the run SIGKILLed in epoch 3 (that of epoch 2)."""
    run_dir = root / f"killed_{resume_data}"
    process = background[f"killed_{resume_data}"]
    assert finish(process, run_dir) == -signal.SIGKILL, read_log(run_dir)
    assert not (run_dir / "metrics.json").exists()
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["epoch"] == 1  # the second epoch's checkpoint
    copy = root / f"killed_{resume_data}_epoch_1.ckpt"
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", copy)
    return copy


@pytest.fixture(scope="module")
def resumed(root: Path, killed_checkpoint: Path, resume_data: str) -> Path:
    """The run SIGKILLed in epoch 3, resumed by the same command with ckpt_path=last."""
    run_dir = root / f"killed_{resume_data}"
    command = [*resumed_command(root, resume_data), f"hydra.run.dir={run_dir}"]
    assert run_entry(main, *command, "ckpt_path=last") == 0
    return run_dir


def test_a_run_killed_in_epoch_3_resumes_to_the_same_weights(
    uninterrupted: Path, resumed: Path
) -> None:
    """To the bit, on the CPU: the same weights and the same metrics."""
    for name, tensor in weights(uninterrupted).items():
        assert torch.equal(weights(resumed)[name], tensor), name
    assert metrics(resumed) == metrics(uninterrupted)


def curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """(epoch, value) of the run's train/loss and val/loss curves in TensorBoard."""
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in ("train/loss", "val/loss")
    }


def test_the_resumed_runs_tensorboard_curves_continue(uninterrupted: Path, resumed: Path) -> None:
    resumed_curves = curves(resumed)
    assert [step for step, _ in resumed_curves["train/loss"]] == [0, 1, 2, 3]
    assert resumed_curves == curves(uninterrupted)


def test_a_new_run_dir_started_from_a_checkpoint_continues_that_run(
    root: Path, uninterrupted: Path, killed_checkpoint: Path, resume_data: str
) -> None:
    """ckpt_path=<another run's checkpoint> in a new run dir: training goes on from epoch 2 with
    the checkpoint's weights and optimizer state, to the uninterrupted run's weights; this run's
    curves start at epoch 2 (a run from scratch would train epochs 0-3 to those same weights)."""
    run_dir = root / f"continued_{resume_data}"
    overrides = [f"hydra.run.dir={run_dir}", f"ckpt_path={killed_checkpoint}"]
    assert run_entry(main, *resumed_command(root, resume_data), *overrides) == 0
    continued, whole = curves(run_dir), curves(uninterrupted)
    assert [step for step, _ in continued["train/loss"]] == [2, 3]
    assert continued == {tag: points[2:] for tag, points in whole.items()}
    for name, tensor in weights(uninterrupted).items():
        assert torch.equal(weights(run_dir)[name], tensor), name
    assert metrics(run_dir) == metrics(uninterrupted)


def test_same_seed_and_config_give_identical_metrics_on_cpu(
    root: Path, uninterrupted: Path, resume_data: str
) -> None:
    again = root / f"again_{resume_data}"
    command = resumed_command(root, resume_data)
    assert run_entry(main, *command, f"hydra.run.dir={again}") == 0
    assert (again / "metrics.json").read_bytes() == (uninterrupted / "metrics.json").read_bytes()


def test_checkpoints_are_replaced_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, path)

    def killed(*args: object) -> None:
        raise KeyboardInterrupt  # the process dies after writing the new file, before the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"epoch": 2, "state_dict": torch.ones(1000)}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_the_trainer_writes_checkpoints_through_the_atomic_plugin() -> None:
    from hydra import compose, initialize_config_dir

    from lrexp.cli import CONFIG_DIR
    from lrexp.experiment import build_trainer

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["paths.output_dir=.", "logger=none"])
    trainer, _ = build_trainer(cfg, with_callbacks=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


# --- DDP over 2 CPU processes (last: the tests above overlap their start-up) ----------------------


def test_ddp_cpu_reproduces_the_single_process_toy_run(
    root: Path, background: dict[str, subprocess.Popen]
) -> None:
    run_dir = root / "ddp_toy"
    assert finish(background["ddp_toy"], run_dir) == 0, read_log(run_dir)
    single = root / "single_toy"
    assert run_entry(main, *TOY_DDP, f"hydra.run.dir={single}") == 0
    assert metrics(run_dir) == pytest.approx(metrics(single), abs=1e-6)
    # Rank 1 ran the same command in the same run dir, and wrote nothing of its own there.
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in single.iterdir())


def test_ddp_cpu_averages_gradients_over_the_ranks_shards(
    root: Path, background: dict[str, subprocess.Popen]
) -> None:
    """Two ranks of batch 6 take the SGD steps of one process with batch 12: each step's batch
    is split between the ranks and DDP averages their gradients, at every manual_backward. Each
    rank scores half of the validation and test splits; every metric is synchronised across
    the ranks, so metrics.json holds the whole splits' values, those of the single process."""
    run_dir = root / "ddp_images"
    assert finish(background["ddp_images"], run_dir) == 0, read_log(run_dir)
    single = root / "single_images"
    data = f"paths.data_dir={root / 'faint'}"
    assert run_entry(main, *IMAGES, data, "data.batch_size=12", f"hydra.run.dir={single}") == 0
    for name, tensor in weights(single).items():
        torch.testing.assert_close(weights(run_dir)[name], tensor, atol=1e-5, rtol=0)
    ddp, one = metrics(run_dir), metrics(single)
    # Faint images: an imperfect model, whose rank halves score unlike the whole split.
    assert 0.5 < one["test/auroc"] < 1 and one["test/ece"] > 0
    assert ddp.keys() == one.keys()
    for key, value in one.items():
        assert ddp[key] == pytest.approx(value, abs=1e-5), key


def test_ddp_cpu_takes_the_steps_of_one_process_for_k_classes(
    root: Path, background: dict[str, subprocess.Popen]
) -> None:
    """Softmax over ten classes: two ranks at batch 6 end with the weights and metrics of one
    process at batch 12 (model.lr=auto is measured at the effective minibatch of 12 too)."""
    run_dir = root / "ddp_classes"
    assert finish(background["ddp_classes"], run_dir) == 0, read_log(run_dir)
    single = root / "single_classes"
    data = f"paths.data_dir={root / 'data'}"
    one_process = [*CLASSES_DDP[:-2], "data.batch_size=12", CLASSES_DDP[-1]]
    assert run_entry(main, *one_process, data, f"hydra.run.dir={single}") == 0
    for name, tensor in weights(single).items():
        torch.testing.assert_close(weights(run_dir)[name], tensor, atol=1e-5, rtol=0)
    ddp, one = metrics(run_dir), metrics(single)
    assert ddp.keys() == one.keys() and "test/acc/sandal" in one
    for key, value in one.items():
        assert ddp[key] == pytest.approx(value, abs=1e-5), key


def test_ddp_cpu_takes_the_steps_of_one_process_on_a_table(
    root: Path, background: dict[str, subprocess.Popen]
) -> None:
    """The table as the images: two ranks at batch 16 end with the weights and metrics of one
    process at batch 32 (every rank reads the file and learns the same standardisation and
    categories); rank 0 alone writes the run dir, coefficients.csv with those weights."""
    run_dir = root / "ddp_table"
    assert finish(background["ddp_table"], run_dir) == 0, read_log(run_dir)
    single = root / "single_table"
    overrides = [*table(root), *TABLE_DDP, "data.batch_size=32", f"hydra.run.dir={single}"]
    assert run_entry(main, *overrides) == 0
    for name, tensor in weights(single).items():
        torch.testing.assert_close(weights(run_dir)[name], tensor, atol=1e-5, rtol=0)
    ddp, one = metrics(run_dir), metrics(single)
    assert one["test/acc"] < 1 and one["test/ece"] > 0  # rank halves score unlike the whole
    assert ddp.keys() == one.keys() and "val/auroc" in one
    for key, value in one.items():
        assert ddp[key] == pytest.approx(value, abs=1e-5), key
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in single.iterdir())
    coefficients = pd.read_csv(run_dir / "coefficients.csv").set_index("feature")["weight"]
    expected = pd.read_csv(single / "coefficients.csv").set_index("feature")["weight"]
    assert len(coefficients) == 35 and sorted(coefficients.index) == sorted(expected.index)
    np.testing.assert_allclose(coefficients, expected[coefficients.index], atol=1e-5, rtol=0)
